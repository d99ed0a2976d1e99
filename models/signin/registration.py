"""Registration: a new account, and optionally the organization it owns, audited together."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from models.identity import organizations, users
from models.records import activity


async def register(
    *,
    session: AsyncSession,
    email: str,
    display_name: str,
    password_hash: str,
    organization_name: str | None = None,
) -> dict:
    """Create the user (and, with `organization_name`, an organization they own), in the
    caller's transaction, with the audit entries of both. Returns the body of the answer:
    `user` (as the API shows them) and, when one was created, `organization`."""
    user = await users.create(
        session=session, email=email, display_name=display_name, password_hash=password_hash
    )
    result: dict = {}
    roles: list[str] = []
    if organization_name:
        org = await organizations.create(session=session, name=organization_name, owner_id=user.id)
        user.org_id, roles = org.id, ["owner"]
        result["organization"] = organizations.public(org)
        await activity.record(
            session=session,
            action="organization.created",
            org_id=org.id,
            resource_type="organization",
            resource_id=org.id,
            data={"name": org.name},
            actor_user_id=user.id,
        )
    result = {"user": users.public(user, roles), **result}
    await activity.record(
        session=session,
        action="user.created",
        org_id=user.org_id,
        resource_type="user",
        resource_id=user.id,
        data={"user": result["user"]},
        actor_user_id=user.id,
    )
    return result
