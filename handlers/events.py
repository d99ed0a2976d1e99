"""Domain events of the caller's organization."""

from __future__ import annotations

from models.records import events
from tessera.core import db
from tessera.core.caller import require_org
from tessera.web.http import created_between, listing


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
        **created_between(created_after, created_before),
    )
    async with db.transaction() as session:
        return await listing(
            session,
            stmt,
            model=events.Event,
            render=events.public,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


async def get_event(event_id: str):
    caller = require_org()
    async with db.transaction() as session:
        event = await events.get(session=session, org_id=caller.org_id, event_id=event_id)
    return {"data": events.public(event)}, 200
