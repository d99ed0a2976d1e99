"""User accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.base import jsonb_field, rfc3339, timestamp_field, utcnow
from tessera.errors import Conflict, NotFound
from tessera.ids import new_id

STATUSES = ("active", "deactivated", "locked", "deleted")

DEFAULT_PREFERENCES: dict[str, Any] = {
    "theme": "system",
    "language": "en",
    "timezone": "UTC",
    "notifications": {"email": True, "sms": False, "push": False, "in_app": True},
}


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=lambda: new_id("usr"), primary_key=True)
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
    created_at: datetime = timestamp_field(default_factory=utcnow, index=True)
    updated_at: datetime = timestamp_field(default_factory=utcnow)
    last_login_at: datetime | None = timestamp_field(default=None)
    deleted_at: datetime | None = timestamp_field(default=None)


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def get(*, session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


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
    if await get_by_email(session=session, email=email) is not None:
        raise Conflict("A user with this email already exists.")
    user = User(
        email=normalize_email(email),
        display_name=display_name.strip(),
        password_hash=password_hash,
        org_id=org_id,
        department=department,
        email_verified=email_verified,
        preferences=DEFAULT_PREFERENCES,
    )
    session.add(user)
    await session.flush()
    return user


def public(user: User, roles: list[str]) -> dict[str, Any]:
    """The API representation; never includes secrets."""
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
