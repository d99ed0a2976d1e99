"""The last-owner rule: an organization keeps an owner.

An owner is an active user holding the built-in `owner` role with no department limit. Every
change that can take that from someone goes through `ensure_owner_remains` in its transaction:
a member's roles changing (`models.identity.member_roles`), a member leaving
(`models.identity.members.remove_member`), an account being deactivated or deleted
(`models.identity.closure`).
"""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.identity.tables import Membership, Role, RoleGrant, User
from tessera.core.errors import Conflict
from tessera.core.permissions import OWNER

# A grant that makes its holder an owner: of the built-in role, without a department limit.
_OWNER_GRANT = (RoleGrant.department.is_(None), Role.org_id.is_(None), Role.name == OWNER)

CLOSING_LAST_OWNER = (
    "This is the last owner of an organization that has other members; "
    "make another member owner first."
)


def is_owner_role(role: Role) -> bool:
    return role.org_id is None and role.name == OWNER


async def holds_owner_role(*, session: AsyncSession, org_id: str, user_id: str) -> bool:
    """Whether the user holds the built-in `owner` role in the organization (any grant)."""
    stmt = (
        select(RoleGrant.id)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(
            RoleGrant.org_id == org_id,
            RoleGrant.user_id == user_id,
            Role.org_id.is_(None),
            Role.name == OWNER,
        )
        .limit(1)
    )
    return (await session.exec(stmt)).first() is not None


async def ensure_owner_remains(
    *, session: AsyncSession, user_id: str, org_id: str | None = None, message: str
) -> None:
    """409 (`message`) when a change would take the organization's last owner away: `user_id`
    loses the owner role in `org_id` or leaves it; without `org_id`, their account closes, which
    concerns every organization they own. Someone else must be an owner there; a closing account
    that is the only member left of an organization may go (nobody remains to lack an owner).

    The organization's owner grants are locked for the rest of the transaction, so two changes
    at once (two owners stepping down, one removed while the other closes their account) cannot
    both pass."""
    if org_id is not None:
        if not await _keeps_an_owner(session, org_id, user_id, closing=False):
            raise Conflict(message)
        return
    owned = (
        select(RoleGrant.org_id)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(RoleGrant.user_id == user_id, *_OWNER_GRANT)
    )
    for owned_org_id in (await session.exec(owned)).all():
        if not await _keeps_an_owner(session, owned_org_id, user_id, closing=True):
            raise Conflict(message)


async def _keeps_an_owner(session: AsyncSession, org_id: str, user_id: str, *, closing: bool):
    owners = (
        select(RoleGrant.user_id, User.status)
        .join(Role, Role.id == RoleGrant.role_id)
        .join(User, User.id == RoleGrant.user_id)
        .where(RoleGrant.org_id == org_id, *_OWNER_GRANT)
        .with_for_update(of=RoleGrant)
    )
    held = (await session.exec(owners)).all()
    if all(holder != user_id for holder, _ in held):
        return True  # not an owner here: nothing is taken away
    if any(holder != user_id and status == "active" for holder, status in held):
        return True
    return closing and not await _has_other_members(session, org_id, user_id)


async def _has_other_members(session: AsyncSession, org_id: str, user_id: str) -> bool:
    others = (
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.org_id == org_id,
            Membership.user_id != user_id,
            User.status != "deleted",
        )
        .limit(1)
    )
    return (await session.exec(others)).first() is not None
