"""The second factor: TOTP codes (RFC 6238), single-use recovery codes, and the sign-in
challenge.

    sign-in: password ok ──> 401 MFA_REQUIRED + `Tessera-MFA-Token` (a challenge, 5 minutes)
                 ──> sign_in_with_challenge_and_commit(code | recovery_code) ──> sign-in

Setting a factor up and turning it off is `models.signin.mfa_enrollment`'s; the tables are in
`models.identity.mfa_factors`.

Codes are what authenticator apps expect: SHA-1, 6 digits, 30-second steps, a 160-bit secret
(sealed at rest with `tessera.core.secrets_box`), one step of clock drift either way. A code is
accepted once: the accepted step is stored and a code for that step or an earlier one is a
replay. Wrong codes count toward the sign-in lockout of (email, IP) in `models.identity.lockout`.
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import timedelta
from typing import Any

import pyotp
from sqlalchemy import or_
from sqlmodel import delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import utcnow
from models.identity import lockout
from models.identity.mfa_factors import MfaFactor, RecoveryCode, get_factor
from models.identity.users import User
from models.signin.password_step import Account
from models.signin.single_use_tokens import SingleUseToken
from models.signin.start import start_sign_in_and_commit
from models.signin.token_pairs import TokenPair
from tessera.core import db, tokens
from tessera.core.errors import (
    AuthenticationFailed,
    Detail,
    MfaRequired,
    ValidationFailed,
)
from tessera.core.secrets_box import unseal

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# No 0/o, 1/l/i: read off a screen or paper without ambiguity. 10 characters ≈ 49.5 bits.
RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
CHALLENGE_PURPOSE = "mfa_challenge"
CHALLENGE_TTL = timedelta(minutes=5)
CHALLENGE_HEADER = "Tessera-MFA-Token"

TOTP = "totp"
RECOVERY_CODE = "recovery_code"


# --- codes -----------------------------------------------------------------------------------


def clock() -> float:
    """Now, in Unix seconds. Tests replace it to choose the time step."""
    return time.time()


def authenticator(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)  # SHA-1, as apps expect


def matching_step(secret: str, code: str, *, after: int | None) -> int | None:
    """The step, within the drift window, whose code is `code` and which comes after `after`
    (the last accepted step); None when there is none."""
    totp = authenticator(secret)
    current = int(clock() // STEP_S)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def normalize_recovery_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").lower()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


async def replace_recovery_codes(*, session: AsyncSession, user_id: str) -> list[str]:
    """A new set of codes; the previous set stops working. Only their digests are stored."""
    await session.exec(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(
        RecoveryCode(user_id=user_id, code_hash=tokens.digest(normalize_recovery_code(c)))
        for c in codes
    )
    return codes


async def consume(
    *, session: AsyncSession, user_id: str, code: str | None, recovery_code: str | None
) -> str | None:
    """Accept a current TOTP code (once per step) or an unused recovery code of an active
    factor, in the caller's unit of work; returns the method that passed, or None."""
    if code is not None:
        factor = await session.get(MfaFactor, user_id, with_for_update=True)
        if factor is None or factor.confirmed_at is None:
            return None
        step = matching_step(unseal(factor.secret_encrypted), code, after=factor.last_used_step)
        if step is None:
            return None
        factor.last_used_step = step
        return TOTP
    if recovery_code is not None:
        result = await session.exec(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == tokens.digest(normalize_recovery_code(recovery_code)),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
        )
        return RECOVERY_CODE if result.rowcount else None
    return None


def one_code(
    code: str | None, recovery_code: str | None, *, code_field: str = "code"
) -> str | None:
    """422 unless at most one kind of code was sent; returns the field of the one sent."""
    if code is not None and recovery_code is not None:
        raise ValidationFailed(
            "Send either a code or a recovery code, not both.",
            [Detail("recovery_code", "CONFLICTING_FIELDS", f"Omit it when sending {code_field}.")],
        )
    if code is not None:
        return code_field
    return "recovery_code" if recovery_code is not None else None


def wrong_code(field: str) -> Detail:
    if field == "recovery_code":
        return Detail(field, "INVALID_CODE", "Unknown or already used recovery code.")
    return Detail(field, "INVALID_CODE", "Wrong, expired or already used code.")


# --- lockout (shared with password sign-in) ----------------------------------------------------


LOCKED = "Too many failed attempts; try again later."


async def ensure_not_locked(*, email: str, ip: str) -> None:
    async with db.transaction() as session:
        wait = await lockout.locked_for(session=session, email=email, ip=ip)
    if wait:
        raise lockout.locked(wait, LOCKED)


async def count_failure_and_commit(*, user: User | Account, ip: str, reason: str) -> None:
    """Record a wrong code (or password) toward the (email, IP) lockout, audited (its own unit
    of work); raises 423 when this failure locks."""
    seconds = await lockout.count_failure_and_commit(
        email=user.email,
        ip=ip,
        user=user,
        action="auth.mfa_failed",
        data={"ip": ip, "reason": reason},
    )
    if seconds:
        raise lockout.locked(seconds, LOCKED)


# --- sign-in -----------------------------------------------------------------------------------


async def _challenge(
    user_id: str, message: str, details: list[Detail] | None = None
) -> MfaRequired:
    """A 401 MFA_REQUIRED carrying a new single-use challenge token (stored hashed)."""
    token = tokens.opaque("mfa")
    now = utcnow()
    async with db.transaction() as session:
        await session.exec(
            delete(SingleUseToken).where(
                SingleUseToken.user_id == user_id,
                SingleUseToken.purpose == CHALLENGE_PURPOSE,
                or_(SingleUseToken.expires_at <= now, SingleUseToken.used_at.is_not(None)),
            )
        )
        session.add(
            SingleUseToken(
                user_id=user_id,
                purpose=CHALLENGE_PURPOSE,
                token_hash=tokens.digest(token),
                expires_at=now + CHALLENGE_TTL,
            )
        )
    return MfaRequired(message, details, headers={CHALLENGE_HEADER: token})


async def second_factor_and_commit(
    *,
    user: User | Account,
    ip: str,
    code: str | None,
    recovery_code: str | None,
    enrolled: bool | None = None,
) -> str | None:
    """At sign-in, once the password checked out: None when the user has no active factor, else
    the method that passed, spent in its own unit of work. Without a code, or with a wrong one
    (counted toward the lockout), raises 401 MFA_REQUIRED with a challenge for
    `POST /v1/auth/mfa/verify`. `enrolled`: whether the user has an active factor, when the
    caller already read it (else it is read here)."""
    field = one_code(code, recovery_code, code_field="mfa_code")
    if enrolled is None:
        async with db.reader() as session:
            enrolled = await get_factor(session=session, user_id=user.id) is not None
    if not enrolled:
        return None
    if field is None:
        raise await _challenge(
            user.id, "Two-step sign-in is on: send a code from your authenticator app."
        )
    async with db.transaction() as session:
        method = await consume(
            session=session, user_id=user.id, code=code, recovery_code=recovery_code
        )
    if method is None:
        await count_failure_and_commit(user=user, ip=ip, reason=field)
        raise await _challenge(
            user.id, "The code is wrong or was already used.", [wrong_code(field)]
        )
    return method


# Its former name, which `models.oauth.grants` calls.
second_factor = second_factor_and_commit


async def sign_in_with_challenge_and_commit(
    *, mfa_token: str, code: str | None, recovery_code: str | None, ip: str, user_agent: str | None
) -> tuple[TokenPair, Any]:
    """Redeem a sign-in challenge with a code and start the sign-in. The challenge works once,
    within 5 minutes; a wrong code leaves it usable (until the lockout stops the attempts)."""
    field = one_code(code, recovery_code)
    if field is None:
        raise ValidationFailed(
            "Send a current code or a recovery code.",
            [Detail("code", "REQUIRED", "Send `code` (or `recovery_code`).")],
        )
    invalid = AuthenticationFailed(
        "The MFA token is invalid, expired or already used; sign in again."
    )
    async with db.transaction() as session:
        row = (
            await session.exec(
                select(SingleUseToken, User)
                .join(User, User.id == SingleUseToken.user_id)
                .where(
                    SingleUseToken.token_hash == tokens.digest(mfa_token),
                    SingleUseToken.purpose == CHALLENGE_PURPOSE,
                )
            )
        ).first()
    if row is None:
        raise invalid
    challenge, user = row
    if challenge.used_at is not None or challenge.expires_at <= utcnow():
        raise invalid
    if user.status != "active":
        raise invalid
    await ensure_not_locked(email=user.email, ip=ip)
    async with db.transaction() as session:
        method = await consume(
            session=session, user_id=user.id, code=code, recovery_code=recovery_code
        )
        if method is not None:
            claimed = await session.exec(
                update(SingleUseToken)
                .where(
                    SingleUseToken.id == challenge.id,
                    SingleUseToken.used_at.is_(None),
                    SingleUseToken.expires_at > utcnow(),
                )
                .values(used_at=utcnow())
            )
            if not claimed.rowcount:
                raise invalid  # redeemed concurrently: the code is not spent either
    if method is None:
        await count_failure_and_commit(user=user, ip=ip, reason=field)
        raise MfaRequired("The code is wrong or was already used.", [wrong_code(field)])
    return await start_sign_in_and_commit(
        user_id=user.id, org_id=user.org_id, ip=ip, user_agent=user_agent, mfa_method=method
    )
