"""Operator tasks run from the command line."""

from __future__ import annotations

from sqlalchemy import func, select

from models.identity import organizations, users
from tessera.core import db, passwords


async def create_admin(
    *, email: str, password: str, org_name: str, only_if_empty: bool = False
) -> str | None:
    """Create a verified user owning a new organization; returns the user id (None when
    `only_if_empty` and users exist)."""
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
            return user.id
    finally:
        await db.dispose()
