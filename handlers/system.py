"""Health, readiness, status, version and metrics of this instance."""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from tessera.core import metrics
from tessera.core.errors import Detail, ServiceUnavailable
from tessera.core.settings import get_settings
from tessera.web import health

API_VERSION = "v1"


async def get_health():
    return {"data": {"status": "ok"}}, 200


async def get_liveness():
    return {"data": {"status": "ok"}}, 200


async def get_readiness():
    checks = await health.check_dependencies()
    failing = [c for c in checks if c["status"] != "ok"]
    if failing:
        raise ServiceUnavailable(
            "A dependency is unavailable.",
            [Detail(c["name"], "UNAVAILABLE", c.get("error", "unavailable")) for c in failing],
        )
    return {"data": {"status": "ok", "checks": checks}}, 200


async def get_status():
    return {"data": await health.status()}, 200


async def get_version():
    settings = get_settings()
    return {
        "data": {
            "version": health.package_version(),
            "api_version": API_VERSION,
            "git_commit": settings.git_commit,
            "build_time": settings.build_time,
        }
    }, 200


async def get_metrics():
    # Collectors read the queue lengths from Redis synchronously: keep that off the event loop.
    body, content_type = await asyncio.to_thread(metrics.exposition)
    return Response(body, media_type=content_type)
