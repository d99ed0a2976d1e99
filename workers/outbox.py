"""The outbox relay: hands what committed transactions left in the database to the job queue.

Two tables feed it, both written in the transaction of the change they belong to: domain events
(`models.events`, fanned out to webhooks) and the jobs requests ask for (`models.outbox`). Each
pass locks a batch of both (SKIP LOCKED, so every API replica runs a relay and each row is still
handed over by one of them), sends them, and marks the events published and deletes the messages
in the same transaction. If the broker refuses one, what went before it commits and the rest
waits for the next pass; nothing is sent for a change that never committed, because uncommitted
rows are invisible here. A row is handed over at least once: should the commit fail after a
send, the next pass sends it again, so the jobs themselves are idempotent.

A relay sleeps on LISTEN: the tables' NOTIFY trigger wakes it when a writer commits. A poll every
`TESSERA_OUTBOX_POLL_SECONDS` stays as the fallback for a notification lost with the listening
connection, and is all there is while that connection cannot be opened. Once woken it lets the
burst settle for `BATCH_WINDOW_S` before its pass: a pass costs a transaction and four
statements however few rows it moves, so under load one pass per commit cost the server as much
database work as the writes themselves (`make bench` profile); a few milliseconds of delivery
latency buys one pass per burst. A pass that moved a full batch goes again at once; otherwise
the relay waits for the next notification, which PostgreSQL keeps for it while it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from dramatiq.errors import ActorNotFound

from models import events, outbox
from models.base import utcnow
from tessera import db
from tessera.settings import get_settings
from workers import webhooks
from workers.broker import broker

log = logging.getLogger("tessera.outbox")

BATCH_WINDOW_S = 0.01
BATCH_LIMIT = 200


async def relay_once(limit: int = BATCH_LIMIT) -> int:
    """One pass; returns how many rows it handed over, or raises what the broker raised."""
    refused: Exception | None = None
    sent = 0
    async with db.transaction() as session:
        batch = [
            (webhooks.fan_out.actor_name, [event.id], event)
            for event in await events.claim_unpublished(session=session, limit=limit)
        ] + [
            (message.actor_name, message.args, message)
            for message in await outbox.claim(session=session, limit=limit)
        ]
        for actor_name, args, row in batch:
            try:
                broker.get_actor(actor_name).send(*args)
            except ActorNotFound:  # queued by a newer release: left for a process that knows it
                log.error("outbox message for unknown actor %s left in place", actor_name)
                continue
            except Exception as exc:  # broker away: keep this row and the rest for later
                refused = exc
                break
            if isinstance(row, events.Event):
                row.published_at = utcnow()
            else:
                await session.delete(row)
            sent += 1
    if refused is not None:
        raise refused
    return sent


class _Wakeup:
    """Waits for the outbox trigger's NOTIFY on a LISTEN connection, or for the poll interval."""

    def __init__(self) -> None:
        self._conn: psycopg.AsyncConnection | None = None

    async def wait(self, poll_s: float) -> None:
        try:
            if self._conn is None:
                self._conn = await db.listen(outbox.CHANNEL)
                return  # listening from now on: one more pass catches what committed before
            async for _ in self._conn.notifies(timeout=poll_s, stop_after=1):
                pass
            # The rest of the burst joins this pass; stop_after bounds it under a steady stream.
            async for _ in self._conn.notifies(timeout=BATCH_WINDOW_S, stop_after=BATCH_LIMIT):
                pass
        except (psycopg.Error, OSError):
            log.warning("outbox listener unavailable; polling", exc_info=True)
            await self.close()
            await asyncio.sleep(poll_s)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


async def run_forever() -> None:
    poll = get_settings().outbox_poll_s
    wakeup = _Wakeup()
    try:
        while True:
            try:
                moved = await relay_once()
            except Exception:  # broker or database away: everything waits; retry on the poll
                log.warning("outbox relay pass failed; rows stay queued", exc_info=True)
                await asyncio.sleep(poll)
                continue
            if moved < BATCH_LIMIT:  # else rows are left over: no need to wait for them
                await wakeup.wait(poll)
    finally:
        await wakeup.close()
