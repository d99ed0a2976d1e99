"""Ids are ULIDs in Crockford base32: the spec's bounds, the timestamp first, sortable as text."""

from __future__ import annotations

import os

from tessera.core import ids


def test_the_ulid_bounds_and_layout(monkeypatch):
    monkeypatch.setattr(os, "urandom", lambda n: b"\xff" * n)
    assert ids.ulid(now_ms=2**48 - 1) == "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"  # the spec's largest ULID
    monkeypatch.setattr(os, "urandom", lambda n: bytes(n))
    assert ids.ulid(now_ms=0) == "0" * 26
    # The spec's example time, 1469922850259 ms, is "01ARZ3NDEK" in the first ten digits.
    assert ids.ulid(now_ms=1469922850259) == "01ARZ3NDEK" + "0" * 16
    monkeypatch.setattr(os, "urandom", lambda n: (1).to_bytes(n, "big"))
    assert ids.ulid(now_ms=0) == "0" * 25 + "1"


def test_ids_sort_by_creation_time_and_carry_their_prefix():
    earlier, later = ids.ulid(now_ms=1_700_000_000_000), ids.ulid(now_ms=1_700_000_000_001)
    assert earlier < later
    made = ids.new_id("prj")
    assert made.startswith("prj_") and len(made) == 30
    assert set(made[4:]) <= set(ids._ALPHABET)
