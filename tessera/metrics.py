"""Prometheus metrics of this process, exposed at `/metrics`."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter(
    "tessera_http_requests_total", "HTTP requests served.", ["method", "operation", "status"]
)
LATENCY = Histogram(
    "tessera_http_request_duration_seconds",
    "Time to serve an HTTP request.",
    ["method", "operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
JOBS = Counter(
    "tessera_jobs_total", "Background jobs run, by actor and outcome.", ["actor", "outcome"]
)


def observe_request(method: str, operation: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, operation, str(status)).inc()
    LATENCY.labels(method, operation).observe(seconds)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
