"""The signed-in user, user administration, sign-ins and preferences."""

from __future__ import annotations

from contextlib import asynccontextmanager

from models.identity import administration, closure, directory, profiles, provisioning, users
from models.signin import login as auth
from tessera.core import db
from tessera.core.caller import Principal, principal, require_org, require_user
from tessera.core.errors import NotFound
from tessera.web.http import check_if_match, created, created_between, list_scope, listing, one


async def get_me():
    caller = require_user()
    me = await users.public_by_id(user_id=caller.user_id, roles=list(caller.roles))
    if me is None:
        raise NotFound("The user no longer exists.")
    return one(me)


async def change_my_password(body: dict):
    caller = require_user()
    async with db.reader() as session:
        user = await users.get(session=session, user_id=caller.user_id)
    # Checked and hashed outside a transaction: argon2 holds no connection.
    await users.confirm_password(user, body["current_password"], field="current_password")
    new_hash = await users.hash_new_password(body["new_password"], email=user.email)
    async with db.transaction() as session:
        await users.set_password(session=session, user_id=user.id, password_hash=new_hash)
        await auth.revoke_user_sessions(
            session=session, user_id=user.id, reason="password_changed", keep=caller.session_id
        )
    return None, 204


async def list_my_sessions(limit: int = 20, offset: int = 0, cursor: str | None = None):
    caller = require_user()
    return await list_user_sessions(caller.user_id, limit=limit, offset=offset, cursor=cursor)


# --- the signed-in user's own account ----------------------------------------------------------


async def update_me(body: dict):
    caller = require_user()
    async with db.transaction() as session:
        user = await users.own_account(session=session, user_id=caller.user_id, lock=True)
        # The same representation `get_me` answers (roles as in the token), so its ETag matches.
        check_if_match(users.public(user, list(caller.roles)))
        await profiles.update_self(
            session=session,
            org_id=caller.org_id,
            user=user,
            changes=body,
            may_set_department=caller.can("users:write"),
        )
    return one(users.public(user, list(caller.roles)))


async def get_my_preferences():
    caller = require_user()
    async with db.reader() as session:
        user = await users.own_account(session=session, user_id=caller.user_id)
    return one(profiles.preferences_of(user))


async def replace_my_preferences(body: dict):
    caller = require_user()
    async with db.transaction() as session:
        user = await users.own_account(session=session, user_id=caller.user_id, lock=True)
        check_if_match(profiles.preferences_of(user))
        preferences = profiles.replace_preferences(user=user, preferences=body)
    return one(preferences)


async def _close_my_account(password: str, mode: str):
    caller = require_user()
    async with db.transaction() as session:
        user = await users.own_account(session=session, user_id=caller.user_id, lock=True)
        await closure.close_own_account(
            session=session, org_id=caller.org_id, user=user, password=password, mode=mode
        )
    return None, 204


async def deactivate_me(body: dict):
    return await _close_my_account(body["password"], "deactivate")


async def delete_me(body: dict, mode: str = "soft"):
    return await _close_my_account(body["password"], mode)


# --- administration of the organization's users ------------------------------------------------


async def list_users(
    limit: int = 20,
    offset: int = 0,
    cursor: str | None = None,
    sort: str = "-created_at",
    email: str | None = None,
    status: str | None = None,
    role: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    q: str | None = None,
):
    caller = require_org()
    body = await directory.list_page(
        org_id=caller.org_id,
        sort=sort,
        limit=limit,
        offset=offset,
        cursor=cursor,
        scope=list_scope(),
        email=email,
        status=status,
        role=role,
        **created_between(created_after, created_before),
        q=q,
    )
    return body, 200


async def create_user(body: dict):
    caller = require_org()
    password_hash = await users.hash_new_password(body.get("password"), email=body["email"])
    async with db.transaction() as session:
        user = await provisioning.provision(
            session=session,
            org_id=caller.org_id,
            item=body,
            password_hash=password_hash,
            actor_permissions=set(caller.permissions),
        )
    return created(user, f"/v1/users/{user['id']}")


async def create_users_batch(body: dict):
    caller = require_org()
    results = await provisioning.provision_committing_each(
        org_id=caller.org_id, items=body["items"], actor_permissions=set(caller.permissions)
    )
    return {"data": results}, 200


async def get_user(user_id: str):
    caller = require_org()
    return one(await users.member_representation(org_id=caller.org_id, user_id=user_id))


@asynccontextmanager
async def _administer(user_id: str):
    """A unit of work on a member the caller may administer: locked, permission-checked (403),
    then compared with `If-Match` (412)."""
    caller = require_org()
    async with db.transaction() as session:
        user = await users.get_member(
            session=session, org_id=caller.org_id, user_id=user_id, lock=True
        )
        await administration.ensure_may_administer(
            session=session,
            org_id=caller.org_id,
            user=user,
            actor_permissions=set(caller.permissions),
        )
        check_if_match(await users.representation(session=session, org_id=caller.org_id, user=user))
        yield caller, session, user


async def replace_user(user_id: str, body: dict):
    async with _administer(user_id) as (caller, session, user):
        resource = await administration.update(
            session=session, org_id=caller.org_id, user=user, changes=body, actor_id=caller.user_id
        )
    return one(resource)


async def update_user(user_id: str, body: dict):
    async with _administer(user_id) as (caller, session, user):
        resource = await administration.update(
            session=session, org_id=caller.org_id, user=user, changes=body, actor_id=caller.user_id
        )
    return one(resource)


async def delete_user(user_id: str):
    async with _administer(user_id) as (caller, session, user):
        await administration.delete_member(
            session=session, org_id=caller.org_id, user=user, actor_id=caller.user_id
        )
    return None, 204


async def reactivate_user(user_id: str):
    async with _administer(user_id) as (caller, session, user):
        resource = await administration.reactivate(session=session, org_id=caller.org_id, user=user)
    return one(resource)


async def unlock_user(user_id: str):
    async with _administer(user_id) as (caller, session, user):
        resource = await administration.unlock(session=session, org_id=caller.org_id, user=user)
    return one(resource)


# --- a user's sign-ins (their own, or a member's for administrators) ---------------------------


async def _sessions_scope(session, caller: Principal, user_id: str) -> str | None:
    return await auth.sessions_scope(
        session=session, user_id=user_id, caller_id=caller.user_id, caller_org_id=caller.org_id
    )


def _revocation_reason(caller: Principal, user_id: str) -> str:
    return "revoked_by_user" if caller.user_id == user_id else "revoked_by_admin"


async def list_user_sessions(
    user_id: str, limit: int = 20, offset: int = 0, cursor: str | None = None
):
    caller = principal()
    async with db.reader() as session:
        org_id = await _sessions_scope(session, caller, user_id)
        return await listing(
            session,
            auth.user_sessions_query(user_id=user_id, org_id=org_id),
            model=auth.Session,
            render=lambda s: auth.public_session(s, current=caller.session_id),
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


async def revoke_user_session(user_id: str, session_id: str):
    caller = principal()
    async with db.transaction() as session:
        org_id = await _sessions_scope(session, caller, user_id)
        await auth.revoke_one(
            session=session,
            user_id=user_id,
            session_id=session_id,
            org_id=org_id,
            reason=_revocation_reason(caller, user_id),
        )
    return None, 204


async def revoke_all_user_sessions(user_id: str):
    caller = principal()
    async with db.transaction() as session:
        org_id = await _sessions_scope(session, caller, user_id)
        await auth.revoke_all(
            session=session,
            user_id=user_id,
            org_id=org_id,
            reason=_revocation_reason(caller, user_id),
            keep=caller.session_id if caller.user_id == user_id else None,  # "everywhere else"
        )
    return None, 204
