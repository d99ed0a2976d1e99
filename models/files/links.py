"""Temporary download links: `/v1/files/{id}/download?expires=…&signature=…`, where the
signature is an HMAC-SHA256 (truncated to 128 bits) of the file id and the expiry under a key
derived from the deployment's secret. A link names one file and stops working when it expires,
when the file is deleted, or when the secret changes; nothing is stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlencode

from tessera.core.errors import PermissionDenied
from tessera.core.settings import get_settings
from tessera.core.tokens import server_secret

DEFAULT_TTL_S = 900


@lru_cache(maxsize=1)
def _key() -> bytes:
    return hashlib.sha256(b"tessera-file-links:" + server_secret()).digest()


def _signature(file_id: str, expires: int) -> str:
    mac = hmac.digest(_key(), f"{file_id}\x00{expires}".encode(), "sha256")[:16]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def create(*, file_id: str, expires_in: int = DEFAULT_TTL_S, now: float | None = None) -> dict:
    expires = int(now if now is not None else time.time()) + expires_in
    query = urlencode({"expires": expires, "signature": _signature(file_id, expires)})
    base = get_settings().public_url.rstrip("/")
    return {
        "url": f"{base}/v1/files/{file_id}/download?{query}",
        "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def verify(*, file_id: str, expires: int, signature: str, now: float | None = None) -> None:
    """403 for a signature that is not this file's and expiry's, or a link past its expiry."""
    if not hmac.compare_digest(signature.encode(), _signature(file_id, expires).encode()):
        raise PermissionDenied("This link is not valid; ask for a new one.")
    if expires <= (now if now is not None else time.time()):
        raise PermissionDenied("This link has expired; ask for a new one.")
