"""Roles (built-in and per organization), the permissions they carry, and the permission audit.

The roles a member holds are changed in `models.identity.member_roles`; the rule that an
organization keeps an owner is `models.identity.ownership`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import rfc3339, utcnow
from models.identity.tables import Role, RoleGrant, User
from models.records import activity
from tessera.core.errors import Conflict, NotFound, PermissionDenied
from tessera.core.permissions import ADMIN, PERMISSIONS, SYSTEM_ROLES, grants


def role_permissions(role: Role) -> list[str]:
    return permissions_of(role.name, role.org_id, role.permissions)


def permissions_of(name: str, org_id: str | None, stored: list[str]) -> list[str]:
    """A role's permissions: a built-in role's from the catalog, a custom role's as stored."""
    if org_id is None and name in SYSTEM_ROLES:
        return list(SYSTEM_ROLES[name][1])
    return list(stored)


def role_description(role: Role) -> str:
    if role.org_id is None and role.name in SYSTEM_ROLES:
        return SYSTEM_ROLES[role.name][0]
    return role.description


def effective_permissions(
    held: Iterable[Sequence], department: str | None
) -> tuple[list[str], set[str]]:
    """Role names and permissions a member holds, from their grants as rows of (grant's
    department, role name, role's org_id, role's stored permissions); a grant limited to a
    department applies only while the member is in it (the ABAC rule on role grants)."""
    names, permissions = [], set()
    for grant_department, name, role_org_id, stored in held:
        if grant_department is not None and grant_department != department:
            continue
        names.append(name)
        permissions.update(permissions_of(name, role_org_id, stored))
    return sorted(names), permissions


# The columns `effective_permissions` reads, in its order.
GRANT_COLUMNS = (RoleGrant.department, Role.name, Role.org_id, Role.permissions)


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
    """Role names and effective permissions of a member (an access token states them unless MFA
    enrollment is due: `models.signin.login.token_access`)."""
    stmt = (
        select(*GRANT_COLUMNS)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(RoleGrant.org_id == org_id, RoleGrant.user_id == user_id)
    )
    return effective_permissions((await session.exec(stmt)).all(), department)


# --- roles as API resources -------------------------------------------------------------------
#
# Changing roles does not touch access tokens already issued: their `roles` and `scope` are fixed
# at sign-in and refresh (models.signin.login._access_token), so a change reaches a member
# within one access-token lifetime (15 minutes), or at once when they sign in again or refresh.


def is_system(role: Role) -> bool:
    return role.org_id is None


def public_role(role: Role) -> dict:
    return {
        "id": role.id,
        "name": role.name,
        "description": role_description(role),
        "permissions": sorted(role_permissions(role)),
        "system": is_system(role),
        "created_at": rfc3339(role.created_at),
        "updated_at": rfc3339(role.updated_at),
    }


def ensure_may_confer(caller_permissions: set[str], permissions: list[str] | set[str]) -> None:
    """Nobody hands out (or takes away) more than they hold: every permission of a role a caller
    creates, changes, deletes, grants or revokes must be one the caller holds, unless the caller
    is an admin. Without this, `roles:write` alone would be a path to every permission."""
    if ADMIN in caller_permissions:
        return
    missing = sorted(p for p in permissions if not grants(caller_permissions, p))
    if missing:
        raise PermissionDenied(
            "You cannot confer or withdraw permissions you do not hold: " + ", ".join(missing) + "."
        )


def roles_query(*, org_id: str):
    """Built-in roles and this organization's custom roles."""
    return select(Role).where(or_(Role.org_id == org_id, Role.org_id.is_(None)))


async def get_role(*, session: AsyncSession, org_id: str, role_id: str) -> Role:
    role = await session.get(Role, role_id)
    if role is None or (role.org_id is not None and role.org_id != org_id):
        raise NotFound("No role with this id.")
    return role


def _ensure_custom(role: Role) -> None:
    if is_system(role):
        raise Conflict(f"'{role.name}' is a built-in role; built-in roles cannot be changed.")


async def record(session: AsyncSession, action: str, org_id: str, resource_id: str, **data):
    """The audit entry and event of a change to a role or its grants, in the caller's
    transaction."""
    await activity.record(
        session=session,
        action=action,
        org_id=org_id,
        resource_type="role",
        resource_id=resource_id,
        data=data,
    )


async def create_role(
    *,
    session: AsyncSession,
    org_id: str,
    name: str,
    description: str,
    permissions: list[str],
    caller_permissions: set[str],
) -> Role:
    """A custom role; 409 when the name is a built-in role's or already taken in the org."""
    ensure_may_confer(caller_permissions, permissions)
    if await find_role(session=session, org_id=org_id, name=name) is not None:
        raise Conflict(f"A role named '{name}' already exists.")
    role = Role(org_id=org_id, name=name, description=description, permissions=sorted(permissions))
    try:
        async with session.begin_nested():
            session.add(role)
    except IntegrityError:  # a concurrent create won the name
        raise Conflict(f"A role named '{name}' already exists.") from None
    await record(session, "role.created", org_id, role.id, name=name, permissions=role.permissions)
    return role


async def update_role(
    *, session: AsyncSession, role: Role, changes: dict, caller_permissions: set[str]
) -> Role:
    _ensure_custom(role)
    if "permissions" in changes:
        new = set(changes["permissions"])
        ensure_may_confer(caller_permissions, new.symmetric_difference(role.permissions))
        role.permissions = sorted(new)
    if "description" in changes:
        role.description = changes["description"]
    role.updated_at = utcnow()
    assert role.org_id is not None
    await record(session, "role.updated", role.org_id, role.id, changes=sorted(changes))
    return role


async def delete_role(*, session: AsyncSession, role: Role, caller_permissions: set[str]) -> None:
    """Delete a custom role and every grant of it."""
    _ensure_custom(role)
    ensure_may_confer(caller_permissions, role.permissions)
    assert role.org_id is not None
    await session.exec(delete(RoleGrant).where(RoleGrant.role_id == role.id))
    await session.delete(role)
    await record(session, "role.deleted", role.org_id, role.id, name=role.name)


async def permission_audit(*, session: AsyncSession, org_id: str) -> list[dict]:
    """For every permission in the catalog, who holds it through which grant. A holder whose
    grant is limited to a department they are not in is listed with `effective: false`."""
    stmt = (
        select(RoleGrant, Role, User)
        .join(Role, Role.id == RoleGrant.role_id)
        .join(User, User.id == RoleGrant.user_id)
        .where(RoleGrant.org_id == org_id)
        .order_by(User.email, Role.name)
    )
    rows = list((await session.exec(stmt)).all())
    held = [(grant, role, user, set(role_permissions(role))) for grant, role, user in rows]
    return [
        {
            "permission": permission,
            "holders": [
                {
                    "user_id": user.id,
                    "email": user.email,
                    "role": role.name,
                    "department_limit": grant.department,
                    "effective": grant.department is None or grant.department == user.department,
                }
                for grant, role, user, permissions in held
                if grants(permissions, permission)
            ],
        }
        for permission in PERMISSIONS
    ]
