"""Password reset, email verification and email change: the flows that prove an address by mail.

The mail is queued, rate limited, by `models.signin.account_mail`.
"""

from __future__ import annotations

from models.identity import users
from models.signin import account, account_mail
from tessera.core import db
from tessera.core.caller import require_user
from tessera.web.http import one

_RESET_QUEUED = "If an account exists for this address, a link to reset its password is on its way."


async def forgot_password(body: dict):
    async with db.transaction() as session:
        await account_mail.queue_password_reset(session=session, email=body["email"])
    return {"data": {"message": _RESET_QUEUED}}, 202


async def reset_password(body: dict):
    await account.reset_password_and_commit(token=body["token"], new_password=body["new_password"])
    return None, 204


async def request_email_verification():
    caller = require_user()
    async with db.transaction() as session:
        address = await account_mail.queue_verification(session=session, user_id=caller.user_id)
    return {"data": {"message": f"A verification link is on its way to {address}."}}, 202


async def confirm_email(body: dict):
    caller = require_user()
    async with db.transaction() as session:
        user = await account.confirm_email(
            session=session, user_id=caller.user_id, token=body["token"]
        )
        user_body = await users.representation(session=session, org_id=caller.org_id, user=user)
    return one(user_body)


async def change_my_email(body: dict):
    caller = require_user()
    new_email = await account_mail.queue_email_change_and_commit(
        user_id=caller.user_id, new_email=body["new_email"], password=body["password"]
    )
    message = f"A confirmation link is on its way to {new_email}; the address changes once used."
    return {"data": {"message": message}}, 202
