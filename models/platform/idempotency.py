"""Stored responses of POST requests made with an `Idempotency-Key`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel

from models.common.base import jsonb_field, timestamp_field, utcnow


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    # Keys are scoped per principal (user, API key, or client IP for anonymous calls).
    principal: str = Field(primary_key=True, max_length=100)
    key: str = Field(primary_key=True, max_length=255)
    method: str = Field(max_length=10)
    path: str = Field(max_length=2000)
    request_hash: str = Field(max_length=64)
    status_code: int | None = None
    headers: dict = jsonb_field()
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = timestamp_field(default_factory=utcnow, index=True)
    completed_at: datetime | None = timestamp_field(default=None)
