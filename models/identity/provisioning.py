"""Provisioning: an administrator creates users in their organization, one at a time or as a
batch (`POST /v1/users`, `POST /v1/users/batch`)."""

from __future__ import annotations

import asyncio

from sqlmodel.ext.asyncio.session import AsyncSession

from models.identity import members, roles, users
from models.identity.tables import Role
from tessera.core import db
from tessera.core.errors import ApiError, Detail, ValidationFailed

DEFAULT_ROLES = ["viewer"]


async def _roles_to_grant(
    session: AsyncSession, org_id: str, names: list[str], actor_permissions: set[str]
) -> list[Role]:
    found, unknown = [], []
    for index, name in enumerate(names):
        role = await roles.find_role(session=session, org_id=org_id, name=name)
        if role is None:
            unknown.append(Detail(f"roles.{index}", "UNKNOWN_ROLE", f"No role named '{name}'."))
        else:
            found.append(role)
    if unknown:
        raise ValidationFailed("Some roles do not exist.", unknown)
    # A user the caller creates, and may know the password of, holds no more than the caller.
    roles.ensure_may_confer(
        actor_permissions, {p for role in found for p in roles.role_permissions(role)}
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
    """A new user who is a member of `org_id` holding `item["roles"]` (default viewer).
    `password_hash`: `users.hash_new_password` of the item's password, done before the unit of
    work."""
    granted = await _roles_to_grant(
        session, org_id, item.get("roles") or DEFAULT_ROLES, actor_permissions
    )
    department = item.get("department")
    user = await users.create(
        session=session,
        email=item["email"],
        display_name=item["display_name"],
        password_hash=password_hash,
        org_id=org_id,
        department=department.strip() if department else None,
    )
    await members.add_member(session=session, org_id=org_id, user_id=user.id, role=granted[0].name)
    for role in granted[1:]:
        await roles.grant_role(session=session, org_id=org_id, user_id=user.id, role_name=role.name)
    resource = users.public(user, sorted({role.name for role in granted}))
    await users.record(session, "user.created", org_id, user.id, user=resource)
    return resource


def _error_result(index: int, error: ApiError) -> dict:
    body = {"code": error.code, "message": error.message}
    return {
        "index": index,
        "status": "error",
        "error": {**body, "details": [d.as_dict() for d in error.details]},
    }


async def provision_committing_each(
    *, org_id: str, items: list[dict], actor_permissions: set[str]
) -> list[dict]:
    """Provision each item in a transaction of its own, committed before the next, so one
    failure leaves the others created; returns one result per item, in order."""

    async def hashed(item: dict) -> str | ApiError | None:
        try:
            return await users.hash_new_password(item.get("password"), email=item["email"])
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
