"""Sign-ins: the `sessions` table, one row per signed-in device or OAuth client, and ending them.

A sign-in is what an access token's `sid` names and what its refresh tokens rotate under
(`models.signin.token_pairs`). The authentication middleware asks `is_live` on every request
with a user token, through a few-second cache that `revoke` drops its entry from. A sign-in
belongs to the account, so it lives in identity: closing an account, removing a member or
deleting an organization ends sign-ins here, and `models.signin` starts and rotates them.
Listing them (`/v1/users/{user_id}/sessions`) is `models.signin.sign_in_listing`'s.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import String, bindparam, func
from sqlalchemy import update as sa_update
from sqlmodel import Field, SQLModel, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, timestamp_field, utcnow
from models.records import activity
from tessera.core import db
from tessera.core.cache import TTLCache


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


@cache
def _touch_query():
    """Stamp `last_seen_at` of a live sign-in; its id when it is live, else no row."""
    table = SignIn.__table__
    return (
        sa_update(table)
        .where(
            table.c.id == bindparam("sign_in_id", type_=String),
            table.c.revoked_at.is_(None),
            table.c.expires_at > func.now(),
        )
        .values(last_seen_at=func.now())
        .returning(table.c.id)
    )


async def is_live(sign_in_id: str) -> bool:
    """Whether the sign-in is live (not revoked, not expired); touches `last_seen_at`."""

    async def touch() -> bool:
        return await db.fetch_one(_touch_query(), {"sign_in_id": sign_in_id}) is not None

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


async def revoke_in_organization(
    *, session: AsyncSession, org_id: str, reason: str, user_id: str | None = None
) -> None:
    """End every live sign-in to the organization (only `user_id`'s when given): a membership or
    the organization itself has gone."""
    stmt = select(SignIn.id).where(SignIn.org_id == org_id, SignIn.revoked_at.is_(None))
    if user_id is not None:
        stmt = stmt.where(SignIn.user_id == user_id)
    for sign_in_id in (await session.exec(stmt)).all():
        await revoke(session=session, sign_in_id=sign_in_id, reason=reason)


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
