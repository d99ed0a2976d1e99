"""`Idempotency-Key` (alias `X-Idempotency-Key`) on POST: a retried request gets the first answer.

Within the retention window (24 h) and per principal: the same key with the same method, path and
parameters (the body compared as parsed JSON, as Stripe compares parameters, so spacing and key
order do not matter; other bodies byte for byte) replays the stored status, headers and body
(with `Idempotent-Replayed: true`); the same key
with a different request is 422 IDEMPOTENCY_KEY_REUSED; a request arriving while the first is
still running is 409 CONFLICT. The key is claimed by inserting its row before the handler runs,
so exactly one of two concurrent requests runs. Server errors are not stored: the client may
retry them with the same key.

A streamed body (`x-streamed-body`: file uploads, up to `TESSERA_FILES_MAX_BYTES`) is not held in
memory to be fingerprinted: it is hashed while it is spooled to a temporary file (in memory up to
1 MiB), and replayed from there to the handler in chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from datetime import timedelta

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.common.base import utcnow
from models.platform.idempotency import IdempotencyRecord
from tessera.core import caller as auth
from tessera.core import db, secrets_box
from tessera.core.errors import (
    Conflict,
    Detail,
    IdempotencyKeyReused,
    PayloadTooLarge,
    ValidationFailed,
)
from tessera.core.settings import get_settings
from tessera.web.contract import get_contract

HEADER_NAMES = ("idempotency-key", "x-idempotency-key")
# Response headers worth replaying; per-request ones (request id, rate limits) are fresh.
_REPLAYED = {"content-type", "location", "etag", "deprecation", "sunset"}


def _principal_key(scope: Scope) -> str:
    caller = auth.current_principal()
    if caller is not None:
        return f"{caller.kind}:{caller.actor_id}"
    return f"ip:{(scope.get('client') or ('', 0))[0]}"


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = next((headers[h] for h in HEADER_NAMES if h in headers), None)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not 1 <= len(key) <= 255:
            raise ValidationFailed(
                "The idempotency key is invalid.",
                [Detail("Idempotency-Key", "INVALID_LENGTH", "Use 1 to 255 characters.")],
            )
        request_line = scope["method"].encode() + b" " + scope["path"].encode() + b"\n"
        if _streamed(scope):
            spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
            digest = await _spool(receive, spool)
            fingerprint = hashlib.sha256(request_line + b"streamed:" + digest).hexdigest()
            replay = _replay_spooled(spool)
        else:
            spool = None
            body = await _read_body(receive)
            fingerprint = hashlib.sha256(request_line + _canonical(body)).hexdigest()
            replay = _replay(body)
        try:
            await self._once(scope, replay, send, key, fingerprint)
        finally:
            if spool is not None:
                spool.close()

    async def _once(
        self, scope: Scope, receive: Receive, send: Send, key: str, fingerprint: str
    ) -> None:
        principal = _principal_key(scope)
        if not await _claim(principal, key, scope, fingerprint):
            await _answer_existing(send, principal, key, fingerprint)
            return

        captured: dict = {"status": 500, "headers": [], "body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await _complete(principal, key, captured)


def _canonical(body: bytes) -> bytes:
    """The body's parameters in one form: parsed JSON with sorted keys; other bodies as sent."""
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return body


async def _read_body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


_SPOOL_IN_MEMORY = 1024 * 1024
_SPOOL_CHUNK = 1024 * 1024


def _streamed(scope: Scope) -> bool:
    operation_id = scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")
    operation = get_contract().operations.get(operation_id or "")
    return bool(operation and operation.spec.get("x-streamed-body"))


async def _spool(receive: Receive, spool) -> bytes:
    """Copy the body into `spool`, returning its SHA-256; 413 past the largest body a streamed
    operation accepts."""
    settings = get_settings()
    limit = max(settings.max_body_bytes, settings.files_max_bytes) + _SPOOL_IN_MEMORY
    digest, seen, more, pending = hashlib.sha256(), 0, True, bytearray()
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
        digest.update(chunk)
        pending += chunk
        more = message.get("more_body", False)
        if len(pending) >= _SPOOL_CHUNK or not more:
            # In memory, or a temporary file once past 1 MiB: a thread, as disk writes block.
            data, pending = bytes(pending), bytearray()
            await asyncio.to_thread(spool.write, data)
    await asyncio.to_thread(spool.seek, 0)
    return digest.digest()


def _replay_spooled(spool) -> Receive:
    done = False

    async def receive() -> Message:
        nonlocal done
        if done:
            return {"type": "http.disconnect"}
        chunk = await asyncio.to_thread(spool.read, _SPOOL_CHUNK)
        more = len(chunk) == _SPOOL_CHUNK
        done = not more
        return {"type": "http.request", "body": chunk, "more_body": more}

    return receive


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _claim(principal: str, key: str, scope: Scope, fingerprint: str) -> bool:
    """Insert the key's row; False when another request already holds it."""
    expired_before = utcnow() - timedelta(seconds=get_settings().idempotency_ttl_s)
    async with db.transaction() as session:
        await session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.principal == principal,
                IdempotencyRecord.key == key,
                IdempotencyRecord.created_at < expired_before,
            )
        )
        inserted = await session.execute(
            insert(IdempotencyRecord)
            .values(
                principal=principal,
                key=key,
                method=scope["method"],
                path=scope["path"][:2000],
                request_hash=fingerprint,
                headers={},
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        )
        return inserted.first() is not None


async def _answer_existing(send: Send, principal: str, key: str, fingerprint: str) -> None:
    async with db.transaction() as session:
        record = (
            await session.execute(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
                )
            )
        ).scalar_one_or_none()
    if record is None:  # released by a failed first attempt a moment ago
        raise Conflict("A request with this idempotency key is being retried; try again.")
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "This idempotency key was used with a different request.",
            [Detail("Idempotency-Key", "KEY_REUSED", "Send a new key for a different request.")],
        )
    if record.completed_at is None:
        raise Conflict("A request with this idempotency key is still in progress.")
    headers = [(k.encode(), v.encode()) for k, v in record.headers.items()]
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": record.status_code, "headers": headers})
    body = secrets_box.unseal(record.body.decode()).encode("latin-1") if record.body else b""
    await send({"type": "http.response.body", "body": body})


async def _complete(principal: str, key: str, captured: dict) -> None:
    where = (IdempotencyRecord.principal == principal, IdempotencyRecord.key == key)
    async with db.transaction() as session:
        if captured["status"] >= 500:
            await session.execute(delete(IdempotencyRecord).where(*where))
            return
        kept = {
            k.decode().lower(): v.decode()
            for k, v in captured["headers"]
            if k.decode().lower() in _REPLAYED
        }
        await session.execute(
            update(IdempotencyRecord)
            .where(*where)
            .values(
                status_code=captured["status"],
                headers=kept,
                # Responses can hold secrets shown once (API keys, webhook secrets, tokens).
                body=secrets_box.seal(captured["body"].decode("latin-1")).encode(),
                completed_at=utcnow(),
            )
        )
