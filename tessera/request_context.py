"""Per-request values that every layer may need (the request id for logs and error bodies, one
header of the request)."""

from __future__ import annotations

import re
from contextvars import ContextVar

from tessera.ids import new_id

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
