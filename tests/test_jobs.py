"""Background jobs: a job the server enqueues is run by `tessera worker` over the real Redis."""

from __future__ import annotations

import re
import time

import psycopg
import pytest

from tests.support.services import ServerProcess, free_port, redis_url


@pytest.fixture
def redis(test_env):
    url = redis_url()
    if url is None:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (CI has it)")
    return url


def _heartbeat_from(database_url: str, pid: int) -> bool:
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT 1 FROM worker_heartbeats WHERE worker_id LIKE %s", (f"%:{pid}",)
        ).fetchone()
    return row is not None


def test_worker_process_runs_a_job_the_server_enqueued(test_env, redis, tmp_path):
    env = {**test_env, "REDIS_URL": redis}
    metrics_port = free_port()
    worker = ServerProcess(
        {**env, "TESSERA_WORKER_METRICS_PORT": str(metrics_port)},
        tmp_path / "worker.log",
        "worker",
        "--threads",
        "1",
    ).start(None)
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        server.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _heartbeat_from(
            env["DATABASE_URL"], worker.proc.pid
        ):
            time.sleep(0.2)
        assert _heartbeat_from(env["DATABASE_URL"], worker.proc.pid), worker.stop()
        import httpx

        status = httpx.get(server.base_url + "/status").json()["data"]
        assert status["queue"]["backend"] == "redis"
        assert [c["name"] for c in status["checks"]] == ["database", "redis"]
        assert status["queue"]["last_worker_heartbeat_at"] is not None

        # Prometheus: the worker counts the job it ran; the server reads the Redis queue depths.
        ran = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert re.search(
            r'^tessera_job_runs_total\{actor="heartbeat",outcome="succeeded",queue="default"\} '
            r"[1-9]",
            ran,
            re.M,
        ), ran
        served = httpx.get(server.base_url + "/metrics").text
        assert re.search(
            r'^tessera_queue_messages\{queue="default",state="ready"\} \d', served, re.M
        )
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()
        worker.stop()
    assert not _heartbeat_from(env["DATABASE_URL"], server.proc.pid), "the server must not consume"
