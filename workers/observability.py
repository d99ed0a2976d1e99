"""Prometheus metrics of the job system, in whichever process runs it (`tessera worker`, or the
server when jobs run in-process):

    tessera_job_runs_total{queue, actor, outcome}   succeeded, failed (may be retried), skipped,
                                                    dead (given up: moved to the dead letters)
    tessera_job_duration_seconds{queue, actor}      time spent running a job
    tessera_queue_messages{queue, state}            ready, delayed and dead messages, read from
                                                    the broker at scrape time

dramatiq's own Prometheus middleware serves its own HTTP endpoint and a fixed set of names; this
one feeds the registry that `/metrics` (and `tessera worker`'s metrics port) already expose.
"""

from __future__ import annotations

import logging
import threading
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("tessera.worker")

JOB_RUNS = Counter(
    "tessera_job_runs_total",
    "Background job runs, by queue, actor and outcome (succeeded, failed, skipped, dead).",
    ["queue", "actor", "outcome"],
)
JOB_DURATION = Histogram(
    "tessera_job_duration_seconds",
    "Time spent running a background job.",
    ["queue", "actor"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def _labels(message) -> tuple[str, str]:
    # Delayed messages carry their delay queue's name (`default.DQ`); report the queue itself.
    return message.queue_name.removesuffix(".DQ"), message.actor_name


class JobMetrics(dramatiq.Middleware):
    """Counts every job's outcome and times it, for every actor, without code in the actors."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()  # worker threads process messages concurrently

    def before_process_message(self, broker, message) -> None:
        with self._lock:
            self._started[message.message_id] = time.perf_counter()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        queue, actor = _labels(message)
        if started is not None:
            JOB_DURATION.labels(queue, actor).observe(time.perf_counter() - started)
        JOB_RUNS.labels(queue, actor, "failed" if exception else "succeeded").inc()

    def after_skip_message(self, broker, message) -> None:
        with self._lock:
            self._started.pop(message.message_id, None)
        JOB_RUNS.labels(*_labels(message), "skipped").inc()

    def after_nack(self, broker, message) -> None:
        JOB_RUNS.labels(*_labels(message), "dead").inc()


STATES = ("ready", "delayed", "dead")


def queue_depths(broker: dramatiq.Broker) -> list[tuple[str, str, int]]:
    """(queue, state, messages) for every declared queue; read from Redis or the stub broker."""
    queues = sorted(q for q in broker.get_declared_queues() if not q.endswith(".DQ"))
    if isinstance(broker, RedisBroker):
        key = f"{broker.namespace}:{{}}".format
        pipe = broker.client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(key(queue))
            pipe.llen(key(dq_name(queue)))
            pipe.zcard(key(xq_name(queue)))
        counts = iter(pipe.execute())
        return [(queue, state, next(counts)) for queue in queues for state in STATES]
    if isinstance(broker, StubBroker):
        return [
            (queue, state, count)
            for queue in queues
            for state, count in (
                ("ready", broker.queues[queue].qsize()),
                ("delayed", broker.queues[dq_name(queue)].qsize()),
                ("dead", len(broker.dead_letters_by_queue[queue])),
            )
        ]
    return []


class QueueDepthCollector:
    """Reads the queue lengths when Prometheus scrapes; a broker outage leaves the gauge out (the
    readiness check reports the outage) instead of failing the whole scrape."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def collect(self):
        family = GaugeMetricFamily(
            "tessera_queue_messages",
            "Messages in the job queues, by queue and state (ready, delayed, dead).",
            labels=["queue", "state"],
        )
        try:
            for queue, state, count in queue_depths(self.broker):
                family.add_metric([queue, state], count)
        except Exception:  # a scrape must not fail because the broker is down
            log.warning("could not read the queue depths", exc_info=True)
            return
        yield family


def install(broker: dramatiq.Broker) -> None:
    broker.add_middleware(JobMetrics())
    REGISTRY.register(QueueDepthCollector(broker))
