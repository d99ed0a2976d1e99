"""Projects: organization-scoped, owned by a member; only owners and admins change them."""

from __future__ import annotations

from contextlib import asynccontextmanager

from models.platform import projects
from tessera.core import db
from tessera.core.caller import require_org
from tessera.web.http import check_if_match, created, listing, one


async def list_projects(
    limit: int = 20,
    offset: int = 0,
    cursor: str | None = None,
    sort: str = "-created_at",
    status: str | None = None,
    owner_id: str | None = None,
    q: str | None = None,
):
    caller = require_org()
    async with db.transaction() as session:
        return await listing(
            session,
            projects.list_query(org_id=caller.org_id, status=status, owner_id=owner_id, q=q),
            model=projects.Project,
            render=projects.public,
            limit=limit,
            offset=offset,
            cursor=cursor,
            sort=sort,
        )


async def create_project(body: dict):
    caller = require_org()
    project = await projects.create(
        org_id=caller.org_id,
        owner_id=projects.owner_for(user_id=caller.user_id, requested=body.get("owner_id")),
        title=body["title"],
        status=body.get("status", "active"),
    )
    return created(projects.public(project), f"/v1/projects/{project.id}")


async def get_project(project_id: str):
    caller = require_org()
    async with db.transaction() as session:
        project = await projects.get(session=session, org_id=caller.org_id, project_id=project_id)
    return one(projects.public(project))


@asynccontextmanager
async def _modifiable(project_id: str):
    """A unit of work on a project the caller may change: another tenant's is 404, one the
    caller neither owns nor administers 403, a stale `If-Match` 412."""
    caller = require_org()
    async with db.transaction() as session:
        project = await projects.get(session=session, org_id=caller.org_id, project_id=project_id)
        projects.ensure_may_modify(
            project, permissions=set(caller.permissions), user_id=caller.user_id
        )
        check_if_match(projects.public(project))
        yield session, project


async def _change(project_id: str, changes: dict):
    async with _modifiable(project_id) as (session, project):
        await projects.update(session=session, project=project, changes=changes)
    return one(projects.public(project))


async def replace_project(project_id: str, body: dict):
    return await _change(project_id, body)


async def update_project(project_id: str, body: dict):
    return await _change(project_id, body)


async def delete_project(project_id: str):
    async with _modifiable(project_id) as (session, project):
        await projects.delete(session=session, project=project)
    return None, 204
