"""Encryption at rest for secrets the server must read back (webhook signing secrets, TOTP
seeds): Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from the server secret."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet

from tessera.core.tokens import server_secret


@lru_cache(maxsize=1)
def _box() -> Fernet:
    key = hashlib.sha256(b"tessera-secrets-box:" + server_secret()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(plain: str) -> str:
    return _box().encrypt(plain.encode()).decode()


def unseal(token: str) -> str:
    return _box().decrypt(token.encode()).decode()
