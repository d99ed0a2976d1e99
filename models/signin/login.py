"""Sign-in state: sessions, their rotating refresh tokens, and login throttling."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import String, bindparam, exists, func, literal_column, or_, true
from sqlalchemy import delete as sa_delete
from sqlalchemy import insert as sa_insert
from sqlalchemy import text as sa_text
from sqlalchemy import update as sa_update
from sqlmodel import Field, SQLModel, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, rfc3339, timestamp_field, utcnow
from models.identity import organizations
from models.identity import roles as access
from models.identity.organizations import Organization
from models.identity.users import PUBLIC_COLUMNS, User
from models.records import activity, audit, events
from models.signin import lockout, password_step
from models.signin.lockout import LoginThrottle
from models.signin.mfa_factors import MfaFactor
from tessera.core import db, passwords, tokens
from tessera.core.cache import TTLCache
from tessera.core.caller import Principal
from tessera.core.errors import AuthenticationFailed, NotFound, PermissionDenied
from tessera.core.ids import new_id
from tessera.core.settings import get_settings

log = logging.getLogger("tessera.auth")

# Called here by other domains; they live in `models.signin.lockout` and `.password_step`.
Account = password_step.Account
check_password = password_step.matches
count_failure = lockout.count_failure_and_commit
locked_for = lockout.locked_for
clear_failures = lockout.clear_failures


class Session(SQLModel, table=True):
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
    # Set for sessions an OAuth client holds on the user's behalf, with the scope granted to it.
    client_id: str | None = Field(
        default=None, foreign_key="oauth_clients.id", index=True, ondelete="CASCADE"
    )
    scope: str | None = Field(default=None, max_length=2000)


class RefreshToken(SQLModel, table=True):
    """One link of a session's refresh chain; only its SHA-256 is stored."""

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
    session_id: str
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


class Access(NamedTuple):
    """What a member holds in an organization, as their access token states it."""

    roles: list[str]
    permissions: set[str]
    enrollment_due: bool  # none of them until they set up MFA where the organization requires it

    @classmethod
    def of(cls, held: list | None, department: str | None, mfa_due: bool | None) -> Access:
        if mfa_due:
            return cls([], set(), True)
        return cls(*access.effective_permissions(held or [], department), False)


def _access_columns(org_id, user_id) -> tuple:
    """Two columns stating what a member holds, for any statement that knows the organization
    and the user (bind parameters, or another statement's columns): their grants as JSON rows
    for `access.effective_permissions`, and whether MFA enrollment is still due."""
    held = (
        select(
            func.coalesce(
                func.json_agg(func.json_build_array(*access.GRANT_COLUMNS)),
                literal_column("'[]'::json"),
            )
        )
        .select_from(access.RoleGrant)
        .join(access.Role, access.Role.id == access.RoleGrant.role_id)
        .where(access.RoleGrant.org_id == org_id, access.RoleGrant.user_id == user_id)
    )
    factor = (
        exists()
        .where(MfaFactor.user_id == user_id, MfaFactor.confirmed_at.is_not(None))
        .correlate_except(MfaFactor)
    )
    due = select(Organization.require_mfa & ~factor).where(Organization.id == org_id)
    return held.scalar_subquery().label("held"), due.scalar_subquery().label("mfa_due")


@cache
def _access_query():
    return select(*_access_columns(bindparam("org_id", type_=String), bindparam("user_id")))


async def token_access(
    *, session: AsyncSession, user_id: str, department: str | None, org_id: str | None
) -> Access:
    """One round trip: grants, the organization's MFA rule and the user's factor together."""
    if org_id is None:
        return Access([], set(), False)
    params = {"org_id": org_id, "user_id": user_id}
    held, due = (await session.execute(_access_query(), params)).one()
    return Access.of(held, department, due)


async def org_access(
    *, session: AsyncSession, user: User, org_id: str
) -> tuple[list[str], set[str]]:
    """Roles and permissions a member holds in an organization: none until they set up MFA
    where the organization requires it (refresh and sign-in re-check)."""
    held = await token_access(
        session=session, user_id=user.id, department=user.department, org_id=org_id
    )
    return held.roles, held.permissions


def _sign(sess, held: Access, **issue) -> tuple[str, int]:
    """The access token of a session (a `Session`, or a row with its id, user_id, org_id,
    client_id and scope). `issue`: `issued_at` and `jti` for a token that must come out
    identical when re-issued."""
    claims = {
        "sub": sess.user_id,
        "org": sess.org_id,
        "roles": held.roles,
        "scope": " ".join(sorted(held.permissions)),
        "sid": sess.id,
    }
    if sess.client_id:  # held by an OAuth client: the granted scopes the user holds, no roles
        granted = {p for p in (sess.scope or "").split() if access.grants(held.permissions, p)}
        claims |= {"roles": [], "scope": " ".join(sorted(granted)), "client_id": sess.client_id}
    return tokens.issue_access_token(claims, **issue)


async def _access_token(
    *, session: AsyncSession, user: User, sess: Session
) -> tuple[str, int, Access]:
    held = await token_access(
        session=session, user_id=user.id, department=user.department, org_id=sess.org_id
    )
    token, ttl = _sign(sess, held)
    return token, ttl, held


def _store_refresh(session: AsyncSession, sess: Session, plain: str) -> None:
    session.add(
        RefreshToken(
            session_id=sess.id, token_hash=tokens.digest(plain), expires_at=sess.expires_at
        )
    )


def _refresh_token_cte(name: str, session_id, created_at, expires_at):
    """A CTE `name` storing a refresh token of `session_id` (a column of another CTE), its id
    and hash from the parameters `<name>_id` and `<name>_hash`."""
    rt = RefreshToken.__table__
    row = select(
        bindparam(f"{name}_id", type_=String),
        session_id,
        bindparam(f"{name}_hash", type_=String),
        created_at,
        expires_at,
    )
    columns = ["id", "session_id", "token_hash", "created_at", "expires_at"]
    return sa_insert(rt).from_select(columns, row).returning(rt.c.id).cte(name)


class _NewSession(NamedTuple):
    """A first-party session as `_sign` reads it."""

    id: str
    user_id: str
    org_id: str | None
    client_id: None = None
    scope: None = None


@cache
def _sign_in_query(clear_failures: bool):
    """A sign-in in one statement, committed on its own: stamp the user while still active in
    the organization read before (storing a rehashed password when one is given), clear the
    failures on record for (email, IP) when `clear_failures`, store the session and its first
    refresh token, append the audit entry and the event (`activity.entry_and_event`'s), and
    read the user as the API shows them with what the access token states. No row: the user
    is no longer active there, and nothing was written."""
    usr, ses, org = User.__table__, Session.__table__, Organization.__table__
    organization_row = (
        select(org.c.id).where(org.c.id == usr.c.org_id).with_for_update(read=True, key_share=True)
    )
    now = bindparam("now", type_=ses.c.created_at.type)
    expires_at = bindparam("expires_at", type_=ses.c.expires_at.type)
    signed = (
        sa_update(usr)
        .where(
            usr.c.id == bindparam("user_id", type_=String),
            usr.c.status == "active",
            # The audit entry's chain is this organization's.
            usr.c.org_id.is_not_distinct_from(bindparam("org_id", type_=String)),
            # Its row, which the session's foreign key names, locked before the chain is
            # (`audit.append_with_change` says why).
            or_(usr.c.org_id.is_(None), organization_row.exists()),
        )
        .values(
            last_login_at=now,
            password_hash=func.coalesce(
                bindparam("password_hash", type_=String), usr.c.password_hash
            ),
        )
        .returning(*(usr.c[column.key] for column in PUBLIC_COLUMNS))
        .cte("signed")
    )
    started = (
        sa_insert(ses)
        .from_select(
            [
                *("id", "user_id", "org_id", "ip", "user_agent"),
                *("created_at", "last_seen_at", "expires_at"),
            ],
            select(
                bindparam("session_id", type_=String),
                signed.c.id,
                signed.c.org_id,
                bindparam("ip", type_=String),
                bindparam("user_agent", type_=String),
                now,
                now,
                expires_at,
            ),
        )
        .returning(ses.c.id)
        .cte("started")
    )
    first_token = _refresh_token_cte("first_token", started.c.id, now, expires_at)
    ctes = [started, first_token]
    if clear_failures:
        throttles = LoginThrottle.__table__
        ctes.append(
            sa_delete(throttles)
            .where(
                throttles.c.email == select(signed.c.email).scalar_subquery(),
                throttles.c.ip == bindparam("ip", type_=String),
            )
            .returning(throttles.c.email)
            .cte("cleared")
        )
    ctes.append(events.insert_after(signed).cte("logged"))
    access_columns = _access_columns(signed.c.org_id, signed.c.id)
    appended = audit.appended_after(signed)
    return select(signed, *access_columns).select_from(signed.join(appended, true())).add_cte(*ctes)


async def revoke_session(*, session: AsyncSession, session_id: str, reason: str) -> bool:
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


@cache
def _rotate_query():
    """Rotation in one statement (it commits on its own): spend the token while it is unused,
    unexpired, its session live and held by the same channel and its user active; touch the
    session; store the successor; and read what the new access token states. No row: the token
    is unknown, dead, or already spent (`_refresh_spent` tells which)."""
    rt, ses, usr = RefreshToken.__table__, Session.__table__, User.__table__
    signed = (ses.c.id, ses.c.user_id, ses.c.org_id, ses.c.client_id, ses.c.scope)  # for _sign
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
    successor = _refresh_token_cte("successor", link.c.id, func.now(), link.c.expires_at)
    return select(link, *_access_columns(link.c.org_id, link.c.user_id)).add_cte(touched, successor)


async def refresh(
    *, refresh_token: str, ip: str | None, user_agent: str | None, client_id: str | None = None
) -> TokenPair | None:
    """Rotate a refresh token. Returns None for unknown, expired or reused tokens; reuse (a spent
    token outside the overlap window) also revokes the whole session. A token rotates only
    through the channel that issued it: `client_id` must be the OAuth client holding the session
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


def _rotated(sess, successor: str, held: Access, used_at: datetime) -> TokenPair:
    # The access token is pinned to the rotation (its time and a jti derived from the successor),
    # so a retry within the window gets the very same pair, not just the same refresh token.
    access_token, ttl = _sign(
        sess,
        held,
        issued_at=int(used_at.timestamp()),
        jti="jti_" + tokens.digest(successor)[:32],
    )
    return TokenPair(access_token, successor, ttl, sess.id, held.roles, held.enrollment_due)


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
    successor is unused; otherwise it is reuse, and the session ends."""
    async with db.transaction() as session:
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
        now = utcnow()
        if sess.client_id != client_id or sess.revoked_at is not None:
            return None
        if link.expires_at <= now or link.used_at is None:
            return None  # expired, or unspent yet refused by the rotation (user not active)
        user = await session.get(User, sess.user_id)
        if user is None or user.status != "active":
            return None
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
        is_previous = newest is not None and newest.token_hash == tokens.digest(successor)
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
        held = await token_access(
            session=session, user_id=user.id, department=user.department, org_id=sess.org_id
        )
    return _rotated(sess, successor, held, link.used_at)


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
    from models.identity import users

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


async def login(
    *,
    email: str,
    password: str,
    ip: str,
    user_agent: str | None,
    mfa_code: str | None = None,
    recovery_code: str | None = None,
) -> tuple[TokenPair, Any]:
    """Password first (with the lockout), then the second factor when the user has one
    (`models.signin.mfa.second_factor`: 401 MFA_REQUIRED with a challenge when no code was sent).
    A password sign-in without a second factor is two statements: one read before the
    password check, one write after it (`finish_login`)."""
    from models.signin import mfa

    passed = await password_step.check(email=email, password=password, ip=ip)
    user = passed.account
    method = await mfa.second_factor(
        user=user, ip=ip, code=mfa_code, recovery_code=recovery_code, enrolled=passed.enrolled
    )
    # Stored with the old parameters: rehash now, outside the transaction (argon2 is slow).
    rehashed = None
    if passwords.needs_rehash(user.password_hash or ""):
        rehashed = await passwords.hash_password(password)
    return await finish_login(
        user_id=user.id,
        org_id=user.org_id,
        ip=ip,
        user_agent=user_agent,
        password_hash=rehashed,
        mfa_method=method,
        throttled=passed.throttled,
    )


async def finish_login(
    *,
    user_id: str,
    org_id: str | None,
    ip: str,
    user_agent: str | None,
    password_hash: str | None = None,
    mfa_method: str | None = None,
    throttled: bool = True,
) -> tuple[TokenPair, Any]:
    """Every factor checked out: clear the failures (when `throttled`: some are on record),
    store a rehashed `password_hash`, start the session, record the sign-in in the audit log
    of `org_id` (the user's organization as read before). Returns the tokens and the user as a
    row of `users.PUBLIC_COLUMNS`. One statement, committed on its own: the organization's
    audit chain stays locked only while it runs."""
    now = utcnow()
    refresh_token = tokens.opaque("rt")
    session_id = new_id("ses")
    data = {"session_id": session_id}
    if mfa_method is not None:
        data["mfa"] = mfa_method
    entry, (_, event_params) = activity.entry_and_event(
        action="user.login",
        org_id=org_id,
        resource_type="user",
        resource_id=user_id,
        data=data,
        actor_user_id=user_id,
    )
    params = {
        "user_id": user_id,
        "org_id": org_id,
        "password_hash": password_hash,
        "now": now,
        "expires_at": now + timedelta(seconds=get_settings().refresh_token_ttl_s),
        "session_id": session_id,
        "ip": ip,
        "user_agent": user_agent,
        "first_token_id": new_id("rft"),
        "first_token_hash": tokens.digest(refresh_token),
        **event_params,
        **audit.append_params(entry, prefix="audit_"),
    }
    user = await db.fetch_one(_sign_in_query(throttled), params)
    if user is None:
        raise AuthenticationFailed("Invalid email or password.")
    held = Access.of(user.held, user.department, user.mfa_due)
    access_token, ttl = _sign(_NewSession(session_id, user.id, user.org_id), held)
    pair = TokenPair(access_token, refresh_token, ttl, session_id, held.roles, held.enrollment_due)
    return pair, user


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
    access_token, ttl, _held = await _access_token(session=session, user=user, sess=sess)
    return access_token, ttl, plain


# Live sessions by id, for a few seconds: revoke_session drops the entry.
sessions_cache = TTLCache()
_TOUCH_SESSION = sa_text(
    "UPDATE sessions SET last_seen_at = now() "
    "WHERE id = :sid AND revoked_at IS NULL AND expires_at > now() RETURNING id"
)


async def session_active(session_id: str) -> bool:
    """Whether the sign-in session is live (not revoked, not expired); touches `last_seen_at`."""

    async def touch() -> bool:
        return await db.fetch_one(_TOUCH_SESSION, {"sid": session_id}) is not None

    return bool(await sessions_cache.fetch(session_id, touch))


async def acting_in(caller: Principal, org_id: str) -> Principal:
    """A person's access token acts in one organization (its `org`). On the operations of
    another organization they belong to (`/v1/organizations/{org_id}/…`) they act there, with
    the roles they hold in it, read now. Anyone else keeps their principal and the operation
    answers 404 for the foreign id, as for any other tenant's resource."""
    if caller.kind != "user" or caller.client_id is not None or org_id == caller.org_id:
        return caller
    async with db.reader() as session:
        user = await session.get(User, caller.user_id)
        if user is None or not await organizations.is_member(
            session=session, org_id=org_id, user_id=user.id
        ):
            return caller
        roles, permissions = await org_access(session=session, user=user, org_id=org_id)
    return replace(caller, org_id=org_id, roles=tuple(roles), permissions=frozenset(permissions))
