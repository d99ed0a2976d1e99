"""Organizations (tenants), their members and invitations."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from models.base import rfc3339, timestamp_field, utcnow
from tessera.ids import new_id


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: str = Field(default_factory=lambda: new_id("org"), primary_key=True)
    name: str = Field(max_length=200)
    require_mfa: bool = False
    # Rate-limit tier (free, basic, pro, enterprise); the default comes from settings.
    tier: str | None = Field(default=None, max_length=20)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"

    org_id: str = Field(foreign_key="organizations.id", primary_key=True, ondelete="CASCADE")
    user_id: str = Field(foreign_key="users.id", primary_key=True, index=True, ondelete="CASCADE")
    created_at: datetime = timestamp_field(default_factory=utcnow)


class Invitation(SQLModel, table=True):
    __tablename__ = "invitations"

    id: str = Field(default_factory=lambda: new_id("inv"), primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    email: str = Field(max_length=320)
    role: str = Field(max_length=100)
    token_hash: str = Field(unique=True, max_length=64)
    invited_by: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    expires_at: datetime = timestamp_field()
    accepted_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)


async def create(*, session: AsyncSession, name: str, owner_id: str) -> Organization:
    """A new organization whose creator is a member holding the `owner` role."""
    org = Organization(name=name.strip())
    session.add(org)
    await session.flush()
    await add_member(session=session, org_id=org.id, user_id=owner_id, role="owner")
    return org


async def add_member(*, session: AsyncSession, org_id: str, user_id: str, role: str) -> None:
    from models import access

    session.add(Membership(org_id=org_id, user_id=user_id))
    await session.flush()
    await access.grant_role(session=session, org_id=org_id, user_id=user_id, role_name=role)


async def is_member(*, session: AsyncSession, org_id: str, user_id: str) -> bool:
    return await session.get(Membership, (org_id, user_id)) is not None


def public(org: Organization) -> dict:
    return {
        "id": org.id,
        "name": org.name,
        "require_mfa": org.require_mfa,
        "created_at": rfc3339(org.created_at),
        "updated_at": rfc3339(org.updated_at),
    }
