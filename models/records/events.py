"""Domain events, written in the same transaction as the change that causes them (outbox).

A relay (workers/outbox.py) publishes committed events to the job queue; a rolled-back change
leaves no event behind, and an unpublished event waits in this table until the queue is back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Index, bindparam, cast
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import get_in_org, id_field, jsonb_field, rfc3339, timestamp_field, utcnow
from tessera.core.ids import new_id
from tessera.core.request_context import request_id_if_any


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_unpublished", "created_at", postgresql_where="published_at IS NULL"),
        Index("ix_events_org_created", "org_id", "created_at"),
    )

    id: str = id_field("evt")
    org_id: str | None = Field(default=None, max_length=40)
    type: str = Field(max_length=100, index=True)
    data: dict = jsonb_field()
    actor_type: str | None = Field(default=None, max_length=20)
    actor_id: str | None = Field(default=None, max_length=40)
    request_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    published_at: datetime | None = timestamp_field(default=None)


async def emit(
    *,
    session: AsyncSession,
    type: str,
    org_id: str | None,
    data: dict[str, Any],
    actor_type: str | None = None,
    actor_id: str | None = None,
) -> Event:
    """Record an event in the caller's transaction; it is published only if that commits."""
    event = Event(
        org_id=org_id,
        type=type,
        data=data,
        actor_type=actor_type,
        actor_id=actor_id,
        request_id=request_id_if_any(),
    )
    session.add(event)
    return event


# The same row as `emit`'s, as a statement of its own: `activity` sends it in the round trip that
# appends the audit entry. A SELECT without FROM, which `audit.append_with_change` completes.
_COLUMNS = ("id", "org_id", "type", "data", "actor_type", "actor_id", "request_id", "created_at")
INSERT_SQL = f"INSERT INTO events ({', '.join(_COLUMNS)}) SELECT " + ", ".join(
    "CAST(:event_data AS jsonb)" if c == "data" else f":event_{c}" for c in _COLUMNS
)


def insert_after(rows):
    """`INSERT_SQL` for a statement built with SQLAlchemy: one event for each of `rows`' rows
    (a CTE), with `insert`'s parameters."""
    values = [cast(bindparam("event_data"), JSONB) if c == "data" else bindparam(f"event_{c}")
              for c in _COLUMNS]  # fmt: skip
    return sa_insert(Event.__table__).from_select(list(_COLUMNS), select(*values).select_from(rows))


def insert(
    *,
    type: str,
    org_id: str | None,
    data: dict[str, Any],
    actor_type: str | None = None,
    actor_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """`INSERT_SQL` and its parameters for one new event (published only if the caller commits)."""
    return INSERT_SQL, {
        "event_id": new_id("evt"),
        "event_org_id": org_id,
        "event_type": type,
        "event_data": orjson.dumps(data).decode(),
        "event_actor_type": actor_type,
        "event_actor_id": actor_id,
        "event_request_id": request_id_if_any(),
        "event_created_at": utcnow(),
    }


async def get(*, session: AsyncSession, org_id: str, event_id: str) -> Event:
    return await get_in_org(
        session, Event, event_id, org_id=org_id, missing="No event with this id."
    )


def public(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "org_id": event.org_id,
        "data": event.data,
        "actor": {"type": event.actor_type or "system", "id": event.actor_id},
        "request_id": event.request_id,
        "created_at": rfc3339(event.created_at),
    }


def list_query(
    *,
    org_id: str,
    type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
):
    stmt = select(Event).where(Event.org_id == org_id)
    if type:
        stmt = stmt.where(Event.type == type)
    if created_after:
        stmt = stmt.where(Event.created_at >= created_after)
    if created_before:
        stmt = stmt.where(Event.created_at < created_before)
    return stmt
