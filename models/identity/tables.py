"""The identity tables: users, organizations (tenants), memberships, invitations, roles and
role grants.

They sit below every service module of the domain, so a service reaches any table without
importing another service module: the modules of `models.identity` import each other in one
direction only (`users` → `members` → `organizations`, say), never in a circle.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.common.base import id_field, jsonb_field, text_array_field, timestamp_field, utcnow


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


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: str = id_field("org")
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

    id: str = id_field("inv")
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    email: str = Field(max_length=320)
    role: str = Field(max_length=100)
    token_hash: str = Field(unique=True, max_length=64)
    invited_by: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    expires_at: datetime = timestamp_field()
    accepted_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)


class Role(SQLModel, table=True):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: str = id_field("rol")
    # NULL for the built-in roles every organization shares.
    org_id: str | None = Field(
        default=None, foreign_key="organizations.id", index=True, ondelete="CASCADE"
    )
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=500)
    permissions: list[str] = text_array_field()
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


class RoleGrant(SQLModel, table=True):
    """A member holds a role in an organization, optionally only while in one department."""

    __tablename__ = "role_grants"
    __table_args__ = (UniqueConstraint("org_id", "user_id", "role_id"),)

    id: str = id_field("grt")
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    role_id: str = Field(foreign_key="roles.id", ondelete="CASCADE")
    department: str | None = Field(default=None, max_length=100)
    created_at: datetime = timestamp_field(default_factory=utcnow)
