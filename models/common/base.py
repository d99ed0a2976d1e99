"""Column helpers shared by every table, and the tenant-scoped lookup by id."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Column, DateTime, String
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.core.errors import NotFound
from tessera.core.ids import new_id

Row = TypeVar("Row")


def factory(make: Callable[[], Any]) -> Callable[[], Any]:
    """`make` as a field's default factory, its signature declared up front. Pydantic (2.14)
    asks `inspect.signature` whether a factory takes the validated data each time it calls one,
    that is for every field of every row built: ~15 µs each, a fifth of building a row
    (`make bench`, py-spy). A declared `__signature__` answers at once."""

    def make_default() -> Any:
        return make()

    make_default.__signature__ = inspect.Signature()  # type: ignore[attr-defined]
    return make_default


def _now() -> datetime:
    return datetime.now(UTC)


utcnow = factory(_now)


def id_field(prefix: str) -> Any:
    """The primary key: a new `<prefix>_<ULID>` for each row."""
    return Field(default_factory=factory(functools.partial(new_id, prefix)), primary_key=True)


def timestamp_field(**kwargs) -> Any:
    """A timezone-aware timestamp column (timestamptz)."""
    return Field(sa_type=DateTime(timezone=True), **kwargs)


def text_array_field(**kwargs) -> Any:
    column = Column(ARRAY(String), nullable=False, **kwargs)
    return Field(default_factory=factory(list), sa_column=column)


def jsonb_field(**kwargs) -> Any:
    return Field(default_factory=factory(dict), sa_column=Column(JSONB, nullable=False, **kwargs))


async def get_in_org(
    session: AsyncSession,
    model: type[Row],
    row_id: str,
    *,
    org_id: str,
    missing: str,
    lock: bool = False,
) -> Row:
    """The `model` row with this id when it belongs to `org_id`. Another tenant's id answers
    404 with `missing`, exactly like an unknown one, so ids cannot be probed across tenants."""
    row = await session.get(model, row_id, with_for_update=lock)
    if row is None or row.org_id != org_id:
        raise NotFound(missing)
    return row


def rfc3339(value: datetime | None) -> str | None:
    """UTC with a `Z` (the API's timestamp format)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
