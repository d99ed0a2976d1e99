"""Opaque, prefixed, time-sortable identifiers (`usr_01J…`).

The body is a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32, so ids sort
by creation time as plain strings and reveal nothing guessable.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def ulid(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    return _b32(ms, 10) + _b32(rand, 16)


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"
