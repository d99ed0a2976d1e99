"""Webhook signatures, Stripe-style: `Tessera-Signature: t=<unix>,v1=<hex>[,v1=<hex>]`.

`v1` is HMAC-SHA256 over `"<t>.<raw body>"` with an endpoint's signing secret; while a rotated
secret is still valid, one `v1` per active secret is sent. Receivers reject timestamps outside a
tolerance window (300 s) to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Tessera-Signature"
TOLERANCE_S = 300


def sign(payload: bytes, secrets: list[str], timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={ts}"]
    for secret in secrets:
        mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256)
        parts.append(f"v1={mac.hexdigest()}")
    return ",".join(parts)


def verify(payload: bytes, header: str, secret: str, *, tolerance_s: int = TOLERANCE_S) -> bool:
    """What a receiver does (and what our tests do): any v1 matching, timestamp fresh."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in fields if k == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    ts = int(timestamps[0])
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")
