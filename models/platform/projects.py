"""Projects: organization-scoped resources with an owner (the model for ownership rules).

Who may change a project is an ABAC decision (`models.identity.roles.may_modify_project`):
admins any project, other writers only the ones they own.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import get_in_org, id_field, rfc3339, timestamp_field, utcnow
from models.identity.roles import may_modify_project
from models.records import activity
from tessera.core.errors import Detail, PermissionDenied, ValidationFailed

STATUSES = ("active", "archived")


class Project(SQLModel, table=True):
    __tablename__ = "projects"

    id: str = id_field("prj")
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    owner_id: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    title: str = Field(max_length=200)
    status: str = Field(default="active", max_length=20)
    created_at: datetime = timestamp_field(default_factory=utcnow, index=True)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


# The new project, written only when its owner (if any) is a member of the organization; the
# change `activity.record_change` records. It locks the rows its foreign keys name (FOR KEY
# SHARE) before the audit chain's lock (`audit.append_with_change`).
_INSERT_FOR_MEMBER = (
    "INSERT INTO projects (id, org_id, owner_id, title, status, created_at, updated_at) "
    "SELECT :project_id, o.id, CAST(:project_owner_id AS varchar), :project_title, "
    ":project_status, :project_created_at, :project_updated_at FROM organizations o "
    "WHERE o.id = :project_org_id AND (CAST(:project_owner_id AS varchar) IS NULL OR EXISTS ("
    "SELECT FROM memberships m JOIN users u ON u.id = m.user_id "
    "WHERE m.org_id = o.id AND m.user_id = :project_owner_id FOR KEY SHARE OF u)) "
    "FOR KEY SHARE OF o RETURNING id"
)


def public(project: Project) -> dict:
    return {
        "id": project.id,
        "org_id": project.org_id,
        "owner_id": project.owner_id,
        "title": project.title,
        "status": project.status,
        "created_at": rfc3339(project.created_at),
        "updated_at": rfc3339(project.updated_at),
    }


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_query(
    *, org_id: str, status: str | None = None, owner_id: str | None = None, q: str | None = None
):
    stmt = select(Project).where(Project.org_id == org_id)
    if status:
        stmt = stmt.where(Project.status == status)
    if owner_id:
        stmt = stmt.where(Project.owner_id == owner_id)
    if q:
        stmt = stmt.where(Project.title.ilike(f"%{_like_escape(q)}%", escape="\\"))
    return stmt


async def get(*, session: AsyncSession, org_id: str, project_id: str) -> Project:
    return await get_in_org(
        session, Project, project_id, org_id=org_id, missing="No project with this id."
    )


def owner_for(*, user_id: str | None, requested: str | None) -> str | None:
    """A person owns what they create; an API key (no `user_id`) may name a member as the owner,
    or leave the project without one."""
    if user_id is None:
        return requested
    if requested not in (None, user_id):
        raise PermissionDenied("Only an API key may create a project for another member.")
    return user_id


async def create(
    *, org_id: str, owner_id: str | None, title: str, status: str = "active"
) -> Project:
    """The project, its audit entry and its event in one statement that commits on its own
    (one round trip); `owner_id`, when given, must be a member of the organization (422
    otherwise, and nothing is written)."""
    project = Project(org_id=org_id, owner_id=owner_id, title=title.strip(), status=status)
    params = {f"project_{c.name}": getattr(project, c.name) for c in Project.__table__.columns}
    if not await activity.record_change(
        change=(_INSERT_FOR_MEMBER, params),
        action="project.created",
        org_id=project.org_id,
        resource_type="project",
        resource_id=project.id,
        data={"title": project.title},
    ):
        raise ValidationFailed(
            "The owner is not a member of the organization.",
            [Detail("owner_id", "NOT_A_MEMBER", "Name a member of the organization.")],
        )
    return project


def ensure_may_modify(project: Project, *, permissions: set[str], user_id: str | None) -> None:
    if not may_modify_project(permissions=permissions, user_id=user_id, owner_id=project.owner_id):
        raise PermissionDenied("Only the project's owner or an admin may change this project.")


async def update(*, session: AsyncSession, project: Project, changes: dict) -> Project:
    """Apply `title`/`status` changes (the caller has passed `ensure_may_modify`)."""
    if "title" in changes:
        project.title = changes["title"].strip()
    if "status" in changes:
        project.status = changes["status"]
    project.updated_at = utcnow()
    await _record(session, "project.updated", project, changes=sorted(changes))
    return project


async def delete(*, session: AsyncSession, project: Project) -> None:
    await session.delete(project)
    await _record(session, "project.deleted", project)


async def _record(session: AsyncSession, action: str, project: Project, **data) -> None:
    await activity.record(
        session=session,
        action=action,
        org_id=project.org_id,
        resource_type="project",
        resource_id=project.id,
        data=data,
    )
