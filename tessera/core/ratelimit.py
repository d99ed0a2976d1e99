"""Rate limits with GCRA (the generic cell rate algorithm): atomic in Redis, or the same
arithmetic in process memory without Redis. Concurrent checks share one Redis round trip.

A limit of L requests per period P lets a client burst L requests and then one every P/L. The
state per key is a single timestamp, the "theoretical arrival time" (TAT) of the next request.

When Redis is unreachable the limiter fails open: the request is served, a metric counts it and
a warning is logged, because refusing every request during a cache outage is worse than serving
a few extra (an outage must not become an API outage).

`limiter()` is the process's limiter: the per-operation limit of every `/v1` request
(`tessera.web.ratelimit`) and the limits services set on what they send (account mail) share it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import Counter

from tessera.core.errors import RateLimited
from tessera.core.settings import get_settings

log = logging.getLogger("tessera.ratelimit")
BACKEND_ERRORS = Counter(
    "tessera_rate_limit_backend_errors_total", "Rate-limit checks that failed open."
)

# GCRA for every key of a batch, in order, so a key that occurs twice is hit twice. ARGV holds
# `now` then (interval, tolerance) per key; the reply is (allowed, TAT) per key, flattened.
_GCRA = """
local now = tonumber(ARGV[1])
local reply = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  if now < new_tat - tolerance then
    reply[2 * i - 1], reply[2 * i] = 0, tat
  else
    redis.call('SET', key, new_tat, 'PX', math.ceil(new_tat - now))
    reply[2 * i - 1], reply[2 * i] = 1, new_tat
  end
end
return reply
"""
MAX_BATCH = 256  # keys per script call; a longer queue waits for the next call


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the bucket is full again
    retry_after: int  # seconds, when refused

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def _decide(allowed: bool, tat_ms: float, now_ms: float, limit: int, period_ms: float) -> Decision:
    interval = period_ms / limit
    # How much of the burst allowance the stored TAT has used up.
    used = max(0.0, tat_ms - now_ms)
    remaining = max(0, math.floor((period_ms - used) / interval))
    if not allowed:
        retry = math.ceil((tat_ms + interval - period_ms - now_ms) / 1000)
        return Decision(False, limit, 0, math.ceil((now_ms + used) / 1000), max(1, retry))
    return Decision(True, limit, remaining, math.ceil((now_ms + used) / 1000), 0)


class MemoryStore:
    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def hit(self, key: str, limit: int, period_ms: float) -> Decision:
        now = time.time() * 1000
        interval = period_ms / limit
        async with self._lock:
            tat = max(self._tat.get(key, now), now)
            new_tat = tat + interval
            if now < new_tat - period_ms:
                return _decide(False, tat, now, limit, period_ms)
            if len(self._tat) > 100_000:
                self._tat = {k: v for k, v in self._tat.items() if v > now}
            self._tat[key] = new_tat
        return _decide(True, new_tat, now, limit, period_ms)


class _Batcher:
    """One event loop's queue of pending hits and the task that sends them.

    Hits that arrive while a call is in flight wait for the next one, so under load they share
    round trips and an idle server sends each hit at once. The sending task is its own task:
    a cancelled request only drops its own future.
    """

    def __init__(self, url: str) -> None:
        client = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.script = client.register_script(_GCRA)  # sent by hash (EVALSHA) after first use
        self.pending: list[tuple[str, float, float, asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    def submit(self, key: str, interval: float, tolerance: float) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((key, interval, tolerance, future))
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._flush())
        return future

    async def _flush(self) -> None:
        batch: list[tuple[str, float, float, asyncio.Future]] = []
        try:
            while self.pending:
                batch = [hit for hit in self.pending[:MAX_BATCH] if not hit[3].done()]
                del self.pending[:MAX_BATCH]
                if batch:
                    await self._send(batch)
        except BaseException:  # cancelled with its loop: nobody may wait forever
            for *_, future in batch + self.pending:
                future.cancel()
            self.pending.clear()
            raise
        finally:
            self.task = None

    async def _send(self, batch: list[tuple[str, float, float, asyncio.Future]]) -> None:
        now = time.time() * 1000
        args = [now]
        for _, interval, tolerance, _ in batch:
            args += (interval, tolerance)
        try:
            reply = await self.script(keys=[hit[0] for hit in batch], args=args)
        except Exception as exc:
            # Everyone waiting fails open now rather than after another timeout each.
            for *_, future in batch + self.pending:
                if not future.done():
                    future.set_exception(exc)
            self.pending.clear()
            return
        for i, (*_, future) in enumerate(batch):
            if not future.done():
                future.set_result((bool(reply[2 * i]), float(reply[2 * i + 1]), now))


class RedisStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._batchers: dict[asyncio.AbstractEventLoop, _Batcher] = {}

    async def hit(self, key: str, limit: int, period_ms: float) -> Decision:
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _Batcher(self.url)
        allowed, tat, now = await batcher.submit(
            f"{get_settings().queue_namespace}:rl:{key}", period_ms / limit, period_ms
        )
        return _decide(allowed, tat, now, limit, period_ms)


class Limiter:
    def __init__(self, store: MemoryStore | RedisStore) -> None:
        self.store = store

    async def hit(self, key: str, limit: int, period_s: float = 60.0) -> Decision | None:
        """None when the backend failed (the caller serves the request anyway)."""
        try:
            return await self.store.hit(key, max(1, limit), period_s * 1000)
        except (aioredis.RedisError, OSError) as exc:
            BACKEND_ERRORS.inc()
            log.warning("rate limiter unavailable, failing open: %s", type(exc).__name__)
            return None

    async def enforce(self, key: str, limit: int, period_s: float = 60.0) -> Decision | None:
        decision = await self.hit(key, limit, period_s)
        if decision is not None and not decision.allowed:
            raise RateLimited(
                f"Rate limit exceeded; retry in {decision.retry_after} seconds.",
                headers=decision.headers(),
            )
        return decision


_limiter: Limiter | None = None


def limiter() -> Limiter:
    global _limiter
    if _limiter is None:
        url = get_settings().redis_url
        _limiter = Limiter(RedisStore(url) if url else MemoryStore())
    return _limiter
