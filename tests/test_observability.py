"""/metrics beyond HTTP: the database pool, the job queues and every job's outcome, as Prometheus
sees them (jobs here run in-process; tests/test_jobs.py scrapes a `tessera worker` over Redis)."""

from __future__ import annotations

import asyncio

import dramatiq
from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


_actors: dict[str, dramatiq.Actor] = {}


def _test_actors() -> dict[str, dramatiq.Actor]:
    """Two actors on the running app's broker: one that works, one that always fails."""
    if not _actors:
        from workers.broker import broker

        def metrics_probe_ok() -> None:
            return None

        def metrics_probe_fails() -> None:
            raise RuntimeError("this job fails on purpose")

        for fn in (metrics_probe_ok, metrics_probe_fails):
            _actors[fn.__name__] = dramatiq.actor(fn, broker=broker, max_retries=0)
    return _actors


def _drop_probe_dead_letters() -> None:
    from workers.broker import broker

    dead = broker.dead_letters_by_queue["default"]
    dead[:] = [m for m in dead if not m.actor_name.startswith("metrics_probe")]


async def test_metrics_show_db_pool_queue_depth_and_job_outcomes(client):
    actors = _test_actors()
    before = _samples((await client.get("/metrics")).text)
    actors["metrics_probe_ok"].send()
    actors["metrics_probe_fails"].send()

    def runs(samples, actor: str, outcome: str) -> float:
        found = _value(
            samples, "tessera_job_runs_total", queue="default", actor=actor, outcome=outcome
        )
        return found or 0.0

    samples = before
    for _ in range(100):  # the in-process worker picks both up within a few 100 ms
        samples = _samples((await client.get("/metrics")).text)
        if runs(samples, "metrics_probe_fails", "dead") > runs(
            before, "metrics_probe_fails", "dead"
        ):
            break
        await asyncio.sleep(0.1)
    assert (
        runs(samples, "metrics_probe_ok", "succeeded")
        == runs(before, "metrics_probe_ok", "succeeded") + 1
    )
    assert (
        runs(samples, "metrics_probe_fails", "failed")
        == runs(before, "metrics_probe_fails", "failed") + 1
    )
    assert (
        runs(samples, "metrics_probe_fails", "dead")
        == runs(before, "metrics_probe_fails", "dead") + 1
    )
    timed = _value(
        samples, "tessera_job_duration_seconds_count", queue="default", actor="metrics_probe_ok"
    )
    assert timed is not None and timed >= 1

    # Queue depth: the failed job now sits in the dead letters; nothing is waiting.
    assert _value(samples, "tessera_queue_messages", queue="default", state="dead") >= 1
    assert _value(samples, "tessera_queue_messages", queue="default", state="ready") == 0
    _drop_probe_dead_letters()

    # The pool: the requests above used the database (readiness checks it), so it is open.
    assert (await client.get("/health/ready")).status_code == 200
    samples = _samples((await client.get("/metrics")).text)
    assert _value(samples, "tessera_db_pool_size") >= 1
    idle = _value(samples, "tessera_db_pool_connections", state="idle")
    checked_out = _value(samples, "tessera_db_pool_connections", state="checked_out")
    assert idle >= 1 and checked_out is not None
