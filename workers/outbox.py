"""The outbox relay: moves committed events from the `events` table to the job queue.

Each pass locks a batch of unpublished events (SKIP LOCKED, so any number of relays can run),
enqueues their fan-out and marks them published in the same transaction. If the broker is down
the transaction rolls back and the events wait for the next pass: nothing is lost, and nothing
is published for a change that never committed, because uncommitted events are invisible here.
"""

from __future__ import annotations

import asyncio
import logging

from models import events
from models.base import utcnow
from tessera import db
from tessera.settings import get_settings
from workers import webhooks

log = logging.getLogger("tessera.outbox")


async def relay_once(limit: int = 200) -> int:
    async with db.transaction() as session:
        batch = await events.claim_unpublished(session=session, limit=limit)
        for event in batch:
            webhooks.fan_out.send(event.id)
            event.published_at = utcnow()
    return len(batch)


async def run_forever() -> None:
    poll = get_settings().outbox_poll_s
    while True:
        try:
            moved = await relay_once()
        except Exception:  # broker or database away: keep the events, try again shortly
            log.warning("outbox relay pass failed; events stay queued", exc_info=True)
            moved = 0
        if not moved:
            await asyncio.sleep(poll)
