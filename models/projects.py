"""Projects: organization-scoped resources with an owner (the model for ownership rules)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import timestamp_field, utcnow
from tessera.ids import new_id


class Project(SQLModel, table=True):
    __tablename__ = "projects"

    id: str = Field(default_factory=lambda: new_id("prj"), primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    owner_id: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    title: str = Field(max_length=200)
    status: str = Field(default="active", max_length=20)
    created_at: datetime = timestamp_field(default_factory=utcnow, index=True)
    updated_at: datetime = timestamp_field(default_factory=utcnow)
