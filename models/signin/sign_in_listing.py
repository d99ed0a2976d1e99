"""Listing a user's sign-ins and ending them: the operations of `/v1/users/{user_id}/sessions`.

A user reaches every sign-in of their own; another member's, only those signed in to the
caller's organization (`reachable_scope`). Ending one is audited in the caller's transaction.
"""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import rfc3339, utcnow
from models.identity import users
from models.identity.sign_ins import SignIn, revoke
from models.records import activity
from tessera.core.errors import NotFound, PermissionDenied


def active_query(*, user_id: str):
    return select(SignIn).where(
        SignIn.user_id == user_id, SignIn.revoked_at.is_(None), SignIn.expires_at > utcnow()
    )


def user_query(*, user_id: str, org_id: str | None):
    """Active sign-ins of a user; with `org_id`, only those signed in to that organization."""
    stmt = active_query(user_id=user_id)
    return stmt if org_id is None else stmt.where(SignIn.org_id == org_id)


def public(sign_in: SignIn, *, current: str | None) -> dict:
    return {
        "id": sign_in.id,
        "user_id": sign_in.user_id,
        "user_agent": sign_in.user_agent,
        "ip": sign_in.ip,
        "created_at": rfc3339(sign_in.created_at),
        "last_seen_at": rfc3339(sign_in.last_seen_at),
        "expires_at": rfc3339(sign_in.expires_at),
        "current": sign_in.id == current,
    }


async def reachable_scope(
    *, session: AsyncSession, user_id: str, caller_id: str | None, caller_org_id: str | None
) -> str | None:
    """Which of `user_id`'s sign-ins the caller may reach: every one of their own (None: no
    organization filter); another member's only those signed in to the caller's organization.
    A user outside it is 404, like one that does not exist. (The permission another member's
    sign-ins need is the operation's `x-permission`, checked by `tessera.web.authentication`.)"""
    if caller_id is not None and user_id == caller_id:
        return None
    if caller_org_id is None:
        raise PermissionDenied("Join or create an organization first.")
    await users.get_member(session=session, org_id=caller_org_id, user_id=user_id)
    return caller_org_id


async def revoke_one(
    *, session: AsyncSession, user_id: str, sign_in_id: str, org_id: str | None, reason: str
) -> None:
    """End one active sign-in of the user (within `org_id` when given), audited; otherwise 404."""
    stmt = user_query(user_id=user_id, org_id=org_id).where(SignIn.id == sign_in_id)
    if (await session.exec(stmt)).first() is None:
        raise NotFound("No active session with this id.")
    await revoke(session=session, sign_in_id=sign_in_id, reason=reason)
    await activity.record(
        session=session,
        action="session.revoked",
        org_id=org_id,
        resource_type="session",
        resource_id=sign_in_id,
        data={"user_id": user_id, "reason": reason},
    )


async def revoke_all(
    *,
    session: AsyncSession,
    user_id: str,
    org_id: str | None,
    reason: str,
    keep: str | None = None,
) -> int:
    """End the user's active sign-ins (within `org_id` when given) except `keep`, audited."""
    found = (await session.exec(user_query(user_id=user_id, org_id=org_id))).all()
    ids = [sign_in.id for sign_in in found if sign_in.id != keep]
    for sign_in_id in ids:
        await revoke(session=session, sign_in_id=sign_in_id, reason=reason)
    await activity.record(
        session=session,
        action="user.sessions_revoked",
        org_id=org_id,
        resource_type="user",
        resource_id=user_id,
        data={"count": len(ids), "reason": reason},
    )
    return len(ids)
