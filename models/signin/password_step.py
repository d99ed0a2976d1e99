"""The password step of every sign-in: the one place a person's password is checked.

    check(email=, password=, ip=, via=)  -> Passed(account, enrolled, throttled)
    matches(account, password)           -> bool

`check` is the whole step of a sign-in by email and password (first-party login, the OAuth
authorization page): it refuses an email with a NUL or an empty one (401, nothing counted: no
such pair can be stored), refuses a locked (email, IP) pair (423), checks the password in
constant time, with the same argon2 work against a dummy hash when there is no live account, so
the answer and its timing do not tell which accounts exist; a wrong password is counted toward
the lockout of the pair and audited as `auth.login_failed` when the account is known
(`models.identity.lockout`; its own unit of work, committed though the request then fails), and
answers 401, or 423 when that failure locks. An account that is not active (403) or whose email
is unverified while the settings require it (403) stops here. What passes: the account, whether
it has an active second factor (for `models.signin.mfa.second_factor_and_commit`), and whether
failures are on record for the pair (clear them once the sign-in completes). One read before the
password check: the account, the pair's lockout and the factor come in one round trip.

`matches` is the constant-time check alone, for a signed-in person confirming an action with
their password (`models.signin.mfa_enrollment.disable_and_commit`); the caller counts a failure
with its own wording.

Errors are `tessera.core.errors.ApiError`s; a caller that shows them elsewhere than in the
JSON envelope (the authorization page) reads their `message`. A sign-in that does not start a
first-party sign-in (the authorization page) goes on like this:

    passed = await password_step.check(email=email, password=password, ip=ip, via="oauth")
    await mfa.second_factor_and_commit(user=passed.account, ip=ip, code=..., recovery_code=...,
                                       enrolled=passed.enrolled)
    if passed.throttled:
        async with db.transaction() as session:
            await lockout.clear_failures(session=session, email=passed.account.email, ip=ip)
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cache
from typing import NamedTuple, Protocol

from sqlalchemy import String, bindparam, exists, literal
from sqlmodel import select

from models.identity import users
from models.identity.lockout import LoginThrottle, count_failure_and_commit, locked, seconds_left
from models.identity.mfa_factors import MfaFactor
from models.identity.users import User
from tessera.core import db, passwords, tokens
from tessera.core.errors import AuthenticationFailed, PermissionDenied
from tessera.core.settings import get_settings

log = logging.getLogger("tessera.auth")

LOCKED = "Too many failed sign-in attempts; try again later."
INVALID = "Invalid email or password."


class Account(NamedTuple):
    """What a sign-in reads of a user: the columns it checks, not an ORM object."""

    id: str
    email: str
    org_id: str | None
    status: str
    email_verified: bool
    password_hash: str | None


class Passed(NamedTuple):
    account: Account  # active, and verified when verification is required
    enrolled: bool  # the account has an active second factor
    throttled: bool  # failures are on record for this (email, IP)


class HasPassword(Protocol):
    password_hash: str | None
    status: str


@cache
def _attempt_query():
    email, ip = bindparam("email", type_=String), bindparam("ip", type_=String)
    throttle = (LoginThrottle.email == email, LoginThrottle.ip == ip)
    locked_until = select(LoginThrottle.locked_until).where(*throttle).scalar_subquery()
    enrolled = exists().where(MfaFactor.user_id == User.id, MfaFactor.confirmed_at.is_not(None))
    one_row = select(literal(1)).subquery()
    return (
        select(
            *(User.__table__.c[name] for name in Account._fields),
            locked_until.label("locked_until"),
            exists().where(*throttle).label("on_record"),
            enrolled.label("enrolled"),
        )
        .select_from(one_row)
        .outerjoin(User, User.email == email)
    )


class _Attempt(NamedTuple):
    account: Account | None
    locked_until: datetime | None
    throttled: bool
    enrolled: bool


async def _attempt(*, email: str, ip: str) -> _Attempt:
    """One row whether or not the email exists, so both cost the same."""
    row = await db.fetch_one(_attempt_query(), {"email": email, "ip": ip})
    *account, until, on_record, has_factor = row
    return _Attempt(
        Account(*account) if account[0] is not None else None, until, on_record, has_factor
    )


async def matches(account: HasPassword | None, password: str) -> bool:
    """Whether `password` is the password of `account`, a live account. Without one the same
    argon2 work is done, so the time taken does not tell which accounts exist."""
    if account is not None and account.password_hash and account.status != "deleted":
        return await passwords.verify_password(account.password_hash, password)
    await passwords.verify_dummy(password)
    return False


async def check(*, email: str, password: str, ip: str, via: str | None = None) -> Passed:
    """The password step of a sign-in (the module's docstring says what it checks). `via`
    names the channel in the audit entry of a failure (`"oauth"`); first-party login omits it."""
    email = users.normalize_email(email)
    if not email or "\x00" in email:
        raise AuthenticationFailed(INVALID)
    attempt = await _attempt(email=email, ip=ip)
    if wait := seconds_left(attempt.locked_until):
        raise locked(wait, LOCKED)
    account = attempt.account
    if not await matches(account, password):
        known = account if account is not None and account.status != "deleted" else None
        data = {"ip": ip} if via is None else {"ip": ip, "via": via}
        seconds = await count_failure_and_commit(
            email=email, ip=ip, user=known, action="auth.login_failed", data=data
        )
        log.info("login failed", extra={"email_hash": tokens.digest(email)[:16], "ip": ip})
        if seconds:
            raise locked(seconds, LOCKED)
        raise AuthenticationFailed(INVALID)
    assert account is not None
    if account.status != "active":
        raise PermissionDenied(f"This account is {account.status}.")
    if get_settings().require_email_verification and not account.email_verified:
        raise PermissionDenied("Verify your email address before signing in.")
    return Passed(account, attempt.enrolled, attempt.throttled)
