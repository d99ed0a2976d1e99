"""Idempotency-Key on POST: replay, conflicting reuse, concurrent duplicates, scoping."""

from __future__ import annotations

import asyncio
import uuid

import orjson

from tests.support.factories import PASSWORD, signed_in, unique_email


def register_body(email: str | None = None) -> dict:
    return {"email": email or unique_email(), "password": PASSWORD, "display_name": "Idem"}


async def test_same_key_and_body_replays_the_first_answer(client):
    key = str(uuid.uuid4())
    body = register_body()
    first = await client.post("/v1/auth/register", json=body, headers={"Idempotency-Key": key})
    second = await client.post("/v1/auth/register", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()  # not a 409 for the taken email: the first answer
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["x-request-id"] != first.headers["x-request-id"]


async def test_the_same_parameters_spelled_differently_replay(client):
    key = str(uuid.uuid4())
    body = register_body()
    compact = orjson.dumps(body)
    spaced = orjson.dumps(dict(reversed(body.items())), option=orjson.OPT_INDENT_2) + b"\n "
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
    first = await client.post("/v1/auth/register", content=compact, headers=headers)
    second = await client.post("/v1/auth/register", content=spaced, headers=headers)
    assert first.status_code == second.status_code == 201, second.text
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()


async def test_alias_header_is_accepted(client):
    key = str(uuid.uuid4())
    body = register_body()
    first = await client.post("/v1/auth/register", json=body, headers={"X-Idempotency-Key": key})
    second = await client.post("/v1/auth/register", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and second.headers.get("idempotent-replayed") == "true"


async def test_same_key_with_another_body_is_422(client):
    key = str(uuid.uuid4())
    await client.post("/v1/auth/register", json=register_body(), headers={"Idempotency-Key": key})
    reused = await client.post(
        "/v1/auth/register", json=register_body(), headers={"Idempotency-Key": key}
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_concurrent_duplicates_run_exactly_once(client, monkeypatch):
    from tessera.core import passwords

    key, body = str(uuid.uuid4()), register_body()
    original, runs = passwords.hash_password, []
    inside, release = asyncio.Event(), asyncio.Event()

    async def held(password: str) -> str:  # keeps the first request inside its handler
        runs.append(password)
        inside.set()
        await release.wait()
        return await original(password)

    monkeypatch.setattr(passwords, "hash_password", held)
    headers = {"Idempotency-Key": key}
    first = asyncio.create_task(client.post("/v1/auth/register", json=body, headers=headers))
    await asyncio.wait_for(inside.wait(), 10)
    duplicates = await asyncio.gather(
        *[client.post("/v1/auth/register", json=body, headers=headers) for _ in range(2)]
    )
    release.set()
    first_answer = await first
    assert first_answer.status_code == 201
    assert [d.status_code for d in duplicates] == [409, 409]
    assert duplicates[0].json()["error"]["code"] == "CONFLICT"
    assert len(runs) == 1  # the handler ran once
    replay = await client.post("/v1/auth/register", json=body, headers=headers)
    assert replay.status_code == 201 and replay.json() == first_answer.json()


async def test_keys_are_scoped_per_principal(client):
    alice, bob = await signed_in(client), await signed_in(client)
    key = str(uuid.uuid4())
    a = await client.post("/v1/auth/logout", headers={**alice.headers, "Idempotency-Key": key})
    b = await client.post("/v1/auth/logout", headers={**bob.headers, "Idempotency-Key": key})
    assert a.status_code == b.status_code == 204
    assert "idempotent-replayed" not in b.headers


async def test_validation_errors_are_not_stored(client):
    key = str(uuid.uuid4())
    bad = await client.post(
        "/v1/auth/register", json={"email": "nope"}, headers={"Idempotency-Key": key}
    )
    assert bad.status_code == 422
    good_body = register_body()
    good = await client.post("/v1/auth/register", json=good_body, headers={"Idempotency-Key": key})
    # A request refused by validation never ran: the key stays free for the corrected one.
    assert good.status_code == 201, good.text
