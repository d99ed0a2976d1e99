"""The caller's organization's audit log: query and verify."""

from __future__ import annotations

from models import audit
from models.pagination import paginate
from tessera import db
from tessera.auth import require_org
from tessera.http import parse_datetime


async def list_audit_entries(
    limit: int = 20,
    offset: int = 0,
    cursor: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
):
    caller = require_org()
    stmt = audit.list_query(
        org_id=caller.org_id,
        actor_id=actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        created_after=parse_datetime(created_after, "created_after"),
        created_before=parse_datetime(created_before, "created_before"),
    )
    async with db.transaction() as session:
        page = await paginate(
            session,
            stmt,
            model=audit.AuditEntry,
            sort="-created_at",
            limit=limit,
            offset=offset,
            cursor=cursor,
        )
    return page.envelope(audit.public), 200


async def verify_audit_chain():
    caller = require_org()
    async with db.transaction() as session:
        result = await audit.verify(session=session, org_id=caller.org_id)
    return {
        "data": {
            "intact": result.intact,
            "checked": result.checked,
            "broken_at": result.broken_at,
            "reason": result.reason,
        }
    }, 200
