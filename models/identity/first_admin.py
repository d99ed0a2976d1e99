"""The first organization owner, created from the command line (`tessera create-admin`)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.identity import organizations, users
from models.records import activity
from tessera.core import db, passwords


async def create_admin(
    *, email: str, password: str, org_name: str, only_if_empty: bool = False
) -> str | None:
    """Create a verified user owning a new organization; returns the user id (None when
    `only_if_empty` and users exist). Audited as registration is, with the system (the operator)
    as the actor. Commits on its own."""
    passwords.enforce_policy(password, email=email)
    password_hash = await passwords.hash_password(password)
    try:
        async with db.transaction() as session:
            if (
                only_if_empty
                and (await session.execute(select(func.count(users.User.id)))).scalar_one()
            ):
                return None
            user = await users.create(
                session=session,
                email=email,
                display_name="Administrator",
                password_hash=password_hash,
                email_verified=True,
            )
            org = await organizations.create(session=session, name=org_name, owner_id=user.id)
            user.org_id = org.id
            await _record_creation(session, user, org)
            return user.id
    finally:
        await db.dispose()


async def _record_creation(
    session: AsyncSession, user: users.User, org: organizations.Organization
) -> None:
    await activity.record(
        session=session,
        action="organization.created",
        org_id=org.id,
        resource_type="organization",
        resource_id=org.id,
        data={"name": org.name},
    )
    await activity.record(
        session=session,
        action="user.created",
        org_id=user.org_id,
        resource_type="user",
        resource_id=user.id,
        data={"user": users.public(user, [organizations.OWNER])},
    )


async def first_user(*, session: AsyncSession) -> users.User | None:
    """The user created first: the admin `make run` created."""
    stmt = select(users.User).order_by(users.User.created_at, users.User.id).limit(1)
    return (await session.execute(stmt)).scalars().first()
