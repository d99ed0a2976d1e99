"""Account mail: password reset, email verification, email change, and plain notices.

Requests only queue these jobs, by name (`models.signin.account_mail`). A job that mails a link
issues its token here, in the worker, so the secret never travels through the queue, and a
password-reset request costs the same whether or not the account exists (the lookup happens
here, after the answer). A failed delivery is retried with exponential backoff (15 s doubling
to 1 h, about three hours in all); each retry of a link mail issues a fresh token, which expires
the one whose delivery failed.
"""

from __future__ import annotations

from urllib.parse import urlencode

import dramatiq

from models.signin import account as verification
from tessera.core import db, mailer, metrics
from tessera.core.mailer import Mail
from tessera.core.settings import get_settings

_RETRIES = {"max_retries": 10, "min_backoff": 15_000, "max_backoff": 3_600_000}


def _link(path: str, token: str) -> str:
    return f"{get_settings().public_url.rstrip('/')}{path}?{urlencode({'token': token})}"


async def _deliver(mail: Mail, kind: str) -> None:
    try:
        await mailer.send(mail)
    except Exception:
        metrics.JOBS.labels(f"email_{kind}", "failed").inc()
        raise
    metrics.JOBS.labels(f"email_{kind}", "ok").inc()


@dramatiq.actor(queue_name="email", **_RETRIES)
async def send_mail(to: str, subject: str, body: str) -> None:
    """A message that carries no secret (notices)."""
    await _deliver(Mail(to, subject, body), "notice")


@dramatiq.actor(queue_name="email", **_RETRIES)
async def send_password_reset(email: str) -> None:
    async with db.transaction() as session:
        issued = await verification.start_password_reset(session=session, email=email)
    if issued is None:
        return  # no active account: nothing is sent, and the requester cannot tell
    address, token = issued
    body = f"""Someone asked to reset the password of the Tessera account {address}.

To choose a new password, open this link within the next hour:

{_link("/reset-password", token)}

or send this token to POST /v1/auth/password/reset:

{token}

The link works once. Resetting signs the account out everywhere.
If you did not ask for this, ignore this message: the password stays as it is.
"""
    await _deliver(Mail(address, "Reset your Tessera password", body), "password_reset")


@dramatiq.actor(queue_name="email", **_RETRIES)
async def send_verification(user_id: str) -> None:
    async with db.transaction() as session:
        issued = await verification.start_email_verification(session=session, user_id=user_id)
    if issued is None:
        return  # verified meanwhile, or the account is gone
    address, token = issued
    body = f"""Confirm that {address} is the address of your Tessera account.

Open this link within 24 hours:

{_link("/verify-email", token)}

or, signed in, send this token to POST /v1/users/me/email/confirm:

{token}

If you did not create a Tessera account, ignore this message.
"""
    await _deliver(Mail(address, "Verify your email address", body), "verification")


@dramatiq.actor(queue_name="email", **_RETRIES)
async def send_email_change(user_id: str, new_email: str) -> None:
    async with db.transaction() as session:
        issued = await verification.start_email_change(
            session=session, user_id=user_id, new_email=new_email
        )
    if issued is None:
        return
    address, token = issued
    body = f"""Confirm {address} as the new address of your Tessera account.

Open this link within 24 hours:

{_link("/confirm-email", token)}

or, signed in, send this token to POST /v1/users/me/email/confirm:

{token}

The account keeps its current address until you confirm.
If you did not ask for this, ignore this message.
"""
    await _deliver(Mail(address, "Confirm your new email address", body), "email_change")
