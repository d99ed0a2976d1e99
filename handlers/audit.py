"""The caller's organization's audit log: query and verify."""

from __future__ import annotations

from models.records import audit
from tessera.core import db
from tessera.core.caller import require_org
from tessera.web.http import created_between, listing, parse_datetime


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
        **created_between(created_after, created_before),
    )
    async with db.transaction() as session:
        return await listing(
            session,
            stmt,
            model=audit.AuditEntry,
            render=audit.public,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


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


async def create_audit_export(body: dict):
    # Imported here so that this block stays self-contained in a module shared by two owners.
    from models.platform import jobs
    from models.records import activity, outbox
    from tessera.web.http import one

    caller = require_org()
    after = parse_datetime(body.get("created_after"), "created_after")
    before = parse_datetime(body.get("created_before"), "created_before")
    params = {
        "format": body["format"],
        "action": body.get("action"),
        "created_after": after.isoformat() if after else None,
        "created_before": before.isoformat() if before else None,
    }
    async with db.transaction() as session:
        job = await jobs.create(
            session=session,
            org_id=caller.org_id,
            kind="audit_export",
            params=params,
            created_by=caller.actor_id,
        )
        await activity.record(
            session=session,
            action="audit.exported",
            org_id=caller.org_id,
            resource_type="job",
            resource_id=job.id,
            data={k: v for k, v in params.items() if v is not None},
        )
        await outbox.enqueue(session=session, actor="audit_export", args=[job.id])
    return one(jobs.public(job), 202, {"Location": f"/v1/jobs/{job.id}"})
