"""The dramatiq broker for this process, chosen once from settings."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.asyncio import AsyncIO

from tessera.core.settings import get_settings
from workers import observability


def _build() -> dramatiq.Broker:
    settings = get_settings()
    built: dramatiq.Broker
    if settings.redis_url:
        built = RedisBroker(url=settings.redis_url, namespace=settings.queue_namespace)
    else:
        built = StubBroker()
    built.add_middleware(AsyncIO())
    observability.install(built)  # job outcomes and queue depths in /metrics
    dramatiq.set_broker(built)
    return built


broker = _build()


def backend() -> str:
    return "redis" if isinstance(broker, RedisBroker) else "in-process"
