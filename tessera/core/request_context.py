"""Per-request values that every layer may need (the request id for logs and error bodies, one
header of the request, the caller's address)."""

from __future__ import annotations

import re
from contextvars import ContextVar

from connexion.context import scope as _current_scope

from tessera.core.ids import new_id

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# A client-supplied id is echoed only when it is short and harmless in logs and headers.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def header(scope: dict, name: bytes) -> str | None:
    """One request header (lower-case name) from the ASGI scope, without building a Headers
    object for it."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def accept_or_generate(client_value: str | None) -> str:
    if client_value and _SANE_REQUEST_ID.match(client_value):
        return client_value
    return new_id("req")


def set_request_id(value: str):
    return _request_id.set(value)


def reset_request_id(token) -> None:
    _request_id.reset(token)


def current_request_id() -> str:
    return _request_id.get() or new_id("req")


def request_id_if_any() -> str | None:
    """The current request's id, or None outside a request (for log records)."""
    return _request_id.get()


def request_header(name: bytes) -> str | None:
    """A header (lower-case name) of the current request, read from its ASGI scope: every
    attribute of `connexion.context.request` builds a new request object. Raises RuntimeError
    outside a request."""
    return header(_current_scope._get_current_object(), name)


def client_ip() -> str:
    """The caller's address (after the trusted proxies' `X-Forwarded-For`); RuntimeError outside
    a request."""
    client = _current_scope._get_current_object().get("client")
    return client[0] if client else ""


def user_agent() -> str | None:
    agent = request_header(b"user-agent")
    return agent[:500] if agent else None
