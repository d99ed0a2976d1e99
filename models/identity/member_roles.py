"""The roles a member holds: replacing them all (`PUT .../members/{user_id}`), granting one and
revoking one (`/v1/users/{user_id}/roles`).

The caller must hold every permission of a role it grants or takes away (403), and the last
owner keeps the owner role (409, `models.identity.ownership`).

Changing roles does not touch access tokens already issued: their `roles` and `scope` are fixed
at sign-in and refresh, so a change reaches a member within one access-token lifetime (15
minutes), or at once when they sign in again or refresh.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import rfc3339
from models.identity import members, ownership, roles, users
from models.identity.tables import Role, RoleGrant
from tessera.core.caller import Principal
from tessera.core.errors import Conflict, Detail, NotFound, ValidationFailed


async def set_roles(
    *, session: AsyncSession, org_id: str, user_id: str, names: list[str], actor: Principal
) -> dict:
    """Replace a member's roles. Grants of roles the member keeps stay as they are (with any
    department condition)."""
    await members.lock(session=session, org_id=org_id)
    await members.get_member(session=session, org_id=org_id, user_id=user_id)
    wanted: dict[str, Role] = {}
    unknown = []
    for index, name in enumerate(names):
        role = await roles.find_role(session=session, org_id=org_id, name=name)
        if role is None:
            unknown.append(Detail(f"roles.{index}", "UNKNOWN_ROLE", f"No role named '{name}'."))
        else:
            wanted[role.id] = role
    if unknown:
        raise ValidationFailed("Some roles do not exist.", unknown)
    current = await members.grants(session=session, org_id=org_id, user_id=user_id)
    held = {role.id: role for _, role in current}
    added = [role for role_id, role in wanted.items() if role_id not in held]
    dropped = [role for role_id, role in held.items() if role_id not in wanted]
    members.ensure_may_confer(actor, added + dropped)
    if any(ownership.is_owner_role(role) for role in dropped):
        await ownership.ensure_owner_remains(
            session=session,
            org_id=org_id,
            user_id=user_id,
            message="The last owner cannot lose the owner role; make another member owner first.",
        )
    for grant, role in current:
        if role.id not in wanted:
            await session.delete(grant)
    for role in added:
        session.add(RoleGrant(org_id=org_id, user_id=user_id, role_id=role.id))
    await session.flush()
    member = await members.get_member(session=session, org_id=org_id, user_id=user_id)
    await users.record(session, "member.updated", org_id, user_id, roles=member["roles"])
    return member


def public_grant(grant: RoleGrant, role: Role) -> dict:
    return {
        "id": grant.id,
        "user_id": grant.user_id,
        "role": role.name,
        "department": grant.department,
        "created_at": rfc3339(grant.created_at),
    }


async def _member_or_404(session: AsyncSession, org_id: str, user_id: str) -> None:
    if not await members.is_member(session=session, org_id=org_id, user_id=user_id):
        raise NotFound("No member with this id in the organization.")


async def grant_member_role(
    *,
    session: AsyncSession,
    org_id: str,
    user_id: str,
    role_name: str,
    department: str | None,
    caller_permissions: set[str],
) -> tuple[RoleGrant, Role]:
    """Grant a role to a member; with `department`, it applies only while the member is in it."""
    await _member_or_404(session, org_id, user_id)
    role = await roles.find_role(session=session, org_id=org_id, name=role_name)
    if role is None:
        raise ValidationFailed(
            "The role does not exist.",
            [Detail("role", "UNKNOWN_ROLE", f"No role named '{role_name}'.")],
        )
    roles.ensure_may_confer(caller_permissions, roles.role_permissions(role))
    conflict = Conflict(f"The member already holds the role '{role_name}'.")
    if await _grant_of(session, org_id, user_id, role.id) is not None:
        raise conflict
    grant = RoleGrant(org_id=org_id, user_id=user_id, role_id=role.id, department=department)
    try:
        async with session.begin_nested():
            session.add(grant)
    except IntegrityError:  # a concurrent grant of the same role
        raise conflict from None
    await roles.record(
        session,
        "role.granted",
        org_id,
        role.id,
        user_id=user_id,
        role=role.name,
        department=department,
    )
    return grant, role


async def _grant_of(
    session: AsyncSession, org_id: str, user_id: str, role_id: str
) -> RoleGrant | None:
    stmt = select(RoleGrant).where(
        RoleGrant.org_id == org_id, RoleGrant.user_id == user_id, RoleGrant.role_id == role_id
    )
    return (await session.exec(stmt)).first()


async def revoke_member_role(
    *,
    session: AsyncSession,
    org_id: str,
    user_id: str,
    role_name: str,
    caller_permissions: set[str],
) -> None:
    """Take a role back."""
    await _member_or_404(session, org_id, user_id)
    role = await roles.find_role(session=session, org_id=org_id, name=role_name)
    grant = None if role is None else await _grant_of(session, org_id, user_id, role.id)
    if role is None or grant is None:
        raise NotFound(f"The member does not hold the role '{role_name}'.")
    roles.ensure_may_confer(caller_permissions, roles.role_permissions(role))
    if ownership.is_owner_role(role):
        await ownership.ensure_owner_remains(
            session=session,
            org_id=org_id,
            user_id=user_id,
            message="This is the organization's last owner; grant `owner` to another first.",
        )
    await session.delete(grant)
    await roles.record(session, "role.revoked", org_id, role.id, user_id=user_id, role=role.name)
