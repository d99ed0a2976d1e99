"""Opaque, prefixed, time-sortable identifiers (`usr_01J…`).

The body is a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32, so ids sort
by creation time as plain strings and reveal nothing guessable.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every request and row gets an id: two digits (10 bits) per look-up, 13 look-ups for the 130
# bits of 26 digits, cost a quarter of `base64.b32encode`, which is Python code on 3.11.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = range(120, -1, -10)


def ulid(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in _SHIFTS])


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"
