"""Invitations into an organization: a single-use token for one email address and one role,
valid for a week; accepting it makes the invited user a member."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete as sql_delete
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import get_in_org, rfc3339, utcnow
from models.identity import members, roles, users
from models.identity.tables import Invitation, Organization, User
from models.records import activity
from tessera.core import tokens
from tessera.core.caller import Principal
from tessera.core.errors import Conflict, NotFound, PermissionDenied

INVITATION_TTL = timedelta(days=7)


async def create_invitation(
    *, session: AsyncSession, org_id: str, email: str, role: str, actor: Principal
) -> tuple[Invitation, str]:
    """A pending invitation and its single-use token (returned once; only its SHA-256 is kept).
    A new invitation replaces the pending ones for the same email."""
    await members.lock(session=session, org_id=org_id)
    found = await members.require_role(session=session, org_id=org_id, name=role, field="role")
    members.ensure_may_confer(actor, [found])
    email = users.normalize_email(email)
    invitee = await users.get_by_email(session=session, email=email)
    if invitee is not None and await members.is_member(
        session=session, org_id=org_id, user_id=invitee.id
    ):
        raise Conflict("A user with this email is already a member of the organization.")
    await session.exec(
        sql_delete(Invitation).where(
            Invitation.org_id == org_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
        )
    )
    token = tokens.opaque("inv")
    invitation = Invitation(
        org_id=org_id,
        email=email,
        role=found.name,
        token_hash=tokens.digest(token),
        invited_by=actor.user_id,
        expires_at=utcnow() + INVITATION_TTL,
    )
    session.add(invitation)
    await session.flush()
    await _record(
        session,
        "invitation.created",
        org_id,
        invitation.id,
        email=invitation.email,
        role=invitation.role,
    )
    return invitation, token


def invitations_query(*, org_id: str, status: str | None = None):
    stmt = select(Invitation).where(Invitation.org_id == org_id)
    now = utcnow()
    if status == "accepted":
        stmt = stmt.where(Invitation.accepted_at.is_not(None))
    elif status == "pending":
        stmt = stmt.where(Invitation.accepted_at.is_(None), Invitation.expires_at > now)
    elif status == "expired":
        stmt = stmt.where(Invitation.accepted_at.is_(None), Invitation.expires_at <= now)
    return stmt


async def get_invitation(
    *, session: AsyncSession, org_id: str, invitation_id: str, lock: bool = False
) -> Invitation:
    return await get_in_org(
        session,
        Invitation,
        invitation_id,
        org_id=org_id,
        missing="No invitation with this id.",
        lock=lock,
    )


async def revoke_invitation(*, session: AsyncSession, org_id: str, invitation_id: str) -> None:
    invitation = await get_invitation(
        session=session, org_id=org_id, invitation_id=invitation_id, lock=True
    )
    if invitation.accepted_at is not None:
        raise Conflict("The invitation was already accepted; remove the member instead.")
    await session.delete(invitation)
    await _record(session, "invitation.revoked", org_id, invitation_id)


async def accept_invitation(
    *, session: AsyncSession, token: str, user_id: str
) -> tuple[Organization, Invitation]:
    """Join the inviting organization with the invited role. Only the invited email may accept,
    once, before the invitation expires."""
    by_token = select(Invitation).where(Invitation.token_hash == tokens.digest(token))
    invitation = (await session.exec(by_token)).first()
    if invitation is None:
        raise NotFound("No invitation with this token.")
    # Lock the organization, then the invitation (the order every membership change uses).
    await members.lock(session=session, org_id=invitation.org_id)
    locked = by_token.with_for_update().execution_options(populate_existing=True)
    invitation = (await session.exec(locked)).first()
    if invitation is None:
        raise NotFound("No invitation with this token.")
    user = await session.get(User, user_id)
    normalize = users.normalize_email
    if user is None or normalize(user.email) != normalize(invitation.email):
        raise PermissionDenied("This invitation was sent to another email address.")
    if invitation.accepted_at is not None:
        raise Conflict("This invitation has already been used.")
    if invitation.expires_at <= utcnow():
        raise Conflict("This invitation has expired; ask for a new one.")
    role = await roles.find_role(session=session, org_id=invitation.org_id, name=invitation.role)
    if role is None:
        raise Conflict("The invited role no longer exists; ask for a new invitation.")
    await members.add_member(
        session=session, org_id=invitation.org_id, user_id=user_id, role=invitation.role
    )
    invitation.accepted_at = utcnow()
    if user.org_id is None:
        user.org_id = invitation.org_id
    org = await session.get(Organization, invitation.org_id)
    assert org is not None  # the invitation row would be gone with it
    await _record(
        session,
        "invitation.accepted",
        org.id,
        invitation.id,
        user_id=user_id,
        role=invitation.role,
    )
    return org, invitation


def invitation_status(invitation: Invitation) -> str:
    if invitation.accepted_at is not None:
        return "accepted"
    return "expired" if invitation.expires_at <= utcnow() else "pending"


def public_invitation(invitation: Invitation, token: str | None = None) -> dict:
    body = {
        "id": invitation.id,
        "org_id": invitation.org_id,
        "email": invitation.email,
        "role": invitation.role,
        "status": invitation_status(invitation),
        "invited_by": invitation.invited_by,
        "expires_at": rfc3339(invitation.expires_at),
        "accepted_at": rfc3339(invitation.accepted_at),
        "created_at": rfc3339(invitation.created_at),
    }
    if token is not None:
        body["token"] = token
    return body


async def _record(session: AsyncSession, action: str, org_id: str, invitation_id: str, **data):
    await activity.record(
        session=session,
        action=action,
        org_id=org_id,
        resource_type="invitation",
        resource_id=invitation_id,
        data=data,
    )
