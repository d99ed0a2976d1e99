"""API keys: shown once, stored as a hash, scoped to an organization and a set of permissions."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import text_array_field, timestamp_field, utcnow
from tessera.ids import new_id


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=200)
    environment: str = Field(default="live", max_length=10)
    prefix: str = Field(max_length=32)
    key_hash: str = Field(unique=True, max_length=64)
    scopes: list[str] = text_array_field()
    allowed_ips: list[str] = text_array_field()
    expires_at: datetime | None = timestamp_field(default=None)
    last_used_at: datetime | None = timestamp_field(default=None)
    created_by: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_field(default_factory=utcnow)
    revoked_at: datetime | None = timestamp_field(default=None)
