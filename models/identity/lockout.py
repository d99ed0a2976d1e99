"""The sign-in lockout: consecutive failures per (email, source IP).

Every step that checks a secret of a person signing in (the password, a second-factor code)
counts its failures here, and a pair that reaches `lockout_threshold` failures is locked for
`lockout_seconds`. Keyed by the pair, so one attacker cannot lock a victim out from everywhere,
and unknown emails lock exactly like known ones.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Field, SQLModel, delete
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import timestamp_field, utcnow
from models.records import activity
from tessera.core import db
from tessera.core.errors import AccountLocked
from tessera.core.settings import get_settings


class LoginThrottle(SQLModel, table=True):
    """Consecutive failed sign-in attempts of one (email, source IP) pair."""

    __tablename__ = "login_throttles"

    email: str = Field(primary_key=True, max_length=320)
    ip: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    locked_until: datetime | None = timestamp_field(default=None)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


class Person(Protocol):
    """What the lockout reads of a known account (a `User`, or a sign-in's `Account`)."""

    id: str
    org_id: str | None


def locked(seconds: int, message: str) -> AccountLocked:
    """The 423 of a locked pair, with its `Retry-After`."""
    return AccountLocked(message, headers={"Retry-After": str(seconds)})


def seconds_left(locked_until: datetime | None) -> int:
    """Seconds until `locked_until`; 0 when it is past or unset."""
    if locked_until is None:
        return 0
    return max(0, math.ceil((locked_until - utcnow()).total_seconds()))


async def locked_for(*, session: AsyncSession, email: str, ip: str) -> int:
    """Seconds this (email, IP) pair stays locked; 0 when it may try."""
    row = await session.get(LoginThrottle, (email, ip))
    return seconds_left(row.locked_until if row is not None else None)


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
    """Forget the failures on record for `email` (from `ip` only, when given), lifting a lock;
    returns how many pairs were cleared."""
    stmt = delete(LoginThrottle).where(LoginThrottle.email == email)
    if ip is not None:
        stmt = stmt.where(LoginThrottle.ip == ip)
    return (await session.exec(stmt)).rowcount


async def count_failure_and_commit(
    *, email: str, ip: str, user: Person | None, action: str, data: dict[str, Any]
) -> int:
    """Count a failed attempt toward the (email, IP) lockout and, when the account is known,
    audit it as `action` (as `user.locked`, with `locked_seconds`, when this failure locks). Its
    own unit of work, so it commits though the request then fails. Returns the lock's seconds."""
    async with db.transaction() as session:
        seconds = await record_failure(session=session, email=email, ip=ip)
        if user is not None:
            await activity.record(
                session=session,
                action="user.locked" if seconds else action,
                org_id=user.org_id,
                resource_type="user",
                resource_id=user.id,
                data={**data, "locked_seconds": seconds} if seconds else data,
                actor_user_id=user.id,
            )
    return seconds
