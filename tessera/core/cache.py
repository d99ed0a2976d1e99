"""A few seconds' memory of per-credential answers (is this session live, this key valid, this
token revoked): revocation reaches every instance within that time. Each cache lives beside the
table it caches; the service that changes a row drops its entry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tessera.core.settings import get_settings


class TTLCache:
    """Answers for `session_cache_s` seconds."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, object]] = {}
        self._loading: dict[str, asyncio.Future] = {}

    async def fetch(self, key: str, load: Callable[[], Awaitable[object]]):
        """The cached answer, else what `load()` answers (never None), cached. Concurrent misses
        for one key share one load: when a hot session's entry expired, every request in flight
        for it waited on the same row's lock, one after the other (`make bench`: the p99 of
        reads)."""
        value = self.get(key)
        if value is not None:
            return value
        pending = self._loading.get(key)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = self._loading[key] = asyncio.ensure_future(self._load(key, load))
        # Shielded: a caller that goes away does not cancel the others' answer.
        return await asyncio.shield(pending)

    async def _load(self, key: str, load: Callable[[], Awaitable[object]]):
        try:
            value = await load()
            self.put(key, value)
            return value
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]

    def get(self, key: str):
        entry = self._entries.get(key)
        if entry and entry[0] > time.monotonic():
            return entry[1]
        return None

    def put(self, key: str, value: object) -> None:
        if len(self._entries) > 50_000:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + get_settings().session_cache_s, value)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)
