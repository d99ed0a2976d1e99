"""The outbox relay: hands what committed transactions left in the database to the job queue.

Two tables feed it, both written in the transaction of the change they belong to: domain events
(`models.records.events`, fanned out to webhooks) and the jobs requests ask for
(`models.records.outbox`). A pass is one transaction: one statement claims a batch of both (SKIP
LOCKED, so every API replica runs a relay and each row is still handed over by one of them), marking
the events published and deleting the messages; the batch is sent from a worker thread (the broker
client blocks), and the transaction commits only once every send succeeded. If the broker refuses
one, the pass rolls back and the whole batch waits for the next pass, so a row is handed over at
least once (what went out before the refusal goes again) and the jobs themselves are idempotent.
Nothing is sent for a change that never committed, because uncommitted rows are invisible here.
Messages for an actor this process does not know (queued by a newer release) are left for a process
that does.

A relay sleeps on LISTEN: the tables' NOTIFY trigger wakes it when a writer commits. A poll every
`TESSERA_OUTBOX_POLL_SECONDS` stays as the fallback for a notification lost with the listening
connection, and is all there is while that connection cannot be opened. Once woken it lets the
burst settle for `BATCH_WINDOW_S` before its pass: a pass has a fixed cost however few rows it
moves, and under load one pass per commit cost the server about as much as the writes themselves
(`make bench` profile); a few milliseconds of delivery latency buys one pass per burst. A pass
that moved a full batch goes again at once; otherwise the relay waits for the next notification,
which PostgreSQL keeps for it while it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from sqlalchemy import text

from models.records import outbox
from tessera.core import db
from tessera.core.settings import get_settings
from workers import webhooks
from workers.broker import broker

log = logging.getLogger("tessera.outbox")

BATCH_WINDOW_S = 0.01
BATCH_LIMIT = 200


# One round trip claims both tables. The subqueries lock (SKIP LOCKED) what the outer statements
# then mark or delete; the partial index on unpublished events serves the first. The events of a
# pass become one fan-out job; each message is its own job. Rows: (actor, args, rows carried).
_CLAIM = text(
    "WITH due_events AS ("
    " UPDATE events SET published_at = now() WHERE id IN ("
    "  SELECT id FROM events WHERE published_at IS NULL"
    "  ORDER BY created_at, id LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " RETURNING id, created_at), "
    "due_messages AS ("
    " DELETE FROM outbox_messages WHERE id IN ("
    "  SELECT id FROM outbox_messages WHERE actor_name = ANY(:actors)"
    "  ORDER BY created_at, id LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " RETURNING actor_name, args, created_at) "
    "SELECT CAST(:fan_out AS varchar), jsonb_agg(id ORDER BY created_at, id), count(*) "
    "FROM due_events HAVING count(*) > 0 "
    "UNION ALL SELECT actor_name, args, 1 FROM due_messages"
)


def _send(batch: list[tuple[str, list]]) -> None:
    for actor_name, args in batch:
        broker.get_actor(actor_name).send(*args)


async def relay_once(limit: int = BATCH_LIMIT) -> int:
    """One pass; returns how many rows it handed over, or raises what the broker raised (and
    then nothing of the batch is marked as handed over)."""
    params = {
        "limit": limit,
        "actors": sorted(broker.get_declared_actors()),
        "fan_out": webhooks.fan_out.actor_name,
    }
    async with db.statements() as conn:
        claimed = await conn.fetch_all(_CLAIM, params)
        if claimed:
            await asyncio.to_thread(_send, [(name, args) for name, args, _ in claimed])
    return sum(rows for _, _, rows in claimed)


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
