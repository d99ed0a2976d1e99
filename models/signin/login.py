"""First-party sign-in by email and password: the password step, the second factor, the start.

    password_step.check ──> mfa.second_factor_and_commit ──> start.start_sign_in_and_commit
    (lockout, 401/423)      (401 MFA_REQUIRED with           (the sign-in, its first token
                             a challenge)                     pair, the audit entry, the event)

Each step opens its own units of work: a failed attempt must be recorded although the request
then fails. A password sign-in without a second factor is two statements: one read before the
password check, one write after it.

The sign-in modules of this package:

    password_step      the one password step of every sign-in
    lockout            failures per (email, IP): `LoginThrottle`, `clear_failures`
    mfa_factors        the MFA tables (`MfaFactor`, `RecoveryCode`), `get_factor`
    mfa                TOTP and recovery codes at sign-in, the sign-in challenge
    mfa_enrollment     setting a factor up, its recovery codes, turning it off
    single_use_tokens  `SingleUseToken`: mailed links and MFA challenges (table `email_tokens`)
    account            password reset, email verification and change
    account_mail       queueing the account mail, with its rate limits
    registration       a new account and its organization
    sign_ins           `SignIn` (table `sessions`), `revoke`, `revoke_user_sign_ins`, `is_live`
    sign_in_listing    a user's sign-ins, as the sessions operations list and end them
    access_tokens      what an access token states, signing it, `acting_in`
    token_pairs        `TokenPair`, `RefreshToken`, rotation, OAuth sign-ins
    start              starting a first-party sign-in in one statement
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from models.identity import lockout, sign_ins
from models.signin import access_tokens, mfa, password_step, sign_in_listing, token_pairs
from models.signin.start import start_sign_in_and_commit
from models.signin.token_pairs import TokenPair
from tessera.core import passwords


async def login_and_commit(
    *,
    email: str,
    password: str,
    ip: str,
    user_agent: str | None,
    mfa_code: str | None = None,
    recovery_code: str | None = None,
) -> tuple[TokenPair, Any]:
    """Password first (with the lockout), then the second factor when the user has one
    (`mfa.second_factor_and_commit`: 401 MFA_REQUIRED with a challenge when no code was sent),
    then the sign-in. Returns the tokens and the user as a row of `users.PUBLIC_COLUMNS`."""
    passed = await password_step.check(email=email, password=password, ip=ip)
    user = passed.account
    method = await mfa.second_factor_and_commit(
        user=user, ip=ip, code=mfa_code, recovery_code=recovery_code, enrolled=passed.enrolled
    )
    # Stored with the old parameters: rehash now, outside the transaction (argon2 is slow).
    rehashed = None
    if passwords.needs_rehash(user.password_hash or ""):
        rehashed = await passwords.hash_password(password)
    return await start_sign_in_and_commit(
        user_id=user.id,
        org_id=user.org_id,
        ip=ip,
        user_agent=user_agent,
        password_hash=rehashed,
        mfa_method=method,
        throttled=passed.throttled,
    )


# --- names other domains call here ------------------------------------------------------------
# They live in the modules above; a caller outside this package may import them from there.
Session = sign_ins.SignIn
RefreshToken = token_pairs.RefreshToken
sessions_cache = sign_ins.live_cache
session_active = sign_ins.is_live
revoke_user_sessions = sign_ins.revoke_user_sign_ins
revoke_all = sign_in_listing.revoke_all
sessions_scope = sign_in_listing.reachable_scope
user_sessions_query = sign_in_listing.user_query
public_session = sign_in_listing.public
refresh = token_pairs.rotate_and_commit
token_access = access_tokens.token_access
org_access = access_tokens.org_access
acting_in = access_tokens.acting_in
Account = password_step.Account
check_password = password_step.matches
count_failure = lockout.count_failure_and_commit
locked_for = lockout.locked_for
clear_failures = lockout.clear_failures
finish_login = start_sign_in_and_commit


async def revoke_session(*, session: AsyncSession, session_id: str, reason: str) -> bool:
    """`sign_ins.revoke`, by the sign-in's id under its former name."""
    return await sign_ins.revoke(session=session, sign_in_id=session_id, reason=reason)


async def revoke_one(
    *, session: AsyncSession, user_id: str, session_id: str, org_id: str | None, reason: str
) -> None:
    """`sign_in_listing.revoke_one`, by the sign-in's id under its former name."""
    await sign_in_listing.revoke_one(
        session=session, user_id=user_id, sign_in_id=session_id, org_id=org_id, reason=reason
    )


async def start_oauth_session(*, session_id: str, **fields: Any) -> tuple[str, int, str | None]:
    """`token_pairs.start_oauth_sign_in`, by the sign-in's id under its former name."""
    return await token_pairs.start_oauth_sign_in(sign_in_id=session_id, **fields)
