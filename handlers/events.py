"""Domain events of the caller's organization."""

from __future__ import annotations

from models import events
from models.pagination import paginate
from tessera import db
from tessera.auth import require_org
from tessera.errors import NotFound
from tessera.http import parse_datetime


async def list_events(
    limit: int = 20,
    offset: int = 0,
    cursor: str | None = None,
    type_: str | None = None,  # `type` (Connexion appends _ to names of built-ins)
    created_after: str | None = None,
    created_before: str | None = None,
):
    caller = require_org()
    stmt = events.list_query(
        org_id=caller.org_id,
        type=type_,
        created_after=parse_datetime(created_after, "created_after"),
        created_before=parse_datetime(created_before, "created_before"),
    )
    async with db.transaction() as session:
        page = await paginate(
            session,
            stmt,
            model=events.Event,
            sort="-created_at",
            limit=limit,
            offset=offset,
            cursor=cursor,
        )
    return page.envelope(events.public), 200


async def get_event(event_id: str):
    caller = require_org()
    async with db.transaction() as session:
        event = await session.get(events.Event, event_id)
    if event is None or event.org_id != caller.org_id:
        raise NotFound("No event with this id.")
    return {"data": events.public(event)}, 200
