"""User accounts, and their administration within an organization.

Administration reaches a user only through the caller's organization (`get_member`): a user of
another tenant, or a soft-deleted one, answers 404 exactly like an id that never existed. Changes
that shut someone out (deactivate, delete) end their sessions in the same transaction and never
leave an organization that has members without an owner.

`models.identity.roles`, `models.identity.organizations` and `models.signin.login` import this
module, so it imports them inside the functions that use them.
"""

from __future__ import annotations

import asyncio
import zoneinfo
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    Index,
    String,
    any_,
    bindparam,
    column,
    exists,
    func,
    or_,
    table,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, jsonb_field, rfc3339, timestamp_field, utcnow
from models.common.pagination import counts_alone, page_of, page_params, page_statement, paginate
from tessera.core import db, passwords
from tessera.core.errors import (
    ApiError,
    Conflict,
    Detail,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

STATUSES = ("active", "deactivated", "locked", "deleted")
DEFAULT_ROLES = ["viewer"]
OWNER = "owner"
EMAIL_TAKEN = "A user with this email already exists."

DEFAULT_PREFERENCES: dict[str, Any] = {
    "theme": "system",
    "language": "en",
    "timezone": "UTC",
    "notifications": {"email": True, "sms": False, "push": False, "in_app": True},
}


class User(SQLModel, table=True):
    __tablename__ = "users"
    # The list's sort orders (id breaks ties), so a page walks an index instead of sorting every
    # member; email order uses the unique index on email.
    __table_args__ = (
        Index("ix_users_created_at_id", "created_at", "id"),
        Index("ix_users_display_name_id", "display_name", "id"),
    )

    id: str = id_field("usr")
    # Lower-cased on write: emails are unique case-insensitively.
    email: str = Field(unique=True, max_length=320)
    display_name: str = Field(max_length=200)
    password_hash: str | None = Field(default=None, max_length=400)
    status: str = Field(default="active", max_length=20)
    email_verified: bool = False
    department: str | None = Field(default=None, max_length=100)
    # The organization the user signs in to by default; membership rows hold the rest.
    org_id: str | None = Field(
        default=None, foreign_key="organizations.id", index=True, ondelete="SET NULL"
    )
    preferences: dict = jsonb_field()
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)
    last_login_at: datetime | None = timestamp_field(default=None)
    deleted_at: datetime | None = timestamp_field(default=None)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _has_control_characters(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


async def get(*, session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


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


async def set_password(*, session: AsyncSession, user_id: str, password_hash: str) -> None:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("The user no longer exists.")
    user.password_hash = password_hash
    user.updated_at = utcnow()


async def confirm_password(user: User, password: str) -> None:
    """422 (not 401: the caller's token is fine, one field is wrong) unless `password` is the
    user's current password."""
    if not await passwords.verify_password(user.password_hash or "", password):
        raise ValidationFailed(
            "The password is wrong.",
            [Detail("password", "INCORRECT", "Does not match the current password.")],
        )


# --- users of an organization ------------------------------------------------------------------


def _grant_applies(grant_department, user_department):
    """A grant limited to a department counts only while the user is in it (as in their token)."""
    return or_(grant_department.is_(None), grant_department == user_department)


def list_query(
    *,
    org_id: str,
    email: str | None = None,
    status: str | None = None,
    role: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    q: str | None = None,
    columns: tuple = (User,),
):
    """The organization's members (not deleted) matching the filters; `columns`: what to read
    of each (the `User` by default)."""
    from models.identity.organizations import Membership
    from models.identity.roles import Role, RoleGrant

    stmt = (
        select(*columns)
        .select_from(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, User.status != "deleted")
    )
    if email:
        stmt = stmt.where(User.email == normalize_email(email))
    if status:
        stmt = stmt.where(User.status == status)
    if role:
        stmt = stmt.where(
            exists().where(
                RoleGrant.user_id == User.id,
                RoleGrant.org_id == org_id,
                Role.id == RoleGrant.role_id,
                Role.name == role,
                _grant_applies(RoleGrant.department, User.department),
            )
        )
    if created_after:
        stmt = stmt.where(User.created_at >= created_after)
    if created_before:
        stmt = stmt.where(User.created_at < created_before)
    if q:
        stmt = stmt.where(
            or_(
                User.email.icontains(q, autoescape=True),
                User.display_name.icontains(q, autoescape=True),
            )
        )
    return stmt


@cache
def _roles_statement():
    from models.identity.roles import Role, RoleGrant

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


@cache
def _member_count_statement():
    """What `list_query(org_id=...)` without filters counts, the cheap way: the organization's
    count of members who are not deleted, which triggers keep (migration 0010). Kept by the
    database and never written here, so not a field of `Organization`."""
    organizations = table("organizations", column("id"), column("member_count"))
    org_id = bindparam("org_id", type_=String)
    return select(organizations.c.member_count).where(organizations.c.id == org_id)


def _roles_held(org_id):
    """A column of the names of the roles the row's user holds in `org_id` (a correlated
    subquery; NULL for none, a name twice when granted twice): `_role_names` reads it."""
    from models.identity.roles import Role, RoleGrant

    return (
        select(func.array_agg(Role.name))
        .select_from(RoleGrant)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(
            RoleGrant.org_id == org_id,
            RoleGrant.user_id == User.id,
            _grant_applies(RoleGrant.department, User.department),
        )
        .scalar_subquery()
        .label("roles")
    )


def _role_names(row) -> list[str]:
    return sorted(set(row.roles or ()))


async def list_page(
    *,
    org_id: str,
    sort: str,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    scope: str = "",
    **filters,
) -> dict:
    """A page of the organization's members with their roles, one round trip (but for a page
    past the end). Unfiltered, the usual case, its statement is built once per sort. `scope`: as
    `models.common.pagination.page_params` takes it."""
    if any(value is not None for value in filters.values()):
        columns = (*PUBLIC_COLUMNS, _roles_held(org_id))
        async with db.autocommit() as conn:  # rows of columns: no ORM session
            page = await paginate(
                conn,
                list_query(org_id=org_id, columns=columns, **filters),
                model=User,
                sort=sort,
                limit=limit,
                offset=offset,
                cursor=cursor,
                scope=scope,
            )
    else:
        params = page_params(
            model=User, sort=sort, limit=limit, offset=offset, cursor=cursor, scope=scope
        )
        params["org_id"] = org_id
        rows = await db.fetch_all(_members_page_statement(sort, bool(cursor)), params)
        total = None
        if counts_alone(rows, params):
            total = (await db.fetch_one(_member_count_statement(), params)).member_count
        page = page_of(
            rows, total=total, sort=sort, limit=limit, params=params, single=False, scope=scope
        )
    return page.envelope(lambda row: public(row, _role_names(row)))


@cache
def _members_page_statement(sort: str, after_cursor: bool):
    """The unfiltered list's page, with the count its organization keeps as the total."""
    org_id = bindparam("org_id", type_=String)
    return page_statement(
        list_query(org_id=org_id, columns=(*PUBLIC_COLUMNS, _roles_held(org_id))),
        model=User,
        sort=sort,
        after_cursor=after_cursor,
        count=_member_count_statement(),
    )


@cache
def _member_statement(*, with_roles: bool, lock: bool):
    """The row of a member of `:org_id`, `:user_id`, who is not deleted; `with_roles`: the
    columns `public` shows and the names of the roles they hold there (a correlated subquery,
    not a second round trip). Built once: building such a statement and its cache key cost
    ~400 µs per request."""
    from models.identity.organizations import Membership

    org_id, user_id = bindparam("org_id", type_=String), bindparam("user_id", type_=String)
    columns: list = [User]
    if with_roles:
        columns = [*PUBLIC_COLUMNS, _roles_held(org_id)]
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
    return public(row, _role_names(row))


async def get_member(
    *, session: AsyncSession, org_id: str, user_id: str, lock: bool = False
) -> User:
    """A user who is a member of `org_id` and not deleted; anything else is 404."""
    statement = _member_statement(with_roles=False, lock=lock)
    row = (await session.execute(statement, {"org_id": org_id, "user_id": user_id})).first()
    if row is None:
        raise NotFound(_NO_MEMBER)
    return row[0]


async def ensure_may_administer(
    *, session: AsyncSession, org_id: str, user: User, actor_permissions: set[str]
) -> None:
    """No escalation: changing, shutting out or deleting a user needs every permission they hold
    (an admin holds all), so a limited administrator cannot act against an owner."""
    from models.identity import roles as access

    if access.ADMIN in actor_permissions:
        return
    _, held = await access.member_access(
        session=session, org_id=org_id, user_id=user.id, department=user.department
    )
    if any(not access.grants(actor_permissions, permission) for permission in held):
        raise PermissionDenied("You may only administer users whose permissions you also hold.")


# --- provisioning ------------------------------------------------------------------------------


async def hash_new_password(password: str | None, *, email: str) -> str | None:
    """The policy first (422, one detail per rule), then argon2id off the event loop."""
    if password is None:
        return None
    passwords.enforce_policy(password, email=email)
    return await passwords.hash_password(password)


async def _roles_to_grant(
    session: AsyncSession, org_id: str, names: list[str], actor_permissions: set[str]
) -> list:
    from models.identity import roles as access

    found, unknown = [], []
    for index, name in enumerate(names):
        role = await access.find_role(session=session, org_id=org_id, name=name)
        if role is None:
            unknown.append(Detail(f"roles.{index}", "UNKNOWN_ROLE", f"No role named '{name}'."))
        else:
            found.append(role)
    if unknown:
        raise ValidationFailed("Some roles do not exist.", unknown)
    # A user the caller creates, and may know the password of, holds no more than the caller.
    access.ensure_may_confer(
        actor_permissions, {p for role in found for p in access.role_permissions(role)}
    )
    return found


async def provision(
    *,
    session: AsyncSession,
    org_id: str,
    item: dict,
    password_hash: str | None,
    actor_permissions: set[str],
) -> dict:
    """A new user who is a member of `org_id` holding `item["roles"]` (default viewer)."""
    from models.identity import organizations
    from models.identity import roles as access

    roles = await _roles_to_grant(
        session, org_id, item.get("roles") or DEFAULT_ROLES, actor_permissions
    )
    department = item.get("department")
    user = await create(
        session=session,
        email=item["email"],
        display_name=item["display_name"],
        password_hash=password_hash,
        org_id=org_id,
        department=department.strip() if department else None,
    )
    await organizations.add_member(
        session=session, org_id=org_id, user_id=user.id, role=roles[0].name
    )
    for role in roles[1:]:
        await access.grant_role(
            session=session, org_id=org_id, user_id=user.id, role_name=role.name
        )
    resource = public(user, sorted({role.name for role in roles}))
    await _record(session, "user.created", org_id, user.id, user=resource)
    return resource


def _error_result(index: int, error: ApiError) -> dict:
    body = {"code": error.code, "message": error.message}
    return {
        "index": index,
        "status": "error",
        "error": {**body, "details": [d.as_dict() for d in error.details]},
    }


async def provision_many(
    *, org_id: str, items: list[dict], actor_permissions: set[str]
) -> list[dict]:
    """Provision each item in its own transaction, so one failure leaves the others created;
    returns one result per item, in order."""
    from tessera.core import db

    async def hashed(item: dict) -> str | ApiError | None:
        try:
            return await hash_new_password(item.get("password"), email=item["email"])
        except ApiError as error:
            return error

    # Hashing dominates the cost; the hashing pool runs several at once.
    hashes = await asyncio.gather(*(hashed(item) for item in items))
    results = []
    for index, (item, password_hash) in enumerate(zip(items, hashes, strict=True)):
        if isinstance(password_hash, ApiError):
            results.append(_error_result(index, password_hash))
            continue
        try:
            async with db.transaction() as session:
                user = await provision(
                    session=session,
                    org_id=org_id,
                    item=item,
                    password_hash=password_hash,
                    actor_permissions=actor_permissions,
                )
        except ApiError as error:
            results.append(_error_result(index, error))
        else:
            results.append({"index": index, "status": "created", "user": user})
    return results


# --- changes -----------------------------------------------------------------------------------


def _apply_profile(user: User, changes: dict) -> None:
    if "display_name" in changes:
        user.display_name = changes["display_name"].strip()
    if "department" in changes:
        department = changes["department"]
        user.department = department.strip() if department else None


async def update(
    *, session: AsyncSession, org_id: str, user: User, changes: dict, actor_id: str | None
) -> dict:
    """Apply `display_name`, `department` and `status` (active or deactivated) from `changes`;
    returns the new representation."""
    status = changes.get("status")
    if status is not None and status != user.status:
        if user.id == actor_id:
            raise Conflict("Change your own account's status through /v1/users/me.")
        if status == "deactivated":
            await _shut_out(session, user, "deactivated")
        else:
            user.status = status
    _apply_profile(user, changes)
    return await _updated(session, org_id, user, sorted(changes))


async def update_self(
    *,
    session: AsyncSession,
    org_id: str | None,
    user: User,
    changes: dict,
    may_set_department: bool,
) -> dict:
    """The signed-in user's own profile. The department decides which department-limited role
    grants apply, so choosing it is for those who may set anyone's (`users:write`)."""
    changes_department = "department" in changes and changes["department"] != user.department
    if changes_department and not may_set_department:
        raise PermissionDenied("Your department is managed by your organization's administrators.")
    _apply_profile(user, changes)
    return await _updated(session, org_id, user, sorted(changes))


async def reactivate(*, session: AsyncSession, org_id: str, user: User) -> dict:
    if user.status == "active":
        return await representation(session=session, org_id=org_id, user=user)
    user.status = "active"
    return await _updated(session, org_id, user, ["status"])


async def unlock(*, session: AsyncSession, org_id: str, user: User) -> dict:
    """Forget the failed sign-ins of the user's email from every address; a `locked` user
    becomes active."""
    from models.signin import login as auth

    cleared = await auth.clear_failures(session=session, email=user.email)
    await _record(session, "user.unlocked", org_id, user.id, cleared_addresses=cleared)
    if user.status != "locked":
        return await representation(session=session, org_id=org_id, user=user)
    user.status = "active"
    return await _updated(session, org_id, user, ["status"])


async def deactivate_self(*, session: AsyncSession, org_id: str | None, user: User) -> None:
    await _shut_out(session, user, "deactivated")
    await _updated(session, org_id, user, ["status"])


async def delete_member(
    *, session: AsyncSession, org_id: str, user: User, actor_id: str | None
) -> None:
    """Soft delete by an administrator; their own account goes through `delete_self`."""
    if user.id == actor_id:
        raise Conflict("Close your own account with DELETE /v1/users/me.")
    await soft_delete(session=session, org_id=org_id, user=user)


async def soft_delete(*, session: AsyncSession, org_id: str | None, user: User) -> None:
    """The account stays (its email remains taken, its history attributable) but cannot sign
    in and is hidden everywhere."""
    await _shut_out(session, user, "deleted")
    user.updated_at = utcnow()
    await _record(session, "user.deleted", org_id, user.id, mode="soft")


async def hard_delete(*, session: AsyncSession, org_id: str | None, user: User) -> None:
    """Erase the account. Memberships, role grants, sessions, refresh tokens, MFA factors and
    email tokens go with it (ON DELETE CASCADE); rows that only mention it keep a NULL."""
    from models.signin import login as auth

    await _shut_out(session, user, "deleted")  # drops the sessions from the revocation cache too
    await auth.clear_failures(session=session, email=user.email)
    await _record(session, "user.deleted", org_id, user.id, mode="hard")
    await session.delete(user)
    await session.flush()


async def _shut_out(session: AsyncSession, user: User, status: str) -> None:
    from models.signin import login as auth

    await _ensure_organizations_keep_an_owner(session, user.id)
    user.status = status
    if status == "deleted":
        user.deleted_at = utcnow()
    await auth.revoke_user_sessions(session=session, user_id=user.id, reason=f"user_{status}")


async def _ensure_organizations_keep_an_owner(session: AsyncSession, user_id: str) -> None:
    """409 when the user is the last active owner of an organization that has other members.
    The owner grants are locked, as `models.identity.organizations` does for membership changes."""
    from models.identity.organizations import Membership
    from models.identity.roles import Role, RoleGrant

    is_owner_grant = (
        RoleGrant.department.is_(None),
        Role.org_id.is_(None),
        Role.name == OWNER,
    )
    owned = (
        select(RoleGrant.org_id)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(RoleGrant.user_id == user_id, *is_owner_grant)
    )
    for org_id in (await session.exec(owned)).all():
        other_owners = (
            select(RoleGrant.user_id)
            .join(Role, Role.id == RoleGrant.role_id)
            .join(User, User.id == RoleGrant.user_id)
            .where(
                RoleGrant.org_id == org_id,
                RoleGrant.user_id != user_id,
                User.status == "active",
                *is_owner_grant,
            )
            .with_for_update(of=RoleGrant)
        )
        if (await session.exec(other_owners)).first() is not None:
            continue
        other_members = (
            select(Membership.user_id)
            .join(User, User.id == Membership.user_id)
            .where(
                Membership.org_id == org_id,
                Membership.user_id != user_id,
                User.status != "deleted",
            )
            .limit(1)
        )
        if (await session.exec(other_members)).first() is not None:
            raise Conflict(
                "This is the last owner of an organization that has other members; "
                "make another member owner first."
            )


async def _updated(session: AsyncSession, org_id: str | None, user: User, fields: list[str]):
    user.updated_at = utcnow()
    resource = await representation(session=session, org_id=org_id, user=user)
    await _record(session, "user.updated", org_id, user.id, user=resource, changes=fields)
    return resource


async def _record(session: AsyncSession, action: str, org_id: str | None, user_id: str, **data):
    from models.records import activity  # tessera.activity -> models -> this module

    await activity.record(
        session=session,
        action=action,
        org_id=org_id,
        resource_type="user",
        resource_id=user_id,
        data=data,
    )


# --- preferences -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def preferences_of(user: User) -> dict[str, Any]:
    """The stored preferences over the defaults, so settings added later have a value."""
    stored = user.preferences or {}
    merged = {key: stored.get(key, default) for key, default in DEFAULT_PREFERENCES.items()}
    merged["notifications"] = {
        **DEFAULT_PREFERENCES["notifications"],
        **(stored.get("notifications") or {}),
    }
    return merged


def replace_preferences(*, user: User, preferences: dict) -> dict[str, Any]:
    zones = _time_zones()
    # Without a time zone database on the host (no tzdata) any well-formed name is kept.
    if zones and preferences["timezone"] not in zones:
        raise ValidationFailed(
            "The time zone is unknown.",
            [Detail("timezone", "INVALID_VALUE", "Use an IANA name such as Europe/London.")],
        )
    user.preferences = {**preferences, "notifications": dict(preferences["notifications"])}
    user.updated_at = utcnow()
    return preferences_of(user)
