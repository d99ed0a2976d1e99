"""Setting two-step sign-in up, its recovery codes, and turning it off (`/v1/users/me/2fa`).

    enroll ──> confirm: MFA active, ten recovery codes shown once ──> disable

The codes, and how a wrong one counts toward the sign-in lockout, are `models.signin.mfa`'s.
"""

from __future__ import annotations

import base64
import io

import pyotp
import segno
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import rfc3339, utcnow
from models.identity import mfa_factors
from models.identity.mfa_factors import MfaFactor, RecoveryCode
from models.identity.users import User
from models.records import activity
from models.signin import mfa, password_step
from tessera.core import db
from tessera.core.errors import Conflict, Detail, NotFound, ValidationFailed
from tessera.core.secrets_box import seal, unseal

ISSUER = "Tessera"


def _qr_png_base64(uri: str) -> str:
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="png", scale=5, border=4)
    return base64.b64encode(buffer.getvalue()).decode()


async def enroll(*, session: AsyncSession, user_id: str) -> dict:
    """A new, unconfirmed secret (replacing an unfinished enrollment); 409 when MFA is active."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("The user no longer exists.")
    secret = pyotp.random_base32()  # 32 base32 characters: 160 bits
    sealed, now = seal(secret), utcnow()
    table = MfaFactor.__table__
    stmt = (
        insert(table)
        .values(user_id=user_id, secret_encrypted=sealed, created_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.user_id],
            set_={"secret_encrypted": sealed, "last_used_step": None, "created_at": now},
            where=table.c.confirmed_at.is_(None),
        )
        .returning(table.c.user_id)
    )
    if (await session.exec(stmt)).first() is None:
        raise Conflict("Two-step sign-in is already enabled; disable it to set up a new app.")
    uri = mfa.authenticator(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return {"secret": secret, "otpauth_uri": uri, "qr_png_base64": _qr_png_base64(uri)}


async def confirm(*, session: AsyncSession, user_id: str, org_id: str | None, code: str) -> dict:
    """Prove the app works with a current code: MFA becomes active, and the recovery codes are
    returned (the only time they are)."""
    factor = await session.get(MfaFactor, user_id, with_for_update=True)
    if factor is None:
        raise Conflict("No authenticator is being set up; start with POST /v1/users/me/2fa/enable.")
    if factor.confirmed_at is not None:
        raise Conflict("Two-step sign-in is already enabled.")
    step = mfa.matching_step(unseal(factor.secret_encrypted), code, after=factor.last_used_step)
    if step is None:
        raise ValidationFailed("The code is wrong or expired.", [mfa.wrong_code("code")])
    factor.confirmed_at, factor.last_used_step = utcnow(), step
    codes = await mfa.replace_recovery_codes(session=session, user_id=user_id)
    await activity.record(
        session=session,
        action="mfa.enabled",
        org_id=org_id,
        resource_type="user",
        resource_id=user_id,
        data={"method": mfa.TOTP},
    )
    return {"enabled": True, "recovery_codes": codes}


async def status(*, session: AsyncSession, user_id: str) -> dict:
    factor = await mfa_factors.get_factor(session=session, user_id=user_id)
    remaining = 0
    if factor is not None:
        remaining = (
            await session.exec(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
            )
        ).one()
    return {
        "enabled": factor is not None,
        "confirmed_at": rfc3339(factor.confirmed_at) if factor else None,
        "recovery_codes_remaining": remaining,
    }


async def _user_with_factor(*, user_id: str, ip: str) -> User:
    """The caller, when MFA is active and this (email, IP) is not locked out."""
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        factor = await mfa_factors.get_factor(session=session, user_id=user_id)
    if user is None:
        raise NotFound("The user no longer exists.")
    if factor is None:
        raise Conflict("Two-step sign-in is not enabled.")
    await mfa.ensure_not_locked(email=user.email, ip=ip)
    return user


async def disable_and_commit(
    *,
    user_id: str,
    org_id: str | None,
    password: str,
    code: str | None,
    recovery_code: str | None,
    ip: str,
) -> None:
    """Turn MFA off with the password and a current code or an unused recovery code. Opens its
    own units of work: a wrong password or code is recorded although the request then fails."""
    field = mfa.one_code(code, recovery_code)
    if field is None:
        raise ValidationFailed(
            "Send a current code or a recovery code.",
            [Detail("code", "REQUIRED", "Send `code` (or `recovery_code`).")],
        )
    user = await _user_with_factor(user_id=user_id, ip=ip)
    if not await password_step.matches(user, password):
        await mfa.count_failure_and_commit(user=user, ip=ip, reason="password")
        raise ValidationFailed(
            "The password is wrong.",
            [Detail("password", "INCORRECT", "Does not match your password.")],
        )
    async with db.transaction() as session:
        method = await mfa.consume(
            session=session, user_id=user_id, code=code, recovery_code=recovery_code
        )
        if method is not None:
            await session.exec(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
            await session.exec(delete(MfaFactor).where(MfaFactor.user_id == user_id))
            await activity.record(
                session=session,
                action="mfa.disabled",
                org_id=org_id,
                resource_type="user",
                resource_id=user_id,
                data={"verified_with": method},
            )
    if method is None:
        await mfa.count_failure_and_commit(user=user, ip=ip, reason=field)
        raise ValidationFailed("The code is wrong or was already used.", [mfa.wrong_code(field)])


async def regenerate_recovery_codes_and_commit(
    *, user_id: str, org_id: str | None, code: str, ip: str
) -> list[str]:
    """A fresh set of recovery codes for a current TOTP code; the old set stops working."""
    user = await _user_with_factor(user_id=user_id, ip=ip)
    async with db.transaction() as session:
        method = await mfa.consume(session=session, user_id=user_id, code=code, recovery_code=None)
        if method is not None:
            codes = await mfa.replace_recovery_codes(session=session, user_id=user_id)
            await activity.record(
                session=session,
                action="mfa.recovery_codes_regenerated",
                org_id=org_id,
                resource_type="user",
                resource_id=user_id,
            )
    if method is None:
        await mfa.count_failure_and_commit(user=user, ip=ip, reason="code")
        raise ValidationFailed("The code is wrong or was already used.", [mfa.wrong_code("code")])
    return codes
