"""The hashing pool gives its memory back once a burst of hashes is over, not during it."""

from __future__ import annotations

import asyncio
import time

from tessera.core import passwords


async def test_memory_is_trimmed_once_hashing_has_been_idle(monkeypatch):
    trims: list[float] = []
    hashing = passwords._IdleTrim(lambda pad: trims.append(time.monotonic()))
    monkeypatch.setattr(hashing, "IDLE_S", 0.2)

    def work(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    # A burst: overlapping hashes, then one more just before the first idle moment is up.
    assert await asyncio.gather(hashing.run(work, 0.05), hashing.run(work, 0.1)) == ["done"] * 2
    await asyncio.sleep(0.1)
    last = time.monotonic()
    await hashing.run(work, 0.05)
    assert trims == []  # never while hashing, nor right after
    await asyncio.sleep(0.5)
    assert len(trims) == 1 and trims[0] - last >= 0.2


async def test_the_server_hashes_through_the_trimming_pool():
    stored = await passwords.hash_password("correct horse battery staple")
    assert await passwords.verify_password(stored, "correct horse battery staple")
    assert not await passwords.verify_password(stored, "wrong horse battery staple")
    assert passwords._hashing._running == 0
