"""A new password set by the operator from the command line (`tessera create-admin
--reset-password`): the way back in when the first admin's password is lost."""

from __future__ import annotations

from models.common.base import utcnow
from models.identity import first_admin, users
from models.records import activity
from models.signin import login as auth
from tessera.core import db, passwords
from tessera.core.errors import NotFound


async def reset_password(*, email: str | None, password: str) -> users.User:
    """Give the user with `email` (the first user when None) `password`: every sign-in they hold
    is revoked, their failed sign-ins are forgotten (a lockout ends), and the change is audited.
    Commits on its own; 404 NOT_FOUND when there is no such user."""
    try:
        async with db.transaction() as session:
            if email is None:
                user = await first_admin.first_user(session=session)
            else:
                user = await users.get_by_email(session=session, email=email)
            if user is None:
                raise NotFound("No user with this email." if email else "There are no users yet.")
        passwords.enforce_policy(password, email=user.email)
        password_hash = await passwords.hash_password(password)  # not while a row is locked
        async with db.transaction() as session:
            user = await session.get(users.User, user.id, with_for_update=True)
            if user is None:
                raise NotFound("The user no longer exists.")
            user.password_hash, user.updated_at = password_hash, utcnow()
            if user.status == "locked":  # locked out by failed sign-ins; not a deactivation
                user.status = "active"
            await auth.revoke_user_sessions(
                session=session, user_id=user.id, reason="password_reset"
            )
            await auth.clear_failures(session=session, email=user.email)
            await activity.record(
                session=session,
                action="user.password_changed",
                org_id=user.org_id,
                resource_type="user",
                resource_id=user.id,
                data={"via": "operator_reset"},
            )
        return user
    finally:
        await db.dispose()
