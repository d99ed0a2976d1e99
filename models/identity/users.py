"""User accounts: creating one, reading one (as itself or as a member of an organization), its
representation, its password.

A user reached through an organization (`get_member`) is one of its members who is not
deleted: a user of another tenant, or a soft-deleted one, answers 404 exactly like an id that
never existed. The list of an organization's users is `models.identity.directory`; changes to an
account are `models.identity.administration`, `closure`, `profiles` and `provisioning`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import ARRAY, String, any_, bindparam, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import rfc3339, utcnow
from models.identity.tables import Membership, Role, RoleGrant, User
from models.records import activity
from tessera.core import db, passwords
from tessera.core.errors import Conflict, Detail, NotFound, ValidationFailed

STATUSES = ("active", "deactivated", "locked", "deleted")
EMAIL_TAKEN = "A user with this email already exists."

DEFAULT_PREFERENCES: dict[str, Any] = {
    "theme": "system",
    "language": "en",
    "timezone": "UTC",
    "notifications": {"email": True, "sms": False, "push": False, "in_app": True},
}


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _has_control_characters(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


async def get(*, session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def own_account(*, session: AsyncSession, user_id: str, lock: bool = False) -> User:
    """The signed-in user's own row (locked for the change that follows with `lock`); 404 once
    it is gone."""
    user = await session.get(User, user_id, with_for_update=lock)
    if user is None:
        raise NotFound("The user no longer exists.")
    return user


# What `public` shows (every sort key among them): representations are read as rows, not ORM
# objects (their identity map and attribute instrumentation were a fifth of a list request).
PUBLIC_COLUMNS = (
    User.id,
    User.email,
    User.display_name,
    User.status,
    User.email_verified,
    User.org_id,
    User.department,
    User.created_at,
    User.updated_at,
    User.last_login_at,
)


@cache
def _public_statement():
    return select(*PUBLIC_COLUMNS).where(User.id == bindparam("user_id", type_=String))


async def public_by_id(*, user_id: str, roles: list[str]) -> dict[str, Any] | None:
    """`public(user, roles)` of a user read in one autocommit statement (`db.fetch_one`), or
    None when there is no such user."""
    row = await db.fetch_one(_public_statement(), {"user_id": user_id})
    return None if row is None else public(row, roles)


async def get_by_email(*, session: AsyncSession, email: str) -> User | None:
    result = await session.exec(select(User).where(User.email == normalize_email(email)))
    return result.first()


async def create(
    *,
    session: AsyncSession,
    email: str,
    display_name: str,
    password_hash: str | None,
    org_id: str | None = None,
    department: str | None = None,
    email_verified: bool = False,
) -> User:
    """Insert a user; 409 CONFLICT when the email is taken (case-insensitively)."""
    # `format: email` only asks for an "@"; PostgreSQL refuses NUL outright (a 500 otherwise).
    if _has_control_characters(email):
        raise ValidationFailed(
            "The email address is not valid.",
            [Detail("email", "INVALID_FORMAT", "Control characters are not allowed.")],
        )
    if await get_by_email(session=session, email=email) is not None:
        raise Conflict(EMAIL_TAKEN)
    user = User(
        email=normalize_email(email),
        display_name=display_name.strip(),
        password_hash=password_hash,
        org_id=org_id,
        department=department,
        email_verified=email_verified,
        preferences=DEFAULT_PREFERENCES,
    )
    try:
        async with session.begin_nested():  # a concurrent sign-up with the same email loses here
            session.add(user)
    except IntegrityError:
        raise Conflict(EMAIL_TAKEN) from None
    return user


def public(user: Any, roles: list[str]) -> dict[str, Any]:
    """The API representation of a `User`, or of a row of its `PUBLIC_COLUMNS`; never includes
    secrets."""
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "status": user.status,
        "email_verified": user.email_verified,
        "roles": roles,
        "org_id": user.org_id,
        "department": user.department,
        "created_at": rfc3339(user.created_at),
        "updated_at": rfc3339(user.updated_at),
        "last_login_at": rfc3339(user.last_login_at),
    }


# --- the password --------------------------------------------------------------------------


async def confirm_password(user: User | None, password: str, *, field: str = "password") -> None:
    """The one check that a signed-in user typed their current password before a sensitive
    change (a new password or email, closing the account): 422 naming `field` (not 401: the
    caller's token is fine, one field is wrong) unless `password` is it."""
    if user is None or not await passwords.verify_password(user.password_hash or "", password):
        raise ValidationFailed(
            f"The {field.replace('_', ' ')} is wrong.",
            [Detail(field, "INCORRECT", "Does not match the current password.")],
        )


async def hash_new_password(password: str | None, *, email: str) -> str | None:
    """The policy first (422, one detail per rule), then argon2id off the event loop."""
    if password is None:
        return None
    passwords.enforce_policy(password, email=email)
    return await passwords.hash_password(password)


async def set_password(*, session: AsyncSession, user_id: str, password_hash: str) -> None:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("The user no longer exists.")
    user.password_hash = password_hash
    user.updated_at = utcnow()


# --- a user within an organization ---------------------------------------------------------


def grant_applies(grant_department, user_department):
    """A grant limited to a department counts only while the user is in it (as in their token)."""
    return or_(grant_department.is_(None), grant_department == user_department)


@cache
def _roles_statement():
    return (
        select(RoleGrant.user_id, RoleGrant.department, Role.name)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(
            RoleGrant.org_id == bindparam("org_id", type_=String),
            # One array parameter: the statement's text is the same for any page size.
            RoleGrant.user_id == any_(bindparam("user_ids", type_=ARRAY(String))),
        )
    )


async def roles_in(
    *, session: AsyncSession, org_id: str | None, users: list[User]
) -> dict[str, list[str]]:
    """Role names each user holds in the organization, in one query for a whole page."""
    names: dict[str, set[str]] = {user.id: set() for user in users}
    if org_id and users:
        departments = {user.id: user.department for user in users}
        params = {"org_id": org_id, "user_ids": list(names)}
        for user_id, department, name in await session.execute(_roles_statement(), params):
            if department is None or department == departments[user_id]:
                names[user_id].add(name)
    return {user_id: sorted(found) for user_id, found in names.items()}


async def representation(*, session: AsyncSession, org_id: str | None, user: User) -> dict:
    """`public(user)` with the roles the user holds in `org_id`."""
    roles = await roles_in(session=session, org_id=org_id, users=[user])
    return public(user, roles[user.id])


def roles_held(org_id):
    """A column of the names of the roles the row's user holds in `org_id` (a correlated
    subquery; NULL for none, a name twice when granted twice): `role_names` reads it."""
    return (
        select(func.array_agg(Role.name))
        .select_from(RoleGrant)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(
            RoleGrant.org_id == org_id,
            RoleGrant.user_id == User.id,
            grant_applies(RoleGrant.department, User.department),
        )
        .scalar_subquery()
        .label("roles")
    )


def role_names(row) -> list[str]:
    return sorted(set(row.roles or ()))


@cache
def _member_statement(*, with_roles: bool, lock: bool):
    """The row of a member of `:org_id`, `:user_id`, who is not deleted; `with_roles`: the
    columns `public` shows and the names of the roles they hold there (a correlated subquery,
    not a second round trip). Built once: building such a statement and its cache key cost
    ~400 µs per request."""
    org_id, user_id = bindparam("org_id", type_=String), bindparam("user_id", type_=String)
    columns: list = [User]
    if with_roles:
        columns = [*PUBLIC_COLUMNS, roles_held(org_id)]
    stmt = (
        select(*columns)
        .select_from(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, User.id == user_id, User.status != "deleted")
    )
    if lock:  # the If-Match check and the change it guards see the same row
        stmt = stmt.with_for_update(of=User)
    return stmt


_NO_MEMBER = "No user with this id in your organization."


async def member_representation(*, org_id: str, user_id: str) -> dict:
    """`representation` of a member (404 as `get_member`), the row and its roles in one
    autocommit statement."""
    statement = _member_statement(with_roles=True, lock=False)
    row = await db.fetch_one(statement, {"org_id": org_id, "user_id": user_id})
    if row is None:
        raise NotFound(_NO_MEMBER)
    return public(row, role_names(row))


async def get_member(
    *, session: AsyncSession, org_id: str, user_id: str, lock: bool = False
) -> User:
    """A user who is a member of `org_id` and not deleted; anything else is 404."""
    statement = _member_statement(with_roles=False, lock=lock)
    row = (await session.execute(statement, {"org_id": org_id, "user_id": user_id})).first()
    if row is None:
        raise NotFound(_NO_MEMBER)
    return row[0]


# --- what changes to an account record -----------------------------------------------------


async def record(session: AsyncSession, action: str, org_id: str | None, user_id: str, **data):
    """The audit entry and event of a change to the user, in the caller's transaction."""
    await activity.record(
        session=session,
        action=action,
        org_id=org_id,
        resource_type="user",
        resource_id=user_id,
        data=data,
    )


async def updated(session: AsyncSession, org_id: str | None, user: User, fields: list[str]):
    """Stamp the change to `fields` and record `user.updated` with the new representation,
    which is returned."""
    user.updated_at = utcnow()
    resource = await representation(session=session, org_id=org_id, user=user)
    await record(session, "user.updated", org_id, user.id, user=resource, changes=fields)
    return resource
