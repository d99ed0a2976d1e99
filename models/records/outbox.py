"""Jobs a request asks for, written in the same transaction as the change they act on (outbox).

A handler never sends to the queue itself: had it committed first, a broker outage would leave
its row waiting forever; had it sent first, the job could run before the commit (or for a change
that rolled back). It calls `enqueue` inside its transaction instead, and the outbox relay
(workers/outbox.py) hands the message to dramatiq after the commit, retrying while the broker is
away, and deletes it in the same transaction. Inserts here and into `events` wake the relays
through a NOTIFY trigger (migration 0005), which PostgreSQL delivers only when the writer commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import factory, id_field, timestamp_field, utcnow

# The channel the trigger notifies and the relays listen on.
CHANNEL = "tessera_outbox"


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_messages"

    id: str = id_field("msg")
    actor_name: str = Field(max_length=100)
    args: list[Any] = Field(default_factory=factory(list), sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_field(default_factory=utcnow, index=True)


async def enqueue(*, session: AsyncSession, actor: str, args: Sequence[Any]) -> None:
    """Queue the actor named `actor` with `args` once the caller's transaction commits (never if
    it rolls back). Jobs are named, not imported, so that services and handlers do not depend on
    the workers that run them."""
    session.add(OutboxMessage(actor_name=actor, args=list(args)))
