"""Queueing account mail: password reset, email verification, email change.

Mail is queued through the outbox (`models.records.outbox`, by actor name; the actors are in
`workers.email`), never sent inside the request: the answer is the same whether or not the
queue is reachable at that moment. Each request is rate limited here first
(`tessera.core.ratelimit`; 429 past the limit): reset requests per address, hashed (no
addresses in Redis), whether or not it has an account; verification and change requests per
user.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from models.records import outbox
from models.signin import account
from tessera.core import db, tokens
from tessera.core.ratelimit import limiter
from tessera.core.settings import get_settings

_HOUR = 3600


async def _limit_per_user(user_id: str) -> None:
    limit = get_settings().rate_limit_account_mail_per_user
    await limiter().enforce(f"account-mail:{user_id}", limit, _HOUR)


async def queue_password_reset(*, session: AsyncSession, email: str) -> None:
    """Queue the reset link for `email`. The account lookup happens in the job, so the answer
    and its timing reveal nothing about which addresses have one."""
    address = account.normalized_address(email, field="email")
    limit = get_settings().rate_limit_password_reset_per_email
    await limiter().enforce(f"reset:{tokens.digest(address)}", limit, _HOUR)
    await outbox.enqueue(session=session, actor="send_password_reset", args=[address])


async def queue_verification(*, session: AsyncSession, user_id: str) -> str:
    """Queue a verification link to the user's address (409 when it is already verified);
    returns the address."""
    user = await account.unverified_user(session=session, user_id=user_id)
    await _limit_per_user(user.id)
    await outbox.enqueue(session=session, actor="send_verification", args=[user.id])
    return user.email


async def queue_email_change_and_commit(*, user_id: str, new_email: str, password: str) -> str:
    """Check a change request (`account.check_email_change_and_commit`: the password, a new and
    free address; audited), then queue the confirmation to the new address and a notice to the
    old one (separate jobs, so a failure of one does not send the other twice). Limited before
    the password check, which would otherwise be an unthrottled oracle. Returns the new
    address."""
    await _limit_per_user(user_id)
    user, address = await account.check_email_change_and_commit(
        user_id=user_id, new_email=new_email, password=password
    )
    notice = f"""Someone asked to change the address of your Tessera account from {user.email}
to {address}.

Nothing changes until the new address is confirmed from the message sent to it.
If this was not you, change your password now and tell your administrator.
"""
    subject = "Your Tessera email address is being changed"
    async with db.transaction() as session:
        await outbox.enqueue(session=session, actor="send_email_change", args=[user.id, address])
        await outbox.enqueue(session=session, actor="send_mail", args=[user.email, subject, notice])
    return address
