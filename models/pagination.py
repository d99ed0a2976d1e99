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
from sqlalchemy import DateTime, Integer, bindparam, func, or_, select
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


def page_statement(stmt, *, model, sort: str, after_cursor: bool, count):
    """`stmt` (selecting `model` or columns, every filter applied) as one page: ordered by `sort`
    (`field` or `-field`) then id, after the cursor's row when `after_cursor`, with the total as
    its last column (`count`, counting `stmt`'s rows or a cheaper statement giving the same
    number; an uncorrelated subquery, which PostgreSQL evaluates once). The page's own values
    are bind parameters (`page_params`), so a list whose filters are too can build this once
    for each sort."""
    descending = sort.startswith("-")
    column = getattr(model, sort.lstrip("-"))
    if after_cursor:
        value, row_id = bindparam("after_value", type_=column.type), bindparam("after_id")
        if descending:
            stmt = stmt.where(or_(column < value, (column == value) & (model.id < row_id)))
        else:
            stmt = stmt.where(or_(column > value, (column == value) & (model.id > row_id)))
    order = (column.desc(), model.id.desc()) if descending else (column.asc(), model.id.asc())
    return (
        stmt.order_by(*order)
        .offset(bindparam("page_offset", type_=Integer))
        .limit(bindparam("page_limit", type_=Integer))
        .add_columns(count.scalar_subquery().label(_TOTAL))
    )


def page_params(*, model, sort: str, limit: int, offset: int, cursor: str | None) -> dict:
    """`page_statement`'s values for a request: one row more than `limit` tells whether another
    page follows; a cursor replaces the offset."""
    if not cursor:
        return {"page_offset": offset, "page_limit": limit + 1}
    value, row_id = _decode(cursor, sort)
    if isinstance(getattr(model, sort.lstrip("-")).type, DateTime) and isinstance(value, str):
        value = datetime.fromisoformat(value)
    return {"page_offset": 0, "page_limit": limit + 1, "after_value": value, "after_id": row_id}


def page_of(rows: list, *, total: int | None, sort: str, limit: int, params: dict, single: bool):
    """The `Page` of `page_statement`'s rows. `total`: the count, when the rows could not carry
    it (a page past the end; None for the first page, whose emptiness says 0)."""
    has_more = len(rows) > limit
    items = [row[0] if single else row for row in rows[:limit]]
    if rows:
        total = rows[0][-1]
    next_cursor = None
    if has_more and items:
        last = items[-1]
        next_cursor = _encode(sort, getattr(last, sort.lstrip("-")), last.id)
    return Page(items, total or 0, limit, params["page_offset"], next_cursor)


def counts_alone(rows: list, params: dict) -> bool:
    """Whether the total must be counted on its own: a page past the end has no row to carry
    it (the first page's emptiness says 0)."""
    return not rows and (params["page_offset"] > 0 or "after_id" in params)


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
    """A page of `stmt` (see `page_statement`; `count`: a cheaper statement giving the same number
    as counting `stmt`'s rows, when there is one). Columns read faster on a Core connection than
    through an ORM session. One round trip, but for a page past the end."""
    if count is None:
        count = select(func.count()).select_from(stmt.subquery())
    params = page_params(model=model, sort=sort, limit=limit, offset=offset, cursor=cursor)
    page = page_statement(stmt, model=model, sort=sort, after_cursor=bool(cursor), count=count)
    rows = list((await session.execute(page, params)).all())
    total = (await session.execute(count)).scalar_one() if counts_alone(rows, params) else None
    single = len(stmt.column_descriptions) == 1  # an entity (or one column) comes back as such
    return page_of(rows, total=total, sort=sort, limit=limit, params=params, single=single)
