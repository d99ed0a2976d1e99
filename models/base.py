"""Column helpers shared by every table."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp_field(**kwargs) -> datetime:
    """A timezone-aware timestamp column (timestamptz)."""
    return Field(sa_type=DateTime(timezone=True), **kwargs)


def rfc3339(value: datetime | None) -> str | None:
    """UTC, second precision or better, with a `Z` (the API's timestamp format)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
