"""Members of an organization: joining (the primitive every path uses, and adding a registered
user by email), reading them with their roles, and leaving.

Membership changes lock the organization row first (`lock`), then the owner grants
(`models.identity.ownership`), so concurrent changes serialise and the organization keeps an
owner. The roles a member holds are changed in `models.identity.member_roles`; invitations are
`models.identity.invitations`.
"""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import delete as sql_delete
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import rfc3339, utcnow
from models.common.pagination import paginate
from models.identity import ownership, roles, sign_ins, users
from models.identity.tables import Membership, Organization, Role, RoleGrant, User
from tessera.core.caller import Principal
from tessera.core.errors import Conflict, Detail, NotFound, ValidationFailed

# What `paginate` sorts and pages members by: rows carry `id` (the user id), `joined_at`, `email`.
MEMBER_COLUMNS = SimpleNamespace(
    id=Membership.user_id, joined_at=Membership.created_at, email=User.email
)


async def lock(*, session: AsyncSession, org_id: str) -> None:
    """Serialise membership changes of one organization for the rest of the transaction."""
    await session.get(Organization, org_id, with_for_update=True)


async def add_member(*, session: AsyncSession, org_id: str, user_id: str, role: str) -> None:
    """Make a user a member holding `role`; 409 when they already are one."""
    inserted = await session.exec(
        insert(Membership)
        .values(org_id=org_id, user_id=user_id, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(Membership.user_id)
    )
    if inserted.first() is None:
        raise Conflict("The user is already a member of this organization.")
    await roles.grant_role(session=session, org_id=org_id, user_id=user_id, role_name=role)


async def is_member(*, session: AsyncSession, org_id: str, user_id: str) -> bool:
    return await session.get(Membership, (org_id, user_id)) is not None


def members_query(*, org_id: str):
    return (
        select(
            Membership.user_id.label("id"),
            User.email,
            User.display_name,
            Membership.created_at.label("joined_at"),
        )
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id)
    )


async def list_members(
    *,
    session: AsyncSession,
    org_id: str,
    sort: str,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    scope: str = "",
) -> dict:
    """A page of the organization's members with their roles, as the list response."""
    page = await paginate(
        session,
        members_query(org_id=org_id),
        model=MEMBER_COLUMNS,
        sort=sort,
        limit=limit,
        offset=offset,
        cursor=cursor,
        scope=scope,
    )
    names = await role_names(session=session, org_id=org_id, user_ids=[r.id for r in page.items])
    return page.envelope(lambda row: _public_member(row, names.get(row.id, [])))


async def get_member(*, session: AsyncSession, org_id: str, user_id: str) -> dict:
    row = (await session.exec(members_query(org_id=org_id).where(User.id == user_id))).first()
    if row is None:
        raise NotFound("No member with this user id in the organization.")
    names = await role_names(session=session, org_id=org_id, user_ids=[user_id])
    return _public_member(row, names.get(user_id, []))


async def add_existing_user(
    *, session: AsyncSession, org_id: str, email: str, role: str, actor: Principal
) -> dict:
    """Add a registered user, found by email, with one role the caller may confer."""
    await lock(session=session, org_id=org_id)
    found = await require_role(session=session, org_id=org_id, name=role, field="role")
    ensure_may_confer(actor, [found])
    user = await users.get_by_email(session=session, email=email)
    if user is None or user.status == "deleted":
        raise NotFound("No user with this email; invite them instead.")
    await add_member(session=session, org_id=org_id, user_id=user.id, role=found.name)
    if user.org_id is None:
        user.org_id = org_id
    member = await get_member(session=session, org_id=org_id, user_id=user.id)
    await users.record(session, "member.added", org_id, user.id, roles=member["roles"])
    return member


async def remove_member(
    *, session: AsyncSession, org_id: str, user_id: str, actor: Principal
) -> None:
    """End a membership: its role grants go, the user's sign-ins to the organization end, and
    their default organization falls back to another one (or none). The caller must hold every
    permission the member's roles give (403); the last owner stays (409)."""
    await lock(session=session, org_id=org_id)
    await get_member(session=session, org_id=org_id, user_id=user_id)
    current = [role for _, role in await grants(session=session, org_id=org_id, user_id=user_id)]
    ensure_may_confer(actor, current)
    await ownership.ensure_owner_remains(
        session=session,
        org_id=org_id,
        user_id=user_id,
        message="The last owner cannot be removed; make another member owner first.",
    )
    await session.exec(
        sql_delete(RoleGrant).where(RoleGrant.org_id == org_id, RoleGrant.user_id == user_id)
    )
    await session.exec(
        sql_delete(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    )
    await sign_ins.revoke_in_organization(
        session=session, org_id=org_id, user_id=user_id, reason="member_removed"
    )
    user = await session.get(User, user_id)
    if user is not None and user.org_id == org_id:
        user.org_id = await fallback_org(session=session, user_id=user_id, leaving=org_id)
    await users.record(session, "member.removed", org_id, user_id)


def _public_member(row, names: list[str]) -> dict:
    return {
        "user_id": row.id,
        "email": row.email,
        "display_name": row.display_name,
        "roles": names,
        "joined_at": rfc3339(row.joined_at),
    }


# --- rules the membership operations share --------------------------------------------------


async def grants(
    *, session: AsyncSession, org_id: str, user_id: str
) -> list[tuple[RoleGrant, Role]]:
    stmt = (
        select(RoleGrant, Role)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(RoleGrant.org_id == org_id, RoleGrant.user_id == user_id)
    )
    return list((await session.exec(stmt)).all())


async def role_names(
    *, session: AsyncSession, org_id: str, user_ids: list[str]
) -> dict[str, list[str]]:
    """The names of the roles each user holds in the organization, whatever their department."""
    if not user_ids:
        return {}
    stmt = (
        select(RoleGrant.user_id, Role.name)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(RoleGrant.org_id == org_id, RoleGrant.user_id.in_(user_ids))
    )
    names: dict[str, set[str]] = {}
    for user_id, name in (await session.exec(stmt)).all():
        names.setdefault(user_id, set()).add(name)
    return {user_id: sorted(found) for user_id, found in names.items()}


async def require_role(*, session: AsyncSession, org_id: str, name: str, field: str) -> Role:
    role = await roles.find_role(session=session, org_id=org_id, name=name)
    if role is None:
        raise ValidationFailed(
            "The role does not exist.", [Detail(field, "UNKNOWN_ROLE", f"No role named '{name}'.")]
        )
    return role


def ensure_may_confer(actor: Principal, conferred: list[Role]) -> None:
    """No escalation: granting or taking away roles needs every permission they carry (the rule
    role grants follow everywhere, `models.identity.roles.ensure_may_confer`)."""
    permissions = {p for role in conferred for p in roles.role_permissions(role)}
    roles.ensure_may_confer(set(actor.permissions), permissions)


async def fallback_org(*, session: AsyncSession, user_id: str, leaving: str) -> str | None:
    """The organization a user signs in to after leaving their default one: the one they joined
    first, if any."""
    stmt = (
        select(Membership.org_id)
        .where(Membership.user_id == user_id, Membership.org_id != leaving)
        .order_by(Membership.created_at, Membership.org_id)
        .limit(1)
    )
    return (await session.exec(stmt)).first()
