"""Prometheus metrics of this process, exposed at `/metrics`."""

from __future__ import annotations

from functools import cache

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from tessera.core import db

REQUESTS = Counter(
    "tessera_http_requests_total", "HTTP requests served.", ["method", "operation", "status"]
)
LATENCY = Histogram(
    "tessera_http_request_duration_seconds",
    "Time to serve an HTTP request.",
    ["method", "operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# What a job's work came to in domain terms (a webhook the endpoint refused, an email the SMTP
# server rejected); every job's run outcome is counted in workers/observability.py.
JOBS = Counter(
    "tessera_jobs_total", "Background jobs run, by actor and outcome.", ["actor", "outcome"]
)


class _PoolCollector:
    """The database connection pool, read at scrape time."""

    def collect(self):
        stats = db.pool_stats()
        size = GaugeMetricFamily(
            "tessera_db_pool_size", "Connections the pool keeps open (before overflow)."
        )
        size.add_metric([], stats["size"])
        connections = GaugeMetricFamily(
            "tessera_db_pool_connections",
            "Database connections of this process by state (checked_out, idle, overflow).",
            labels=["state"],
        )
        for state in ("checked_out", "idle", "overflow"):
            connections.add_metric([state], stats[state])
        yield size
        yield connections


REGISTRY.register(_PoolCollector())


@cache
def _series(method: str, operation: str, status: int):
    # `labels()` validates and locks on every call; the children it returns are stable, and
    # there are no more of them here than in the registry itself.
    return REQUESTS.labels(method, operation, str(status)), LATENCY.labels(method, operation)


def observe_request(method: str, operation: str, status: int, seconds: float) -> None:
    requests, latency = _series(method, operation, status)
    requests.inc()
    latency.observe(seconds)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
