"""ASGI middleware around the Connexion stack, outermost first:

    RequestContext   X-Request-Id in and out, access log, metrics, last-resort 500 envelope,
                     and the response-header hooks: `security_headers` (HSTS, nosniff, frame
                     denial, referrer policy, CSP, no-store on the API) and the deprecation
                     notices (tessera.web.deprecation)
    CORS             Starlette's, from the allowlist in settings
    RequestLimits    URL, header, query-parameter and body size limits of DESIGN.md

They sit outside Connexion's exception handling, so they write their own envelopes. The header
hooks were ASGI layers of their own; each layer wraps `send` again and adds a frame that every
resumption of the request's coroutine passes through, so they run inside the one wrapper
RequestContext needs anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.core import metrics
from tessera.core.errors import (
    JSON,
    ApiError,
    BadRequest,
    Detail,
    InternalError,
    PayloadTooLarge,
    ValidationFailed,
    envelope_bytes,
)
from tessera.core.request_context import (
    accept_or_generate,
    header,
    reset_request_id,
    set_request_id,
)
from tessera.core.settings import Settings

access_log = logging.getLogger("tessera.access")

HeaderHook = Callable[[Scope, MutableHeaders], None]


async def send_error(send: Send, error: ApiError, status: int | None = None) -> None:
    body = envelope_bytes(error)
    headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send(
        {"type": "http.response.start", "status": status or error.status, "headers": headers}
    )
    await send({"type": "http.response.body", "body": body})


class Cors(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the error envelope (Starlette
    answers it in plain text)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = response.body.decode().removeprefix("Disallowed CORS ")
        error = BadRequest(f"This cross-origin request is not allowed ({refused}).")
        headers = {
            k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")
        }
        return Response(envelope_bytes(error), 400, headers=headers, media_type=JSON)


class RequestContext:
    def __init__(self, app: ASGIApp, header_hooks: Sequence[HeaderHook] = ()) -> None:
        self.app = app
        self.header_hooks = tuple(header_hooks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Connexion's router records the operation in a copy of the scope; sharing the extensions
        # dict lets us read it back for metrics and logs.
        extensions = scope.setdefault("extensions", {})
        request_id = accept_or_generate(header(scope, b"x-request-id"))
        token = set_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                for hook in self.header_hooks:
                    hook(scope, headers)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            access_log.exception("unhandled exception escaped the app")
            if not response_started:
                await send_error(
                    send_with_id,
                    InternalError("An unexpected error occurred; quote the request id."),
                )
        finally:
            elapsed = time.perf_counter() - started
            routing = extensions.get("connexion_routing", {})
            operation = routing.get("operation_id") or "unmatched"
            metrics.observe_request(scope["method"], operation, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):  # skip building the record when filtered
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "operation": operation,
                        "status": status,
                        "latency_ms": round(elapsed * 1000, 3),
                        "client_ip": (scope.get("client") or ("", 0))[0],
                    },
                )
            reset_request_id(token)


_SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI loads its own scripts, styles and images from /docs and calls the API from the page.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)


def _raw(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())


# Encoded once: every answer carries them, and MutableHeaders.setdefault encodes and scans the
# header list again for each one.
_API_HEADERS = _raw(
    {**_SECURITY_HEADERS, "Content-Security-Policy": _API_CSP, "Cache-Control": "no-store"}
)
_DOCS_HEADERS = _raw({**_SECURITY_HEADERS, "Content-Security-Policy": _DOCS_CSP})


def security_headers(scope: Scope, headers: MutableHeaders) -> None:
    """Adds each header the handler did not set itself."""
    is_docs = scope["path"].startswith(("/docs", "/redoc"))
    present = {key for key, _ in headers.raw}
    headers.raw.extend(
        h for h in (_DOCS_HEADERS if is_docs else _API_HEADERS) if h[0] not in present
    )


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison; `*` matches any current representation."""
    if if_none_match.strip() == "*":
        return True
    wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag.removeprefix("W/") in wanted


# Headers a 304 keeps (RFC 9110 §15.4.5): the validators and the caching and request metadata.
_NOT_MODIFIED_DROPS = {b"content-type", b"content-length", b"content-encoding", b"content-range"}


class ConditionalGet:
    """`If-None-Match` on GET and HEAD: a 200 whose `ETag` the client already holds becomes a
    bodiless 304, for every resource that has an ETag, whatever produced it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if_none_match = header(scope, b"if-none-match")
        if if_none_match is None:
            await self.app(scope, receive, send)
            return
        not_modified = False

        async def conditional_send(message: Message) -> None:
            nonlocal not_modified
            if message["type"] == "http.response.start" and message["status"] == 200:
                etag = next((v for k, v in message.get("headers", ()) if k == b"etag"), None)
                if etag is not None and _etag_matches(if_none_match, etag.decode("latin-1")):
                    not_modified = True
                    headers = [
                        (k, v) for k, v in message["headers"] if k not in _NOT_MODIFIED_DROPS
                    ]
                    await send({**message, "status": 304, "headers": headers})
                    await send({"type": "http.response.body", "body": b""})
                    return
            if not_modified:
                return  # the representation's body, which the client already holds
            await send(message)

        await self.app(scope, receive, conditional_send)


class RequestLimits:
    """Refuses requests over the URL, header, query and body limits before any work is done.
    A body sent without `Content-Length` (`Transfer-Encoding: chunked`, as proxies and streaming
    clients send) is read here, counted on the bytes received, and passed on with the length it
    turned out to have: the validator downstream treats a request without one as bodiless.

    `streamed` names the (method, path) of operations whose handlers read the body as a stream
    (`x-streamed-body`, file uploads): their bodies pass on as they come, and the handler holds
    them to its own limit."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        streamed: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.app = app
        self.settings = settings
        self.streamed = streamed

    def _reject(self, scope: Scope) -> tuple[ApiError, int] | None:
        s = self.settings
        query_string = scope["query_string"]
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(query_string)
        if url_bytes > s.max_url_bytes:
            return BadRequest(f"The URL exceeds {s.max_url_bytes} bytes."), 414
        header_bytes, length = 0, None
        for key, value in scope["headers"]:
            header_bytes += len(key) + len(value)
            if key == b"content-length" and length is None:
                length = value
        if header_bytes > s.max_header_bytes:
            return BadRequest(f"The request headers exceed {s.max_header_bytes} bytes."), 431
        # Parsed only when it could hold too many: n parameters are separated by n - 1 `&`.
        if query_string.count(b"&") >= s.max_query_params and (
            len(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
            > s.max_query_params
        ):
            return ValidationFailed(
                f"More than {s.max_query_params} query parameters.",
                [Detail("query", "TOO_MANY_PARAMETERS", f"Send at most {s.max_query_params}.")],
            ), 422
        if (scope["method"], scope["path"]) in self.streamed:
            return None
        if length is not None and length.isdigit() and int(length) > s.max_body_bytes:
            return PayloadTooLarge(f"The request body exceeds {s.max_body_bytes} bytes."), 413
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rejected = self._reject(scope)
        if rejected:
            await send_error(send, *rejected)
            return
        if (scope["method"], scope["path"]) in self.streamed:
            await self.app(scope, receive, send)
            return
        if any(key == b"transfer-encoding" for key, _ in scope["headers"]) and not any(
            key == b"content-length" for key, _ in scope["headers"]
        ):
            await self._with_length(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _with_length(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit, chunks, seen = self.settings.max_body_bytes, [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await send_error(
                    send, PayloadTooLarge(f"The request body exceeds {limit} bytes."), 413
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)
