"""The short-lived caches of session, API key and OAuth token checks: concurrent misses for one
key share one look-up, and nothing is cached from a look-up that failed."""

from __future__ import annotations

import asyncio

import pytest

from tessera.core.cache import TTLCache as _TTLCache


async def test_concurrent_misses_share_one_look_up():
    cache, calls = _TTLCache(), []

    async def look_up() -> bool:
        calls.append(1)
        await asyncio.sleep(0.05)
        return True

    answers = await asyncio.gather(*(cache.fetch("ses_1", look_up) for _ in range(20)))
    assert answers == [True] * 20 and len(calls) == 1
    assert await cache.fetch("ses_1", look_up) is True and len(calls) == 1  # now cached
    assert await cache.fetch("ses_2", look_up) is True and len(calls) == 2  # another key


async def test_false_is_an_answer_and_a_failure_is_not_cached():
    cache, calls = _TTLCache(), []

    async def broken() -> bool:
        calls.append(1)
        await asyncio.sleep(0.01)
        raise ConnectionError("database away")

    async def revoked() -> bool:
        calls.append(1)
        return False

    results = await asyncio.gather(
        *(cache.fetch("ses_1", broken) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results) and len(calls) == 1
    assert await cache.fetch("ses_1", revoked) is False and len(calls) == 2
    assert await cache.fetch("ses_1", revoked) is False and len(calls) == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_others():
    cache, release = _TTLCache(), asyncio.Event()

    async def look_up() -> bool:
        await release.wait()
        return True

    first = asyncio.create_task(cache.fetch("ses_1", look_up))
    second = asyncio.create_task(cache.fetch("ses_1", look_up))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second is True
    with pytest.raises(asyncio.CancelledError):
        await first
