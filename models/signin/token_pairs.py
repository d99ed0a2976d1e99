"""Token pairs: an access token and the refresh token it rotates with, under one sign-in.

    sign-in ──> pair 1 ──refresh──> pair 2 ──refresh──> …      (each refresh token works once)
                  └── pair 1's refresh token again: within the overlap window while pair 2's is
                      unused, pair 2 once more (a retry); otherwise reuse, and the sign-in ends

Only a refresh token's SHA-256 is stored (`RefreshToken`, one link of the chain). A refresh
token rotates only through the channel that issued it: first-party sign-ins, or the OAuth
client holding the sign-in (`start_oauth_sign_in`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import String, bindparam, func
from sqlalchemy import insert as sa_insert
from sqlalchemy import update as sa_update
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, timestamp_field, utcnow
from models.identity import sign_ins
from models.identity.sign_ins import SignIn
from models.identity.users import User
from models.records import activity
from models.signin.access_tokens import Access, access_columns, access_token, sign, token_access
from tessera.core import db, tokens
from tessera.core.ids import new_id
from tessera.core.settings import get_settings

log = logging.getLogger("tessera.auth")


class RefreshToken(SQLModel, table=True):
    """One link of a sign-in's refresh chain; only its SHA-256 is stored."""

    __tablename__ = "refresh_tokens"

    id: str = id_field("rft")
    session_id: str = Field(foreign_key="sessions.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    expires_at: datetime = timestamp_field()
    used_at: datetime | None = timestamp_field(default=None)


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    sign_in_id: str
    roles: list[str]
    # The organization requires MFA and the user has none yet (the token carries no permissions).
    mfa_enrollment_required: bool = False

    def as_dict(self) -> dict:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


def _store_refresh(session: AsyncSession, sign_in: SignIn, plain: str) -> None:
    session.add(
        RefreshToken(
            session_id=sign_in.id, token_hash=tokens.digest(plain), expires_at=sign_in.expires_at
        )
    )


def refresh_token_cte(name: str, sign_in_id, created_at, expires_at):
    """A CTE `name` storing a refresh token of `sign_in_id` (a column of another CTE), its id
    and hash from the parameters `<name>_id` and `<name>_hash`."""
    rt = RefreshToken.__table__
    row = select(
        bindparam(f"{name}_id", type_=String),
        sign_in_id,
        bindparam(f"{name}_hash", type_=String),
        created_at,
        expires_at,
    )
    columns = ["id", "session_id", "token_hash", "created_at", "expires_at"]
    return sa_insert(rt).from_select(columns, row).returning(rt.c.id).cte(name)


@cache
def _rotate_query():
    """Rotation in one statement (it commits on its own): spend the token while it is unused,
    unexpired, its sign-in live and held by the same channel and its user active; touch the
    sign-in; store the successor; and read what the new access token states. No row: the token
    is unknown, dead, or already spent (`_refresh_spent` tells which)."""
    rt, ses, usr = RefreshToken.__table__, SignIn.__table__, User.__table__
    signed = (ses.c.id, ses.c.user_id, ses.c.org_id, ses.c.client_id, ses.c.scope)  # for sign
    link = (
        sa_update(rt)
        .where(
            rt.c.token_hash == bindparam("spent_hash"),
            rt.c.used_at.is_(None),
            rt.c.expires_at > func.now(),
            ses.c.id == rt.c.session_id,
            ses.c.revoked_at.is_(None),
            ses.c.client_id.is_not_distinct_from(bindparam("channel", type_=String)),
            usr.c.id == ses.c.user_id,
            usr.c.status == "active",
        )
        .values(used_at=func.now())
        .returning(*signed, rt.c.used_at, rt.c.expires_at, usr.c.department)
        .cte("link")
    )
    touched = (
        sa_update(ses)
        .where(ses.c.id == link.c.id)
        .values(
            last_seen_at=func.now(),
            ip=func.coalesce(bindparam("client_ip", type_=String), ses.c.ip),
            user_agent=func.coalesce(bindparam("client_agent", type_=String), ses.c.user_agent),
        )
        .returning(ses.c.id)
        .cte("touched")
    )
    successor = refresh_token_cte("successor", link.c.id, func.now(), link.c.expires_at)
    return select(link, *access_columns(link.c.org_id, link.c.user_id)).add_cte(touched, successor)


async def rotate_and_commit(
    *, refresh_token: str, ip: str | None, user_agent: str | None, client_id: str | None = None
) -> TokenPair | None:
    """Rotate a refresh token. Returns None for unknown, expired or reused tokens; reuse (a spent
    token outside the overlap window) also ends the whole sign-in. A token rotates only
    through the channel that issued it: `client_id` must be the OAuth client holding the sign-in
    (None for first-party sign-ins). An unspent token, the usual case, costs one round trip."""
    successor = tokens.derive("rt", refresh_token, "refresh-successor")
    params = {
        "spent_hash": tokens.digest(refresh_token),
        "channel": client_id,
        "client_ip": ip,
        "client_agent": user_agent,
        "successor_id": new_id("rft"),
        "successor_hash": tokens.digest(successor),
    }
    row = await db.fetch_one(_rotate_query(), params)
    if row is None:
        return await _refresh_spent(
            refresh_token=refresh_token,
            successor=successor,
            ip=ip,
            user_agent=user_agent,
            client_id=client_id,
        )
    return _rotated(row, successor, Access.of(row.held, row.department, row.mfa_due), row.used_at)


def _rotated(sign_in, successor: str, held: Access, used_at: datetime) -> TokenPair:
    # The access token is pinned to the rotation (its time and a jti derived from the successor),
    # so a retry within the window gets the very same pair, not just the same refresh token.
    token, ttl = sign(
        sign_in,
        held,
        issued_at=int(used_at.timestamp()),
        jti="jti_" + tokens.digest(successor)[:32],
    )
    return TokenPair(token, successor, ttl, sign_in.id, held.roles, held.enrollment_due)


async def _refresh_spent(
    *,
    refresh_token: str,
    successor: str,
    ip: str | None,
    user_agent: str | None,
    client_id: str | None,
) -> TokenPair | None:
    """A token the rotation did not take: unknown, dead, or spent. A spent one is answered again
    only while it is the immediately previous token, within the overlap window, and its
    successor is unused; otherwise it is reuse, and the sign-in ends."""
    async with db.transaction() as session:
        stmt = (
            select(RefreshToken, SignIn)
            .join(SignIn, SignIn.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == tokens.digest(refresh_token))
            .with_for_update(of=RefreshToken)
        )
        row = (await session.exec(stmt)).first()
        if row is None:
            return None
        link, sign_in = row
        now = utcnow()
        if sign_in.client_id != client_id or sign_in.revoked_at is not None:
            return None
        if link.expires_at <= now or link.used_at is None:
            return None  # expired, or unspent yet refused by the rotation (user not active)
        user = await session.get(User, sign_in.user_id)
        if user is None or user.status != "active":
            return None
        overlap = timedelta(seconds=get_settings().refresh_overlap_s)
        newest = (
            await session.exec(
                select(RefreshToken)
                .where(RefreshToken.session_id == sign_in.id)
                .order_by(RefreshToken.created_at.desc(), RefreshToken.id.desc())
                .limit(1)
            )
        ).first()
        # Only the immediately previous token, within the window, while its successor is unused.
        is_previous = newest is not None and newest.token_hash == tokens.digest(successor)
        if not (is_previous and newest.used_at is None and now - link.used_at <= overlap):
            await sign_ins.revoke(
                session=session, sign_in_id=sign_in.id, reason="refresh_token_reuse"
            )
            await activity.record(
                session=session,
                action="auth.refresh_token_reused",
                org_id=sign_in.org_id,
                resource_type="session",
                resource_id=sign_in.id,
                actor_user_id=sign_in.user_id,
            )
            log.warning("refresh token reuse: session revoked", extra={"session_id": sign_in.id})
            return None
        sign_in.last_seen_at = now
        sign_in.ip, sign_in.user_agent = ip or sign_in.ip, user_agent or sign_in.user_agent
        held = await token_access(
            session=session, user_id=user.id, department=user.department, org_id=sign_in.org_id
        )
    return _rotated(sign_in, successor, held, link.used_at)


async def start_oauth_sign_in(
    *,
    session: AsyncSession,
    sign_in_id: str,
    user: User,
    org_id: str,
    client_id: str,
    scope: str,
    refresh: bool,
    lifetime_s: int,
    ip: str | None,
    user_agent: str | None,
) -> tuple[str, int, str | None]:
    """A sign-in an OAuth client holds on the user's behalf (authorization-code grant). Its
    access tokens carry the granted `scope` the user holds and a `client_id` claim; with
    `refresh`, its first refresh token, which rotates through `refresh(client_id=...)`.
    Returns (access token, its lifetime, refresh token or None)."""
    sign_in = SignIn(
        id=sign_in_id,
        user_id=user.id,
        org_id=org_id,
        client_id=client_id,
        scope=scope,
        ip=ip,
        user_agent=user_agent,
        expires_at=utcnow() + timedelta(seconds=lifetime_s),
    )
    session.add(sign_in)
    await session.flush()
    plain = tokens.opaque("rt") if refresh else None
    if plain is not None:
        _store_refresh(session, sign_in, plain)
    token, ttl, _held = await access_token(session=session, user=user, sign_in=sign_in)
    return token, ttl, plain
