"""The signed-in user, user administration, sessions and preferences."""

from __future__ import annotations

from models import auth, users
from models.pagination import paginate
from tessera import db, passwords
from tessera.auth import require_user
from tessera.errors import Detail, NotFound, ValidationFailed
from tessera.http import one


async def get_me():
    caller = require_user()
    async with db.transaction() as session:
        user = await users.get(session=session, user_id=caller.user_id)
    if user is None:
        raise NotFound("The user no longer exists.")
    return one(users.public(user, list(caller.roles)))


async def change_my_password(body: dict):
    caller = require_user()
    async with db.transaction() as session:
        user = await users.get(session=session, user_id=caller.user_id)
    if user is None or not await passwords.verify_password(
        user.password_hash or "", body["current_password"]
    ):
        # 422, not 401: the caller's token is fine, one field is wrong.
        raise ValidationFailed(
            "The current password is wrong.",
            [Detail("current_password", "INCORRECT", "Does not match the current password.")],
        )
    passwords.enforce_policy(body["new_password"], email=user.email)
    new_hash = await passwords.hash_password(body["new_password"])
    async with db.transaction() as session:
        await users.set_password(session=session, user_id=user.id, password_hash=new_hash)
        await auth.revoke_user_sessions(
            session=session, user_id=user.id, reason="password_changed", keep=caller.session_id
        )
    return None, 204


async def list_my_sessions(limit: int = 20, offset: int = 0, cursor: str | None = None):
    caller = require_user()
    async with db.transaction() as session:
        page = await paginate(
            session,
            auth.active_sessions_query(user_id=caller.user_id),
            model=auth.Session,
            sort="-created_at",
            limit=limit,
            offset=offset,
            cursor=cursor,
        )
    return page.envelope(lambda s: auth.public_session(s, current=caller.session_id)), 200
