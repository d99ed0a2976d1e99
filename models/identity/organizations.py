"""Organizations (tenants): creating, reading, changing and deleting one.

A caller addresses only the organization its credentials were issued for (the access token's
`org`, an API key's organization); any other organization id answers 404, exactly like one that
does not exist. Members are `models.identity.members` (`add_member` and `is_member` are
imported from here as well), invitations `models.identity.invitations`.
"""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import rfc3339, utcnow
from models.identity import mfa_factors, ownership, sign_ins
from models.identity.members import add_member, fallback_org
from models.identity.members import is_member as is_member  # for sign-in and OAuth
from models.identity.tables import Membership, Organization, User
from models.records import activity
from tessera.core.caller import Principal
from tessera.core.errors import Conflict, Detail, NotFound, PermissionDenied, ValidationFailed
from tessera.core.permissions import OWNER


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValidationFailed(
            "The organization name is empty.",
            [Detail("name", "TOO_SHORT", "Use at least one character that is not a space.")],
        )
    return cleaned


async def create(*, session: AsyncSession, name: str, owner_id: str) -> Organization:
    """A new organization whose creator is a member holding the `owner` role; it becomes the
    creator's default organization when they have none. Records nothing: the caller records
    `organization.created` (`create_and_record` does both)."""
    org = Organization(name=_clean_name(name))
    session.add(org)
    await session.flush()
    await add_member(session=session, org_id=org.id, user_id=owner_id, role=OWNER)
    owner = await session.get(User, owner_id)
    if owner is not None and owner.org_id is None:
        owner.org_id = org.id
    return org


async def create_and_record(*, session: AsyncSession, name: str, owner_id: str) -> Organization:
    """`create`, with its `organization.created` entry (the owner is the actor)."""
    org = await create(session=session, name=name, owner_id=owner_id)
    await activity.record(
        session=session,
        action="organization.created",
        org_id=org.id,
        resource_type="organization",
        resource_id=org.id,
        data={"name": org.name},
        actor_user_id=owner_id,
    )
    return org


async def get(
    *, session: AsyncSession, org_id: str, caller_org_id: str | None, lock: bool = False
) -> Organization:
    """The caller's own organization; any other id is 404 (tenant isolation)."""
    org = None
    if caller_org_id is not None and org_id == caller_org_id:
        org = await session.get(Organization, org_id, with_for_update=lock)
    if org is None:
        raise NotFound("No organization with this id.")
    return org


def list_query(*, user_id: str | None, org_id: str | None):
    """Organizations a user belongs to; for an API key, its own organization."""
    stmt = select(Organization)
    if user_id is not None:
        return stmt.join(Membership, Membership.org_id == Organization.id).where(
            Membership.user_id == user_id
        )
    return stmt.where(Organization.id == org_id)


async def update(
    *, session: AsyncSession, org: Organization, changes: dict, actor: Principal
) -> None:
    """Rename, or require MFA of every member. A user turns the requirement on only once their
    own account has MFA (409 otherwise): members without it keep no permissions until they
    enrol, and that must not lock out the person who asked for it."""
    turning_on = changes.get("require_mfa") and not org.require_mfa
    if (
        turning_on
        and actor.user_id is not None
        and await mfa_factors.get_factor(session=session, user_id=actor.user_id) is None
    ):
        raise Conflict("Set up MFA on your own account before requiring it of every member.")
    if "name" in changes:
        org.name = _clean_name(changes["name"])
    if "require_mfa" in changes:
        org.require_mfa = changes["require_mfa"]
    org.updated_at = utcnow()
    await _record(session, "organization.updated", org.id, changes=sorted(changes))


async def delete(*, session: AsyncSession, org: Organization, actor: Principal) -> None:
    """Only an owner deletes an organization. Its sign-ins end at once; members whose default
    organization it was fall back to another of their organizations (or none)."""
    if not await _is_owner(session=session, org_id=org.id, actor=actor):
        raise PermissionDenied("Only an owner of the organization may delete it.")
    await sign_ins.revoke_in_organization(
        session=session, org_id=org.id, reason="organization_deleted"
    )
    org_id = org.id
    defaulted = (await session.exec(select(User).where(User.org_id == org_id))).all()
    await session.delete(org)
    await session.flush()
    for user in defaulted:
        user.org_id = await fallback_org(session=session, user_id=user.id, leaving=org_id)
    await _record(session, "organization.deleted", org_id)


def public(org: Organization) -> dict:
    return {
        "id": org.id,
        "name": org.name,
        "require_mfa": org.require_mfa,
        "created_at": rfc3339(org.created_at),
        "updated_at": rfc3339(org.updated_at),
    }


async def _is_owner(*, session: AsyncSession, org_id: str, actor: Principal) -> bool:
    """The caller signed in as an owner and still is one (API keys never are)."""
    if actor.user_id is None or OWNER not in actor.roles:
        return False
    return await ownership.holds_owner_role(session=session, org_id=org_id, user_id=actor.user_id)


async def _record(session: AsyncSession, action: str, org_id: str, **data) -> None:
    await activity.record(
        session=session,
        action=action,
        org_id=org_id,
        resource_type="organization",
        resource_id=org_id,
        data=data,
    )
