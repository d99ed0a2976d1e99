"""Proving an address by mail: password reset, email verification and email change.

Each flow mails a single-use, expiring token (`SingleUseToken`, in
`models.signin.single_use_tokens`; queued by `models.signin.account_mail`, issued by the job in
`workers.email`). A token is a bearer secret: only its SHA-256 is stored and it is found by that
digest. Each row
also keeps the address it was mailed to (`new_email`), so a token proves control of exactly that
address: a reset or verification link stops working once the account's address is another one,
and an email-change token carries the address it switches to. Issuing a token expires the user's
outstanding ones of the same purpose, so only the newest link works.

Invalid, expired and used tokens answer the same 422 on the `token` field.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import utcnow
from models.identity import lockout, sign_ins, users
from models.identity.users import User
from models.records import activity
from models.signin.single_use_tokens import SingleUseToken
from tessera.core import db, passwords, tokens
from tessera.core.errors import Conflict, Detail, NotFound, ValidationFailed

PURPOSES = ("password_reset", "email_verify", "email_change")
LIFETIMES = {
    "password_reset": timedelta(hours=1),
    "email_verify": timedelta(hours=24),
    "email_change": timedelta(hours=24),
}
_PREFIXES = {"password_reset": "pwr", "email_verify": "emv", "email_change": "emc"}


# Its former name, which `workers.maintenance` still imports.
EmailToken = SingleUseToken


def _invalid_token() -> ValidationFailed:
    message = "The token is invalid, expired or already used."
    return ValidationFailed(message, [Detail("token", "INVALID_TOKEN", message)])


async def _expire_outstanding(
    session: AsyncSession, user_id: str, purposes: tuple[str, ...] = PURPOSES
) -> None:
    now = utcnow()
    await session.exec(
        update(SingleUseToken)
        .where(
            SingleUseToken.user_id == user_id,
            SingleUseToken.purpose.in_(purposes),
            SingleUseToken.used_at.is_(None),
            SingleUseToken.expires_at > now,
        )
        .values(expires_at=now)
    )


async def issue(*, session: AsyncSession, user: User, purpose: str, address: str) -> str:
    """A new token mailed to `address`; returns the secret (shown only in the message)."""
    # Locks the user: two concurrent requests must not both leave a live token behind.
    await session.exec(select(User.id).where(User.id == user.id).with_for_update())
    await _expire_outstanding(session, user.id, (purpose,))
    secret = tokens.opaque(_PREFIXES[purpose])
    session.add(
        SingleUseToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=tokens.digest(secret),
            new_email=address,
            expires_at=utcnow() + LIFETIMES[purpose],
        )
    )
    await session.flush()
    return secret


def _redeemable(row: SingleUseToken | None, purposes: tuple[str, ...], user_id: str | None) -> bool:
    return not (
        row is None
        or row.purpose not in purposes
        or row.used_at is not None
        or row.expires_at <= utcnow()
        or (user_id is not None and row.user_id != user_id)
    )


async def _redeem(
    session: AsyncSession,
    secret: str,
    purposes: tuple[str, ...],
    *,
    user_id: str | None = None,
    mailed_to_current: bool = True,
) -> tuple[SingleUseToken, User]:
    """The token and its owner, both locked until the transaction ends (two redemptions cannot
    both win); 422 unless the token is redeemable. Locks the user first, then the token, in the
    same order as `issue`, so a redemption and a new request for one account cannot deadlock."""
    find = select(SingleUseToken).where(SingleUseToken.token_hash == tokens.digest(secret))
    row = (await session.exec(find)).first()
    if row is None or not _redeemable(row, purposes, user_id):
        raise _invalid_token()
    user = (
        await session.exec(
            select(User)
            .where(User.id == row.user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    row = (
        await session.exec(find.with_for_update().execution_options(populate_existing=True))
    ).first()
    if row is None or not _redeemable(row, purposes, user_id):
        raise _invalid_token()  # redeemed or replaced while we waited for the lock
    if user is None or user.status != "active":
        raise _invalid_token()
    if mailed_to_current and row.new_email != user.email:
        raise _invalid_token()  # the account's address changed since the mail was sent
    return row, user


def normalized_address(email: str, *, field: str) -> str:
    """The address as stored; 422 for control characters, which `format: email` lets through
    and PostgreSQL refuses (NUL) or no mail server accepts."""
    address = users.normalize_email(email)
    if any(ord(c) < 32 or ord(c) == 127 for c in address):
        raise ValidationFailed(
            "The email address is not valid.",
            [Detail(field, "INVALID_FORMAT", "Control characters are not allowed.")],
        )
    return address


# --- password reset --------------------------------------------------------------------------


async def start_password_reset(*, session: AsyncSession, email: str) -> tuple[str, str] | None:
    """(address, secret) for an active account with this email; None when there is none."""
    user = await users.get_by_email(session=session, email=email)
    if user is None or user.status != "active":
        return None
    return user.email, await issue(
        session=session, user=user, purpose="password_reset", address=user.email
    )


async def reset_password_and_commit(*, token: str, new_password: str) -> User:
    """Redeem a reset token: new password, every sign-in ended, lockouts cleared.

    Opens its own units of work: the policy needs the owner's email before the (slow) hash is
    computed, and the hash must not be computed while the token row is locked."""
    async with db.transaction() as session:
        _, user = await _redeem(session, token, ("password_reset",))
    try:
        passwords.enforce_policy(new_password, email=user.email)
    except ValidationFailed as exc:
        details = [Detail("new_password", d.code, d.message) for d in exc.details]
        raise ValidationFailed(exc.message, details) from None
    password_hash = await passwords.hash_password(new_password)
    async with db.transaction() as session:
        row, user = await _redeem(session, token, ("password_reset",))
        row.used_at = utcnow()
        await _expire_outstanding(session, user.id, ("password_reset",))
        user.password_hash, user.updated_at = password_hash, utcnow()
        # Reading the mail proved control of the address.
        user.email_verified = True
        await sign_ins.revoke_user_sign_ins(
            session=session, user_id=user.id, reason="password_reset"
        )
        await lockout.clear_failures(session=session, email=user.email)
        await activity.record(
            session=session,
            action="user.password_changed",
            org_id=user.org_id,
            resource_type="user",
            resource_id=user.id,
            data={"via": "password_reset"},
            actor_user_id=user.id,
        )
    return user


# --- email verification and change -----------------------------------------------------------


async def unverified_user(*, session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("The user no longer exists.")
    if user.email_verified:
        raise Conflict("The email address is already verified.")
    return user


async def start_email_verification(
    *, session: AsyncSession, user_id: str
) -> tuple[str, str] | None:
    """(address, secret), or None when there is nothing left to verify."""
    user = await session.get(User, user_id)
    if user is None or user.status != "active" or user.email_verified:
        return None
    return user.email, await issue(
        session=session, user=user, purpose="email_verify", address=user.email
    )


async def check_email_change_and_commit(
    *, user_id: str, new_email: str, password: str
) -> tuple[User, str]:
    """Validate a change request (current password, a new and free address); returns the user
    and the normalised new address. Nothing changes until the new address is confirmed."""
    async with db.transaction() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise NotFound("The user no longer exists.")
    await users.confirm_password(user, password)
    address = normalized_address(new_email, field="new_email")
    if address == user.email:
        raise ValidationFailed(
            "The new address is the current one.",
            [Detail("new_email", "UNCHANGED", "This is already the account's address.")],
        )
    async with db.transaction() as session:
        if await users.get_by_email(session=session, email=address) is not None:
            raise Conflict("A user with this email already exists.")
        await activity.record(
            session=session,
            action="user.email_change_requested",
            org_id=user.org_id,
            resource_type="user",
            resource_id=user.id,
            data={"new_email": address},
        )
    return user, address


async def start_email_change(
    *, session: AsyncSession, user_id: str, new_email: str
) -> tuple[str, str] | None:
    """(new address, secret), or None when the account is gone or inactive."""
    user = await session.get(User, user_id)
    if user is None or user.status != "active":
        return None
    return new_email, await issue(
        session=session, user=user, purpose="email_change", address=new_email
    )


async def confirm_email(*, session: AsyncSession, user_id: str, token: str) -> User:
    """Redeem a verification or change token of this user: the address is verified, and for a
    change it becomes the account's address (409 when another account took it meanwhile)."""
    row, user = await _redeem(
        session, token, ("email_verify", "email_change"), user_id=user_id, mailed_to_current=False
    )
    changing = row.purpose == "email_change"
    if not changing and row.new_email != user.email:
        raise _invalid_token()  # verifies only the address it was mailed to
    now = utcnow()
    row.used_at = now
    fields = ["email_verified"]
    if changing and row.new_email != user.email:
        taken = await users.get_by_email(session=session, email=row.new_email or "")
        if taken is not None:
            raise Conflict("A user with this email already exists.")
        user.email = row.new_email or user.email
        fields.insert(0, "email")
        # Links mailed to the old address (reset, verification, other changes) stop working.
        await _expire_outstanding(session, user.id)
    user.email_verified, user.updated_at = True, now
    try:
        await session.flush()
    except IntegrityError:  # another account took the address between our check and now
        raise Conflict("A user with this email already exists.") from None
    await activity.record(
        session=session,
        action="user.updated",
        org_id=user.org_id,
        resource_type="user",
        resource_id=user.id,
        data={"fields": fields},
    )
    return user
