"""Shutting an account out: deactivation, and deletion (soft or hard), whether the user closes
their own account or an administrator acts on a member.

Shutting out ends every sign-in of the account in the same transaction and never leaves an
organization that has other members without an owner (`models.identity.ownership`).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import utcnow
from models.identity import lockout, ownership, sign_ins, users
from models.identity.tables import User


async def shut_out(*, session: AsyncSession, user: User, status: str) -> None:
    """Set `status` (deactivated or deleted) and end the account's sign-ins; 409 when the user
    is the last owner of an organization with other members."""
    await ownership.ensure_owner_remains(
        session=session, user_id=user.id, message=ownership.CLOSING_LAST_OWNER
    )
    user.status = status
    if status == "deleted":
        user.deleted_at = utcnow()
    await sign_ins.revoke_user_sign_ins(session=session, user_id=user.id, reason=f"user_{status}")


async def deactivate_self(*, session: AsyncSession, org_id: str | None, user: User) -> None:
    await shut_out(session=session, user=user, status="deactivated")
    await users.updated(session, org_id, user, ["status"])


async def soft_delete(*, session: AsyncSession, org_id: str | None, user: User) -> None:
    """The account stays (its email remains taken, its history attributable) but cannot sign
    in and is hidden everywhere."""
    await shut_out(session=session, user=user, status="deleted")
    user.updated_at = utcnow()
    await users.record(session, "user.deleted", org_id, user.id, mode="soft")


async def hard_delete(*, session: AsyncSession, org_id: str | None, user: User) -> None:
    """Erase the account. Memberships, role grants, sign-ins, refresh tokens, MFA factors and
    email tokens go with it (ON DELETE CASCADE); rows that only mention it keep a NULL."""
    # Ends the sign-ins in the revocation cache too, which the cascade would not.
    await shut_out(session=session, user=user, status="deleted")
    await lockout.clear_failures(session=session, email=user.email)
    await users.record(session, "user.deleted", org_id, user.id, mode="hard")
    await session.delete(user)
    await session.flush()


async def close_own_account(
    *, session: AsyncSession, org_id: str | None, user: User, password: str, mode: str
) -> None:
    """The signed-in user closes their account: deactivated (`mode` "deactivate"), or deleted
    ("soft" or "hard"), once they confirm their password (422 otherwise)."""
    await users.confirm_password(user, password)
    close = {"deactivate": deactivate_self, "soft": soft_delete, "hard": hard_delete}[mode]
    await close(session=session, org_id=org_id, user=user)
