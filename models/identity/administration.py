"""Administering a member's account: profile and status changes, reactivation, unlocking and
deletion by someone who holds every permission the member holds."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from models.identity import closure, lockout, roles, users
from models.identity.profiles import apply_profile
from models.identity.tables import User
from tessera.core.errors import Conflict, PermissionDenied
from tessera.core.permissions import ADMIN


async def ensure_may_administer(
    *, session: AsyncSession, org_id: str, user: User, actor_permissions: set[str]
) -> None:
    """No escalation: changing, shutting out or deleting a user needs every permission they hold
    (an admin holds all), so a limited administrator cannot act against an owner."""
    if ADMIN in actor_permissions:
        return
    _, held = await roles.member_access(
        session=session, org_id=org_id, user_id=user.id, department=user.department
    )
    if any(not roles.grants(actor_permissions, permission) for permission in held):
        raise PermissionDenied("You may only administer users whose permissions you also hold.")


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
            await closure.shut_out(session=session, user=user, status="deactivated")
        else:
            user.status = status
    apply_profile(user, changes)
    return await users.updated(session, org_id, user, sorted(changes))


async def reactivate(*, session: AsyncSession, org_id: str, user: User) -> dict:
    if user.status == "active":
        return await users.representation(session=session, org_id=org_id, user=user)
    user.status = "active"
    return await users.updated(session, org_id, user, ["status"])


async def unlock(*, session: AsyncSession, org_id: str, user: User) -> dict:
    """Forget the failed sign-ins of the user's email from every address; a `locked` user
    becomes active."""
    cleared = await lockout.clear_failures(session=session, email=user.email)
    await users.record(session, "user.unlocked", org_id, user.id, cleared_addresses=cleared)
    if user.status != "locked":
        return await users.representation(session=session, org_id=org_id, user=user)
    user.status = "active"
    return await users.updated(session, org_id, user, ["status"])


async def delete_member(
    *, session: AsyncSession, org_id: str, user: User, actor_id: str | None
) -> None:
    """Soft delete by an administrator; their own account goes through
    `closure.close_own_account`."""
    if user.id == actor_id:
        raise Conflict("Close your own account with DELETE /v1/users/me.")
    await closure.soft_delete(session=session, org_id=org_id, user=user)
