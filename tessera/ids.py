"""Opaque, prefixed, time-sortable identifiers (`usr_01J…`).

The body is a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32, so ids sort
by creation time as plain strings and reveal nothing guessable.
"""

from __future__ import annotations

import base64
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
_PAD = bytes(4)


def ulid(now_ms: int | None = None) -> str:
    # Every request and row gets one, so it is encoded in C: the 128 bits behind 32 zero bits
    # make 160, a whole number of 5-bit digits, and the last 26 digits are the ULID.
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    raw = _PAD + ms.to_bytes(6, "big") + os.urandom(10)
    return base64.b32encode(raw).translate(_FROM_RFC4648)[6:].decode()


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"
