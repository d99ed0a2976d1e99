"""A job that servers enqueue and workers record, so `/status` shows whether workers consume."""

from __future__ import annotations

import os
import socket

import dramatiq

from models.platform import system
from tessera.core import db, metrics

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=10_000)
async def heartbeat() -> None:
    async with db.transaction() as session:
        await system.record_heartbeat(session=session, worker_id=WORKER_ID)
    metrics.JOBS.labels("heartbeat", "ok").inc()
