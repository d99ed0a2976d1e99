"""Password reset, email verification and email change: the flows that prove an address by mail.

Mail is queued (`workers.email`) through the outbox, never sent inside the request: the answer
is the same whether or not the queue is reachable at that moment.
"""

from __future__ import annotations

from models.identity import users
from models.records import outbox
from models.signin import account as verification
from tessera.core import db, tokens
from tessera.core.caller import require_user
from tessera.core.settings import get_settings
from tessera.web.http import one
from tessera.web.ratelimit import limiter
from workers import email as mail

_RESET_QUEUED = "If an account exists for this address, a link to reset its password is on its way."


async def _limit_account_mail(user_id: str) -> None:
    limit = get_settings().rate_limit_account_mail_per_user
    await limiter().enforce(f"account-mail:{user_id}", limit, 3600)


async def forgot_password(body: dict):
    email = verification.normalized_address(body["email"], field="email")
    # Keyed by the address (hashed: no addresses in Redis), whether or not it has an account.
    limit = get_settings().rate_limit_password_reset_per_email
    await limiter().enforce(f"reset:{tokens.digest(email)}", limit, 3600)
    # The account lookup happens in the job, so this answer and its timing reveal nothing.
    async with db.transaction() as session:
        await outbox.enqueue(session=session, actor="send_password_reset", args=[email])
    return {"data": {"message": _RESET_QUEUED}}, 202


async def reset_password(body: dict):
    await verification.reset_password(token=body["token"], new_password=body["new_password"])
    return None, 204


async def request_email_verification():
    caller = require_user()
    async with db.reader() as session:
        user = await verification.unverified_user(session=session, user_id=caller.user_id)
    await _limit_account_mail(user.id)
    async with db.transaction() as session:
        await outbox.enqueue(session=session, actor="send_verification", args=[user.id])
    return {"data": {"message": f"A verification link is on its way to {user.email}."}}, 202


async def confirm_email(body: dict):
    caller = require_user()
    async with db.transaction() as session:
        user = await verification.confirm_email(
            session=session, user_id=caller.user_id, token=body["token"]
        )
        user_body = await users.representation(session=session, org_id=caller.org_id, user=user)
    return one(user_body)


async def change_my_email(body: dict):
    caller = require_user()
    # Limited before the password check, which would otherwise be an unthrottled oracle.
    await _limit_account_mail(caller.user_id)
    user, new_email = await verification.check_email_change(
        user_id=caller.user_id, new_email=body["new_email"], password=body["password"]
    )
    async with db.transaction() as session:
        await mail.queue_email_change(
            session=session, user_id=user.id, old_email=user.email, new_email=new_email
        )
    message = f"A confirmation link is on its way to {new_email}; the address changes once used."
    return {"data": {"message": message}}, 202
