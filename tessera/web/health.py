"""Dependency checks behind `/health/ready` and `/status`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import redis.asyncio as redis

from models.common.base import rfc3339
from models.platform import system
from tessera.core import db
from tessera.core.settings import get_settings
from workers.broker import backend

STARTED_AT = datetime.now(UTC)
CHECK_TIMEOUT_S = 2.0


def package_version() -> str:
    try:
        return version("tessera")
    except PackageNotFoundError:
        return "0.0.0"


async def _timed(name: str, probe) -> dict:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means "not ready"; name the kind, never internals
        return {
            "name": name,
            "status": "unavailable",
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "error": "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__,
        }
    return {
        "name": name,
        "status": "ok",
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }


async def _ping_redis(url: str) -> None:
    client = redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_S)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def check_dependencies() -> list[dict]:
    settings = get_settings()
    probes = [_timed("database", db.ping)]
    if settings.redis_url:
        url = settings.redis_url
        probes.append(_timed("redis", lambda: _ping_redis(url)))
    return list(await asyncio.gather(*probes))


async def status() -> dict:
    checks = await check_dependencies()
    last_beat = None
    if all(c["status"] == "ok" for c in checks if c["name"] == "database"):
        async with db.transaction() as session:
            last_beat = await system.last_heartbeat(session=session)
    now = datetime.now(UTC)
    return {
        "status": "ok" if all(c["status"] == "ok" for c in checks) else "degraded",
        "version": package_version(),
        "environment": get_settings().env.value,
        "started_at": rfc3339(STARTED_AT),
        "uptime_seconds": round((now - STARTED_AT).total_seconds(), 3),
        "checks": checks,
        "queue": {"backend": backend(), "last_worker_heartbeat_at": rfc3339(last_beat)},
    }
