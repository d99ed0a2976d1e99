"""Roles (system and per organization), their permissions, and grants of roles to members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint, or_
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.base import text_array_field, timestamp_field, utcnow
from tessera.errors import NotFound
from tessera.ids import new_id


class Role(SQLModel, table=True):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: str = Field(default_factory=lambda: new_id("rol"), primary_key=True)
    # NULL for the built-in roles every organization shares.
    org_id: str | None = Field(
        default=None, foreign_key="organizations.id", index=True, ondelete="CASCADE"
    )
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=500)
    permissions: list[str] = text_array_field()
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


class RoleGrant(SQLModel, table=True):
    """A member holds a role in an organization, optionally only while in one department."""

    __tablename__ = "role_grants"
    __table_args__ = (UniqueConstraint("org_id", "user_id", "role_id"),)

    id: str = Field(default_factory=lambda: new_id("grt"), primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    role_id: str = Field(foreign_key="roles.id", ondelete="CASCADE")
    department: str | None = Field(default=None, max_length=100)
    created_at: datetime = timestamp_field(default_factory=utcnow)


# The permission catalog. Operations name the one they need in the spec (`x-permission`).
PERMISSIONS: dict[str, str] = {
    "users:read": "Read users of the organization",
    "users:write": "Create and update users",
    "users:delete": "Delete users",
    "organizations:read": "Read the organization",
    "organizations:write": "Update the organization",
    "members:read": "List members and invitations",
    "members:write": "Invite, update and remove members",
    "projects:read": "Read projects",
    "projects:write": "Create and update projects",
    "projects:delete": "Delete projects",
    "keys:read": "List API keys",
    "keys:manage": "Create, rotate and revoke API keys",
    "roles:read": "Read roles and the permission audit",
    "roles:write": "Create, change and grant roles",
    "sessions:read": "List other users' sessions",
    "sessions:manage": "Revoke other users' sessions and unlock accounts",
    "events:read": "Read the organization's events",
    "audit:read": "Read, verify and export the audit log",
    "webhooks:manage": "Manage webhook endpoints and deliveries",
    "admin": "Everything, including organization deletion",
}

ADMIN = "admin"
_ALL = sorted(PERMISSIONS)
_READS = ["users:read", "organizations:read", "members:read", "projects:read", "roles:read"]

# Built-in roles, shared by every organization. Their rows (org_id NULL) exist for grants to
# reference (id `rol_<name>`); their descriptions and permissions are defined here, in code.
SYSTEM_ROLES: dict[str, tuple[str, list[str]]] = {
    "owner": ("Owns the organization: every permission.", _ALL),
    "admin": ("Administers the organization: every permission.", _ALL),
    "editor": (
        "Creates projects and edits the projects they own.",
        [*_READS, "projects:write"],
    ),
    "viewer": ("Reads the organization's users and projects.", _READS),
}


def grants(permissions: set[str], needed: str) -> bool:
    return ADMIN in permissions or needed in permissions


def role_permissions(role: Role) -> list[str]:
    if role.org_id is None and role.name in SYSTEM_ROLES:
        return list(SYSTEM_ROLES[role.name][1])
    return list(role.permissions)


def role_description(role: Role) -> str:
    if role.org_id is None and role.name in SYSTEM_ROLES:
        return SYSTEM_ROLES[role.name][0]
    return role.description


def effective_permissions(
    grants_with_roles: list[tuple[RoleGrant, Role]], department: str | None
) -> tuple[list[str], set[str]]:
    """Role names and permissions a member holds; a grant limited to a department applies only
    while the member is in it (the ABAC rule on role grants)."""
    names, permissions = [], set()
    for grant, role in grants_with_roles:
        if grant.department is not None and grant.department != department:
            continue
        names.append(role.name)
        permissions.update(role_permissions(role))
    return sorted(names), permissions


def may_modify_project(*, permissions: set[str], user_id: str | None, owner_id: str | None) -> bool:
    """Admins modify any project; other writers (editors, custom roles) only the ones they own."""
    if ADMIN in permissions:
        return True
    return "projects:write" in permissions and user_id is not None and owner_id == user_id


async def find_role(*, session: AsyncSession, org_id: str, name: str) -> Role | None:
    """A custom role of this organization, or a built-in role, by name."""
    stmt = select(Role).where(Role.name == name, or_(Role.org_id == org_id, Role.org_id.is_(None)))
    return (await session.exec(stmt.order_by(Role.org_id.nulls_last()))).first()


async def grant_role(
    *,
    session: AsyncSession,
    org_id: str,
    user_id: str,
    role_name: str,
    department: str | None = None,
) -> RoleGrant:
    role = await find_role(session=session, org_id=org_id, name=role_name)
    if role is None:
        raise NotFound(f"No role named '{role_name}'.")
    grant = RoleGrant(org_id=org_id, user_id=user_id, role_id=role.id, department=department)
    session.add(grant)
    await session.flush()
    return grant


async def member_access(
    *, session: AsyncSession, org_id: str, user_id: str, department: str | None
) -> tuple[list[str], set[str]]:
    """Role names and effective permissions of a member (what goes into their access token)."""
    stmt = (
        select(RoleGrant, Role)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(RoleGrant.org_id == org_id, RoleGrant.user_id == user_id)
    )
    rows = list((await session.exec(stmt)).all())
    return effective_permissions(rows, department)
