"""Webhook delivery latency and throughput: one `tessera worker` over Redis, a local receiver.

Starts a server (which relays the outbox) and one worker with production settings, registers an
endpoint pointing at a receiver on 127.0.0.1, then (1) measures end-to-end latency of single
events (commit of the change -> signed request at the receiver) and (2) commits a burst of events
at once and measures how many per second the one worker delivers.

    .venv/bin/python bench/webhooks.py [--events 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.receiver import Receiver  # noqa: E402
from tests.support.services import ServerProcess, ThrowawayDatabase, redis_url  # noqa: E402

PASSWORD = "Bench-Password-42!"


async def emit(n: int, org_id: str) -> None:
    from models.records import events
    from tessera.core import db

    async with db.transaction() as session:
        for i in range(n):
            await events.emit(session=session, type="project.created", org_id=org_id, data={"n": i})
    await db.dispose()


def _drop_keys(url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)


def _run(
    args: argparse.Namespace,
    redis: str,
    work: Path,
    database: ThrowawayDatabase,
    namespace: str,
    processes: list[ServerProcess],
) -> tuple[list[float], int, float]:
    """Latency samples (ms), then how many of the burst arrived and in how many seconds."""
    from tessera.core.tokens import generate_pem

    (work / "keys").mkdir()
    (work / "keys" / "k.pem").write_bytes(generate_pem())
    env = {
        "DATABASE_URL": database.create(),
        "REDIS_URL": redis,
        "TESSERA_QUEUE_NAMESPACE": namespace,  # no other run's worker takes these jobs
        "TESSERA_ENV": "production",
        "TESSERA_SIGNING_KEYS_DIR": str(work / "keys"),
        "TESSERA_SECRET_KEY": secrets.token_urlsafe(48),
        "TESSERA_DATA_DIR": str(work / "data"),
        "TESSERA_LOG_LEVEL": "WARNING",
        "TESSERA_WEBHOOK_ALLOW_PRIVATE": "true",
        "TESSERA_RATE_LIMIT_DEFAULT_TIER": "enterprise",
    }
    os.environ.update(env)
    from tessera.cli import main as cli

    cli(["migrate"])
    server = ServerProcess(env, work / "server.log")
    processes.append(server)
    server.start()
    worker = ServerProcess(env, work / "worker.log", "worker", "--threads", "8")
    processes.append(worker)
    worker.start(None)
    with Receiver() as receiver, httpx.Client(base_url=server.base_url, timeout=30) as http:
        body = {
            "email": "wh@bench.example.com",
            "password": PASSWORD,
            "display_name": "W",
            "organization_name": "W",
        }
        org_id = http.post("/v1/auth/register", json=body).json()["data"]["organization"]["id"]
        token = http.post("/v1/auth/login", json={"email": body["email"], "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['data']['access_token']}"}
        http.post(
            "/v1/webhooks",
            headers=headers,
            json={"url": receiver.url, "event_types": ["project.created"]},
        )
        time.sleep(1.0)
        latencies = []
        for _ in range(args.samples):
            before = len(receiver.received)
            started = time.perf_counter()
            asyncio.run(emit(1, org_id))
            while len(receiver.received) == before:
                time.sleep(0.001)
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.05)
        before = len(receiver.received)
        started = time.perf_counter()
        asyncio.run(emit(args.events, org_id))
        deadline = time.monotonic() + 300
        while len(receiver.received) - before < args.events and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        delivered = len(receiver.received) - before
    return latencies, delivered, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    redis = redis_url()
    if redis is None:
        print("webhook benchmark skipped: it needs Redis on 127.0.0.1:6379", file=sys.stderr)
        return 0
    work = Path(tempfile.mkdtemp(prefix="tessera-whbench-"))
    database = ThrowawayDatabase(work)
    namespace = f"tessera-whbench-{secrets.token_hex(4)}"
    processes: list[ServerProcess] = []
    try:
        latencies, delivered, elapsed = _run(args, redis, work, database, namespace, processes)
    finally:
        for process in processes:
            process.stop()
        if database.admin_url is not None:
            database.drop()
        _drop_keys(redis, namespace)
        shutil.rmtree(work, ignore_errors=True)
    latencies.sort()
    print(
        f"single-event latency (commit -> receiver), {len(latencies)} samples: "
        f"p50 {statistics.median(latencies):.0f} ms, p90 {latencies[int(len(latencies) * 0.9) - 1]:.0f} ms, "
        f"max {latencies[-1]:.0f} ms"
    )
    print(
        f"burst: {delivered}/{args.events} events delivered in {elapsed:.1f} s by one worker "
        f"(8 threads): {delivered / elapsed:.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
