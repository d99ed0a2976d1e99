"""Sign-in state: sessions, their rotating refresh tokens, and login throttling."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Field, SQLModel, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models import access
from models.base import rfc3339, timestamp_field, utcnow
from models.users import User
from tessera import activity, db, passwords, tokens
from tessera.errors import AccountLocked, AuthenticationFailed, NotFound, PermissionDenied
from tessera.ids import new_id
from tessera.settings import get_settings

log = logging.getLogger("tessera.auth")


class Session(SQLModel, table=True):
    __tablename__ = "sessions"

    id: str = Field(default_factory=lambda: new_id("ses"), primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    org_id: str | None = Field(default=None, foreign_key="organizations.id", ondelete="CASCADE")
    user_agent: str | None = Field(default=None, max_length=500)
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    last_seen_at: datetime = timestamp_field(default_factory=utcnow)
    expires_at: datetime = timestamp_field()
    revoked_at: datetime | None = timestamp_field(default=None)
    revoked_reason: str | None = Field(default=None, max_length=50)
    # Set for sessions an OAuth client holds on the user's behalf, with the scope granted to it.
    client_id: str | None = Field(
        default=None, foreign_key="oauth_clients.id", index=True, ondelete="CASCADE"
    )
    scope: str | None = Field(default=None, max_length=2000)


class RefreshToken(SQLModel, table=True):
    """One link of a session's refresh chain; only its SHA-256 is stored."""

    __tablename__ = "refresh_tokens"

    id: str = Field(default_factory=lambda: new_id("rft"), primary_key=True)
    session_id: str = Field(foreign_key="sessions.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    expires_at: datetime = timestamp_field()
    used_at: datetime | None = timestamp_field(default=None)


class LoginThrottle(SQLModel, table=True):
    """Consecutive failed logins per (email, source IP): one attacker cannot lock a victim out
    from everywhere, and unknown emails lock exactly like known ones."""

    __tablename__ = "login_throttles"

    email: str = Field(primary_key=True, max_length=320)
    ip: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    locked_until: datetime | None = timestamp_field(default=None)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    roles: list[str]

    def as_dict(self) -> dict:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


async def _access_token(
    *, session: AsyncSession, user: User, sess: Session, **issue
) -> tuple[str, int, list[str]]:
    """`issue`: `issued_at` and `jti` for a token that must come out identical when re-issued."""
    roles: list[str] = []
    permissions: set[str] = set()
    if sess.org_id:
        roles, permissions = await org_access(session=session, user=user, org_id=sess.org_id)
    claims = {
        "sub": user.id,
        "org": sess.org_id,
        "roles": roles,
        "scope": " ".join(sorted(permissions)),
        "sid": sess.id,
    }
    if sess.client_id:  # held by an OAuth client: the granted scopes the user holds, no roles
        granted = {p for p in (sess.scope or "").split() if access.grants(permissions, p)}
        claims |= {"roles": [], "scope": " ".join(sorted(granted)), "client_id": sess.client_id}
    token, ttl = tokens.issue_access_token(claims, **issue)
    return token, ttl, roles


async def org_access(
    *, session: AsyncSession, user: User, org_id: str
) -> tuple[list[str], set[str]]:
    """Roles and permissions a member holds in an organization: none until they set up MFA
    where the organization requires it (refresh and sign-in re-check)."""
    from models import mfa

    roles, permissions = await access.member_access(
        session=session, org_id=org_id, user_id=user.id, department=user.department
    )
    if await mfa.enrollment_required(session=session, user_id=user.id, org_id=org_id):
        return [], set()
    return roles, permissions


def _store_refresh(session: AsyncSession, sess: Session, plain: str) -> None:
    session.add(
        RefreshToken(
            session_id=sess.id, token_hash=tokens.digest(plain), expires_at=sess.expires_at
        )
    )


async def start_session(
    *, session: AsyncSession, user: User, ip: str | None, user_agent: str | None
) -> TokenPair:
    """A new sign-in: session row, first refresh token, access token."""
    settings = get_settings()
    sess = Session(
        user_id=user.id,
        org_id=user.org_id,
        ip=ip,
        user_agent=user_agent,
        expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_s),
    )
    session.add(sess)
    await session.flush()
    refresh = tokens.opaque("rt")
    _store_refresh(session, sess, refresh)
    access_token, ttl, roles = await _access_token(session=session, user=user, sess=sess)
    return TokenPair(access_token, refresh, ttl, sess.id, roles)


async def revoke_session(*, session: AsyncSession, session_id: str, reason: str) -> bool:
    from tessera.auth import sessions_cache

    result = await session.exec(
        update(Session)
        .where(Session.id == session_id, Session.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    sessions_cache.drop(session_id)
    return result.rowcount > 0


async def revoke_user_sessions(
    *, session: AsyncSession, user_id: str, reason: str, keep: str | None = None
) -> int:
    stmt = select(Session.id).where(Session.user_id == user_id, Session.revoked_at.is_(None))
    ids = [sid for sid in (await session.exec(stmt)).all() if sid != keep]
    for sid in ids:
        await revoke_session(session=session, session_id=sid, reason=reason)
    return len(ids)


async def refresh(
    *,
    session: AsyncSession,
    refresh_token: str,
    ip: str | None,
    user_agent: str | None,
    client_id: str | None = None,
) -> TokenPair | None:
    """Rotate a refresh token. Returns None for unknown, expired or reused tokens; reuse (a spent
    token outside the overlap window) also revokes the whole session. A token rotates only
    through the channel that issued it: `client_id` must be the OAuth client holding the session
    (None for first-party sign-ins)."""
    stmt = (
        select(RefreshToken, Session)
        .join(Session, Session.id == RefreshToken.session_id)
        .where(RefreshToken.token_hash == tokens.digest(refresh_token))
        .with_for_update(of=RefreshToken)
    )
    row = (await session.exec(stmt)).first()
    if row is None:
        return None
    link, sess = row
    if sess.client_id != client_id:
        return None
    now = utcnow()
    if sess.revoked_at is not None or link.expires_at <= now:
        return None
    user = await session.get(User, sess.user_id)
    if user is None or user.status != "active":
        return None
    successor = tokens.derive("rt", refresh_token, "refresh-successor")
    successor_hash = tokens.digest(successor)
    if link.used_at is None:
        link.used_at = now
        _store_refresh(session, sess, successor)
    else:
        overlap = timedelta(seconds=get_settings().refresh_overlap_s)
        newest = (
            await session.exec(
                select(RefreshToken)
                .where(RefreshToken.session_id == sess.id)
                .order_by(RefreshToken.created_at.desc(), RefreshToken.id.desc())
                .limit(1)
            )
        ).first()
        # Only the immediately previous token, within the window, while its successor is unused.
        is_previous = newest is not None and newest.token_hash == successor_hash
        if not (is_previous and newest.used_at is None and now - link.used_at <= overlap):
            await revoke_session(session=session, session_id=sess.id, reason="refresh_token_reuse")
            await activity.record(
                session=session,
                action="auth.refresh_token_reused",
                org_id=sess.org_id,
                resource_type="session",
                resource_id=sess.id,
                actor_user_id=sess.user_id,
            )
            log.warning("refresh token reuse: session revoked", extra={"session_id": sess.id})
            return None
    sess.last_seen_at = now
    sess.ip, sess.user_agent = ip or sess.ip, user_agent or sess.user_agent
    # The access token is pinned to the rotation (its time and a jti derived from the successor),
    # so a retry within the window gets the very same pair, not just the same refresh token.
    access_token, ttl, roles = await _access_token(
        session=session,
        user=user,
        sess=sess,
        issued_at=int(link.used_at.timestamp()),
        jti="jti_" + tokens.digest(successor)[:32],
    )
    return TokenPair(access_token, successor, ttl, sess.id, roles)


async def sessions_scope(
    *, session: AsyncSession, user_id: str, caller_id: str | None, caller_org_id: str | None
) -> str | None:
    """Which of `user_id`'s sessions the caller may reach: every one of their own (None: no
    organization filter); another member's only those signed in to the caller's organization.
    A user outside it is 404, like one that does not exist. (The permission another member's
    sessions need is the operation's `x-permission`, checked by `tessera.auth`.)"""
    if caller_id is not None and user_id == caller_id:
        return None
    if caller_org_id is None:
        raise PermissionDenied("Join or create an organization first.")
    from models import users

    await users.get_member(session=session, org_id=caller_org_id, user_id=user_id)
    return caller_org_id


def user_sessions_query(*, user_id: str, org_id: str | None):
    """Active sessions of a user; with `org_id`, only those signed in to that organization."""
    stmt = active_sessions_query(user_id=user_id)
    return stmt if org_id is None else stmt.where(Session.org_id == org_id)


async def revoke_one(
    *, session: AsyncSession, user_id: str, session_id: str, org_id: str | None, reason: str
) -> None:
    """End one active session of the user (within `org_id` when given); otherwise 404."""
    stmt = user_sessions_query(user_id=user_id, org_id=org_id).where(Session.id == session_id)
    if (await session.exec(stmt)).first() is None:
        raise NotFound("No active session with this id.")
    await revoke_session(session=session, session_id=session_id, reason=reason)
    await activity.record(
        session=session,
        action="session.revoked",
        org_id=org_id,
        resource_type="session",
        resource_id=session_id,
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
    """End the user's active sessions (within `org_id` when given), except `keep`."""
    found = (await session.exec(user_sessions_query(user_id=user_id, org_id=org_id))).all()
    ids = [sess.id for sess in found if sess.id != keep]
    for sid in ids:
        await revoke_session(session=session, session_id=sid, reason=reason)
    await activity.record(
        session=session,
        action="user.sessions_revoked",
        org_id=org_id,
        resource_type="user",
        resource_id=user_id,
        data={"count": len(ids), "reason": reason},
    )
    return len(ids)


# --- login throttling ------------------------------------------------------------------------


async def locked_for(*, session: AsyncSession, email: str, ip: str) -> int:
    """Seconds this (email, IP) pair stays locked; 0 when it may try."""
    row = await session.get(LoginThrottle, (email, ip))
    if row is None or row.locked_until is None:
        return 0
    remaining = (row.locked_until - utcnow()).total_seconds()
    return max(0, math.ceil(remaining))


async def record_failure(*, session: AsyncSession, email: str, ip: str) -> int:
    """Count a failed attempt; returns the lock duration in seconds when this failure locks."""
    settings = get_settings()
    row = await session.get(LoginThrottle, (email, ip), with_for_update=True)
    if row is None:
        row = LoginThrottle(email=email, ip=ip)
        session.add(row)
    if row.locked_until is not None and row.locked_until <= utcnow():
        row.failures, row.locked_until = 0, None
    row.failures += 1
    row.updated_at = utcnow()
    if row.failures >= settings.lockout_threshold:
        row.failures = 0
        row.locked_until = utcnow() + timedelta(seconds=settings.lockout_seconds)
        return settings.lockout_seconds
    return 0


async def clear_failures(*, session: AsyncSession, email: str, ip: str | None = None) -> int:
    stmt = delete(LoginThrottle).where(LoginThrottle.email == email)
    if ip is not None:
        stmt = stmt.where(LoginThrottle.ip == ip)
    return (await session.exec(stmt)).rowcount


# --- sign-in flows (each opens its own units of work: a failed attempt must be recorded even
# though the request then fails) ------------------------------------------------------------


async def login(
    *,
    email: str,
    password: str,
    ip: str,
    user_agent: str | None,
    mfa_code: str | None = None,
    recovery_code: str | None = None,
) -> tuple[TokenPair, User]:
    """Password first (with the lockout), then the second factor when the user has one
    (`models.mfa.second_factor`: 401 MFA_REQUIRED with a challenge when no code was sent)."""
    from models import mfa, users

    email = users.normalize_email(email)
    async with db.transaction() as session:
        wait = await locked_for(session=session, email=email, ip=ip)
    if wait:
        raise _locked(wait)
    async with db.transaction() as session:
        user = await users.get_by_email(session=session, email=email)
    if user is not None and user.password_hash and user.status != "deleted":
        ok = await passwords.verify_password(user.password_hash, password)
    else:
        await passwords.verify_dummy(password)  # same cost whether or not the account exists
        ok = False
    if not ok:
        known = user if user is not None and user.status != "deleted" else None
        async with db.transaction() as session:
            locked = await record_failure(session=session, email=email, ip=ip)
            if known is not None:
                await activity.record(
                    session=session,
                    action="user.locked" if locked else "auth.login_failed",
                    org_id=known.org_id,
                    resource_type="user",
                    resource_id=known.id,
                    data={"ip": ip, "locked_seconds": locked} if locked else {"ip": ip},
                    actor_user_id=known.id,
                )
        log.info("login failed", extra={"email_hash": tokens.digest(email)[:16], "ip": ip})
        if locked:
            raise _locked(locked)
        raise AuthenticationFailed("Invalid email or password.")
    assert user is not None
    if user.status != "active":
        raise PermissionDenied(f"This account is {user.status}.")
    if get_settings().require_email_verification and not user.email_verified:
        raise PermissionDenied("Verify your email address before signing in.")
    method = await mfa.second_factor(user=user, ip=ip, code=mfa_code, recovery_code=recovery_code)
    return await finish_login(
        user_id=user.id, ip=ip, user_agent=user_agent, password=password, mfa_method=method
    )


async def finish_login(
    *,
    user_id: str,
    ip: str,
    user_agent: str | None,
    password: str | None = None,
    mfa_method: str | None = None,
) -> tuple[TokenPair, User]:
    """Every factor checked out: clear the failures, start the session, record the sign-in."""
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        if user is None or user.status != "active":
            raise AuthenticationFailed("Invalid email or password.")
        await clear_failures(session=session, email=user.email, ip=ip)
        if password is not None and passwords.needs_rehash(user.password_hash or ""):
            user.password_hash = await passwords.hash_password(password)
        user.last_login_at = utcnow()
        pair = await start_session(session=session, user=user, ip=ip, user_agent=user_agent)
        data = {"session_id": pair.session_id}
        if mfa_method is not None:
            data["mfa"] = mfa_method
        await activity.record(
            session=session,
            action="user.login",
            org_id=user.org_id,
            resource_type="user",
            resource_id=user.id,
            data=data,
            actor_user_id=user.id,
        )
    return pair, user


def _locked(seconds: int) -> AccountLocked:
    return AccountLocked(
        "Too many failed sign-in attempts; try again later.",
        headers={"Retry-After": str(seconds)},
    )


def active_sessions_query(*, user_id: str):
    return select(Session).where(
        Session.user_id == user_id, Session.revoked_at.is_(None), Session.expires_at > utcnow()
    )


def public_session(sess: Session, *, current: str | None) -> dict:
    return {
        "id": sess.id,
        "user_id": sess.user_id,
        "user_agent": sess.user_agent,
        "ip": sess.ip,
        "created_at": rfc3339(sess.created_at),
        "last_seen_at": rfc3339(sess.last_seen_at),
        "expires_at": rfc3339(sess.expires_at),
        "current": sess.id == current,
    }


async def start_oauth_session(
    *,
    session: AsyncSession,
    session_id: str,
    user: User,
    org_id: str,
    client_id: str,
    scope: str,
    refresh: bool,
    lifetime_s: int,
    ip: str | None,
    user_agent: str | None,
) -> tuple[str, int, str | None]:
    """A session an OAuth client holds on the user's behalf (authorization-code grant). Its
    access tokens carry the granted `scope` the user holds and a `client_id` claim; with
    `refresh`, its first refresh token, which rotates through `refresh(client_id=...)`.
    Returns (access token, its lifetime, refresh token or None)."""
    sess = Session(
        id=session_id,
        user_id=user.id,
        org_id=org_id,
        client_id=client_id,
        scope=scope,
        ip=ip,
        user_agent=user_agent,
        expires_at=utcnow() + timedelta(seconds=lifetime_s),
    )
    session.add(sess)
    await session.flush()
    plain = tokens.opaque("rt") if refresh else None
    if plain is not None:
        _store_refresh(session, sess, plain)
    access_token, ttl, _roles = await _access_token(session=session, user=user, sess=sess)
    return access_token, ttl, plain
