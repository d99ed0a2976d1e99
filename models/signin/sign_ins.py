"""Sign-ins: the `sessions` table, one row per signed-in device or OAuth client, and ending them.

A sign-in is what an access token's `sid` names and what its refresh tokens rotate under
(`models.signin.token_pairs`). The authentication middleware asks `is_live` on every request
with a user token, through a few-second cache that `revoke` drops its entry from. The listing
and ending operations of `/v1/users/{user_id}/sessions` are here too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text as sa_text
from sqlmodel import Field, SQLModel, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, rfc3339, timestamp_field, utcnow
from models.identity import users
from models.records import activity
from tessera.core import db
from tessera.core.cache import TTLCache
from tessera.core.errors import NotFound, PermissionDenied


class SignIn(SQLModel, table=True):
    """A sign-in: a device's, or an OAuth client's on the user's behalf."""

    __tablename__ = "sessions"

    id: str = id_field("ses")
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    org_id: str | None = Field(default=None, foreign_key="organizations.id", ondelete="CASCADE")
    user_agent: str | None = Field(default=None, max_length=500)
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    last_seen_at: datetime = timestamp_field(default_factory=utcnow)
    expires_at: datetime = timestamp_field()
    revoked_at: datetime | None = timestamp_field(default=None)
    revoked_reason: str | None = Field(default=None, max_length=50)
    # Set for sign-ins an OAuth client holds on the user's behalf, with the scope granted to it.
    client_id: str | None = Field(
        default=None, foreign_key="oauth_clients.id", index=True, ondelete="CASCADE"
    )
    scope: str | None = Field(default=None, max_length=2000)


# Live sign-ins by id, for a few seconds: `revoke` drops the entry.
live_cache = TTLCache()
_TOUCH = sa_text(
    "UPDATE sessions SET last_seen_at = now() "
    "WHERE id = :sid AND revoked_at IS NULL AND expires_at > now() RETURNING id"
)


async def is_live(sign_in_id: str) -> bool:
    """Whether the sign-in is live (not revoked, not expired); touches `last_seen_at`."""

    async def touch() -> bool:
        return await db.fetch_one(_TOUCH, {"sid": sign_in_id}) is not None

    return bool(await live_cache.fetch(sign_in_id, touch))


async def revoke(*, session: AsyncSession, sign_in_id: str, reason: str) -> bool:
    """End a sign-in (its refresh tokens stop rotating, its access tokens stop authenticating);
    False when it had already ended."""
    result = await session.exec(
        update(SignIn)
        .where(SignIn.id == sign_in_id, SignIn.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    live_cache.drop(sign_in_id)
    return result.rowcount > 0


async def revoke_user_sign_ins(
    *, session: AsyncSession, user_id: str, reason: str, keep: str | None = None
) -> int:
    """End every sign-in of the user but `keep`; returns how many ended."""
    stmt = select(SignIn.id).where(SignIn.user_id == user_id, SignIn.revoked_at.is_(None))
    ids = [sign_in_id for sign_in_id in (await session.exec(stmt)).all() if sign_in_id != keep]
    for sign_in_id in ids:
        await revoke(session=session, sign_in_id=sign_in_id, reason=reason)
    return len(ids)


# --- the sessions operations ----------------------------------------------------------------


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


async def sign_out(*, session: AsyncSession, sign_in_id: str, org_id: str | None) -> None:
    """End the caller's own sign-in, audited as `user.logout`."""
    await revoke(session=session, sign_in_id=sign_in_id, reason="logout")
    await activity.record(
        session=session,
        action="user.logout",
        org_id=org_id,
        resource_type="session",
        resource_id=sign_in_id,
    )
