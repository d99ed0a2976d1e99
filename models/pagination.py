"""List queries: sort, limit, and cursor (keyset) or offset pagination with a total count.

A cursor is an opaque token naming the sort and the last row's (sort value, id), so the next page
starts exactly after it even while rows are inserted; `offset` still works but is deprecated.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import DateTime, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.errors import Detail, ValidationFailed

_TOTAL = "pagination_total"  # the page's extra column


@dataclass
class Page:
    items: list[Any]
    total: int
    limit: int
    offset: int
    next_cursor: str | None

    def envelope(self, render) -> dict:
        return {
            "data": [render(item) for item in self.items],
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
            "next_cursor": self.next_cursor,
            "has_more": self.next_cursor is not None,
        }


def _encode(sort: str, value: Any, row_id: str) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = orjson.dumps([sort, value, row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, sort: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        cursor_sort, value, row_id = orjson.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error, TypeError, orjson.JSONDecodeError):
        raise ValidationFailed(
            "The cursor is not valid.", [Detail("cursor", "INVALID_VALUE", "Unknown cursor.")]
        ) from None
    if cursor_sort != sort:
        raise ValidationFailed(
            "The cursor belongs to another sort order.",
            [Detail("cursor", "INVALID_VALUE", "Use the same `sort` as the page it came from.")],
        )
    return value, row_id


async def paginate(
    session: AsyncSession | AsyncConnection,
    stmt,
    *,
    model,
    sort: str,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    count=None,
) -> Page:
    """`stmt` selects `model` (or columns, which a Core connection reads faster than an ORM
    session) with every filter applied; `sort` is `field` or `-field`. `count`: a cheaper
    statement giving the same number as counting `stmt`'s rows, when there is one. One round
    trip: the total rides along as a column of the page (an uncorrelated subquery, which
    PostgreSQL evaluates once); only a page past the end, which has no row to carry it, counts
    on its own."""
    descending = sort.startswith("-")
    column = getattr(model, sort.lstrip("-"))
    id_column = model.id
    if count is None:
        count = select(func.count()).select_from(stmt.subquery())
    # Rows of one entity (or column) come back as that entity; wider rows stay rows.
    single = len(stmt.column_descriptions) == 1
    if cursor:
        value, row_id = _decode(cursor, sort)
        if isinstance(column.type, DateTime) and isinstance(value, str):
            value = datetime.fromisoformat(value)
        if descending:
            stmt = stmt.where(or_(column < value, (column == value) & (id_column < row_id)))
        else:
            stmt = stmt.where(or_(column > value, (column == value) & (id_column > row_id)))
        offset = 0
    order = (column.desc(), id_column.desc()) if descending else (column.asc(), id_column.asc())
    page = stmt.order_by(*order).offset(offset).limit(limit + 1)
    page = page.add_columns(count.scalar_subquery().label(_TOTAL))
    rows = list((await session.execute(page)).all())
    if rows:
        total = rows[0][-1]
    elif offset or cursor:
        total = (await session.execute(count)).scalar_one()
    else:
        total = 0  # the first page is empty: so is the whole list
    has_more = len(rows) > limit
    items = [row[0] if single else row for row in rows[:limit]]
    next_cursor = None
    if has_more and items:
        last = items[-1]
        next_cursor = _encode(sort, getattr(last, sort.lstrip("-")), last.id)
    return Page(items, total, limit, offset, next_cursor)
