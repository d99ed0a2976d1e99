"""Single-use, expiring tokens sent by email: password reset, email verification and change."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import timestamp_field, utcnow
from tessera.ids import new_id

PURPOSES = ("password_reset", "email_verify", "email_change")


class EmailToken(SQLModel, table=True):
    __tablename__ = "email_tokens"

    id: str = Field(default_factory=lambda: new_id("etk"), primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    purpose: str = Field(max_length=20)
    token_hash: str = Field(unique=True, max_length=64)
    new_email: str | None = Field(default=None, max_length=320)
    expires_at: datetime = timestamp_field()
    used_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)
