"""Starting a first-party sign-in once every factor checked out: one statement.

The password step (`models.signin.password_step`) and the second factor (`models.signin.mfa`)
read; this writes. One statement, committed on its own, stamps the user, clears the failures on
record, stores the sign-in and its first refresh token, appends the audit entry and the event,
and reads what the access token states: the organization's audit chain stays locked only while
it runs.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import String, bindparam, func, or_, true
from sqlalchemy import delete as sa_delete
from sqlalchemy import insert as sa_insert
from sqlalchemy import update as sa_update
from sqlmodel import select

from models.common.base import utcnow
from models.identity.lockout import LoginThrottle
from models.identity.organizations import Organization
from models.identity.sign_ins import SignIn
from models.identity.users import PUBLIC_COLUMNS, User
from models.records import activity, audit, events
from models.signin.access_tokens import Access, access_columns, sign
from models.signin.token_pairs import TokenPair, refresh_token_cte
from tessera.core import db, tokens
from tessera.core.errors import AuthenticationFailed
from tessera.core.ids import new_id
from tessera.core.settings import get_settings


class _NewSignIn(NamedTuple):
    """A first-party sign-in as `sign` reads it."""

    id: str
    user_id: str
    org_id: str | None
    client_id: None = None
    scope: None = None


@cache
def _sign_in_query(clear_failures: bool):
    """A sign-in in one statement, committed on its own: stamp the user while still active in
    the organization read before (storing a rehashed password when one is given), clear the
    failures on record for (email, IP) when `clear_failures`, store the sign-in and its first
    refresh token, append the audit entry and the event (`activity.entry_and_event`'s), and
    read the user as the API shows them with what the access token states. No row: the user
    is no longer active there, and nothing was written."""
    usr, ses, org = User.__table__, SignIn.__table__, Organization.__table__
    organization_row = (
        select(org.c.id).where(org.c.id == usr.c.org_id).with_for_update(read=True, key_share=True)
    )
    now = bindparam("now", type_=ses.c.created_at.type)
    expires_at = bindparam("expires_at", type_=ses.c.expires_at.type)
    signed = (
        sa_update(usr)
        .where(
            usr.c.id == bindparam("user_id", type_=String),
            usr.c.status == "active",
            # The audit entry's chain is this organization's.
            usr.c.org_id.is_not_distinct_from(bindparam("org_id", type_=String)),
            # Its row, which the sign-in's foreign key names, locked before the chain is
            # (`audit.append_with_change` says why).
            or_(usr.c.org_id.is_(None), organization_row.exists()),
        )
        .values(
            last_login_at=now,
            password_hash=func.coalesce(
                bindparam("password_hash", type_=String), usr.c.password_hash
            ),
        )
        .returning(*(usr.c[column.key] for column in PUBLIC_COLUMNS))
        .cte("signed")
    )
    started = (
        sa_insert(ses)
        .from_select(
            [
                *("id", "user_id", "org_id", "ip", "user_agent"),
                *("created_at", "last_seen_at", "expires_at"),
            ],
            select(
                bindparam("sign_in_id", type_=String),
                signed.c.id,
                signed.c.org_id,
                bindparam("ip", type_=String),
                bindparam("user_agent", type_=String),
                now,
                now,
                expires_at,
            ),
        )
        .returning(ses.c.id)
        .cte("started")
    )
    first_token = refresh_token_cte("first_token", started.c.id, now, expires_at)
    ctes = [started, first_token]
    if clear_failures:
        throttles = LoginThrottle.__table__
        ctes.append(
            sa_delete(throttles)
            .where(
                throttles.c.email == select(signed.c.email).scalar_subquery(),
                throttles.c.ip == bindparam("ip", type_=String),
            )
            .returning(throttles.c.email)
            .cte("cleared")
        )
    ctes.append(events.insert_after(signed).cte("logged"))
    held = access_columns(signed.c.org_id, signed.c.id)
    appended = audit.appended_after(signed)
    return select(signed, *held).select_from(signed.join(appended, true())).add_cte(*ctes)


async def start_sign_in_and_commit(
    *,
    user_id: str,
    org_id: str | None,
    ip: str,
    user_agent: str | None,
    password_hash: str | None = None,
    mfa_method: str | None = None,
    throttled: bool = True,
) -> tuple[TokenPair, Any]:
    """Every factor checked out: clear the failures (when `throttled`: some are on record),
    store a rehashed `password_hash`, start the sign-in, record the sign-in in the audit log
    of `org_id` (the user's organization as read before). Returns the tokens and the user as a
    row of `users.PUBLIC_COLUMNS`. One statement, committed on its own: the organization's
    audit chain stays locked only while it runs."""
    now = utcnow()
    refresh_token = tokens.opaque("rt")
    sign_in_id = new_id("ses")
    data = {"session_id": sign_in_id}
    if mfa_method is not None:
        data["mfa"] = mfa_method
    entry, (_, event_params) = activity.entry_and_event(
        action="user.login",
        org_id=org_id,
        resource_type="user",
        resource_id=user_id,
        data=data,
        actor_user_id=user_id,
    )
    params = {
        "user_id": user_id,
        "org_id": org_id,
        "password_hash": password_hash,
        "now": now,
        "expires_at": now + timedelta(seconds=get_settings().refresh_token_ttl_s),
        "sign_in_id": sign_in_id,
        "ip": ip,
        "user_agent": user_agent,
        "first_token_id": new_id("rft"),
        "first_token_hash": tokens.digest(refresh_token),
        **event_params,
        **audit.append_params(entry, prefix="audit_"),
    }
    user = await db.fetch_one(_sign_in_query(throttled), params)
    if user is None:
        raise AuthenticationFailed("Invalid email or password.")
    held = Access.of(user.held, user.department, user.mfa_due)
    access_token, ttl = sign(_NewSignIn(sign_in_id, user.id, user.org_id), held)
    pair = TokenPair(access_token, refresh_token, ttl, sign_in_id, held.roles, held.enrollment_due)
    return pair, user
