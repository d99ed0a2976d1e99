"""Long-running work answered with 202: its status, progress and result."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import jsonb_field, timestamp_field, utcnow
from tessera.ids import new_id


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: str = Field(default_factory=lambda: new_id("job"), primary_key=True)
    org_id: str | None = Field(default=None, max_length=40, index=True)
    kind: str = Field(max_length=50)
    status: str = Field(default="queued", max_length=20)  # queued | running | succeeded | failed
    progress: int = 0  # percent
    params: dict = jsonb_field()
    result: dict = jsonb_field()
    error: str | None = Field(default=None, max_length=500)
    created_by: str | None = Field(default=None, max_length=40)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)
    finished_at: datetime | None = timestamp_field(default=None)
