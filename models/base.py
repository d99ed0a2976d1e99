"""Column helpers shared by every table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, String
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp_field(**kwargs) -> Any:
    """A timezone-aware timestamp column (timestamptz)."""
    return Field(sa_type=DateTime(timezone=True), **kwargs)


def text_array_field(**kwargs) -> Any:
    return Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False, **kwargs))


def jsonb_field(**kwargs) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, **kwargs))


def rfc3339(value: datetime | None) -> str | None:
    """UTC with a `Z` (the API's timestamp format)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
