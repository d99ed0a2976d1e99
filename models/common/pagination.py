"""List queries: sort, limit, and cursor (keyset) or offset pagination with a total count.

A cursor is an opaque token naming the sort and the last row's (sort value, id), so the next page
starts exactly after it even while rows are inserted; `offset` still works but is deprecated.
Cursors are signed with the deployment's secret and bound to the list they came from (its path
and filters, the `scope`), so one a client edits or carries to another list is a 422, never a
value that reaches SQL; the sort value is checked against the column's type on the way back in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Boolean, DateTime, Integer, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.core.errors import Detail, ValidationFailed
from tessera.core.tokens import server_secret

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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=1)
def _cursor_key() -> bytes:
    # Derived once: without TESSERA_SECRET_KEY the server secret serializes the signing key.
    return hashlib.sha256(b"tessera-cursor:" + server_secret()).digest()


def _mac(payload: bytes, scope: str) -> bytes:
    return hmac.digest(_cursor_key(), payload + b"\x00" + scope.encode(), "sha256")[:16]


def _encode(sort: str, value: Any, row_id: str, scope: str) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    payload = orjson.dumps([sort, value, row_id])
    return f"{_b64(payload)}.{_b64(_mac(payload, scope))}"


def _invalid(message: str, hint: str) -> ValidationFailed:
    return ValidationFailed(message, [Detail("cursor", "INVALID_VALUE", hint)])


def _typed(value: Any, column_type) -> Any:
    """The cursor's sort value as the column holds it, or ValueError."""
    if isinstance(column_type, DateTime):
        if not isinstance(value, str):
            raise ValueError
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed
    if isinstance(column_type, Boolean):
        if not isinstance(value, bool):
            raise ValueError
        return value
    if isinstance(column_type, Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
        return value
    if value is not None and not isinstance(value, str):
        raise ValueError
    return value


def _decode(cursor: str, sort: str, scope: str, column_type) -> tuple[Any, str]:
    unknown = _invalid("The cursor is not valid.", "Use a `next_cursor` this list returned.")
    try:
        encoded, _, signature = cursor.partition(".")
        payload = _unb64(encoded)
        if not hmac.compare_digest(_unb64(signature), _mac(payload, scope)):
            raise unknown
        cursor_sort, value, row_id = orjson.loads(payload)
    except (ValueError, binascii.Error, TypeError, orjson.JSONDecodeError):
        raise unknown from None
    if cursor_sort != sort:
        raise _invalid(
            "The cursor belongs to another sort order.",
            "Use the same `sort` as the page it came from.",
        )
    try:
        if not isinstance(row_id, str):
            raise ValueError
        return _typed(value, column_type), row_id
    except ValueError:
        raise unknown from None


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


def page_params(
    *, model, sort: str, limit: int, offset: int, cursor: str | None, scope: str = ""
) -> dict:
    """`page_statement`'s values for a request: one row more than `limit` tells whether another
    page follows; a cursor replaces the offset. `scope` names the list and its filters (see the
    module's docstring)."""
    if not cursor:
        return {"page_offset": offset, "page_limit": limit + 1}
    column_type = getattr(model, sort.lstrip("-")).type
    value, row_id = _decode(cursor, sort, scope, column_type)
    return {"page_offset": 0, "page_limit": limit + 1, "after_value": value, "after_id": row_id}


def page_of(
    rows: list,
    *,
    total: int | None,
    sort: str,
    limit: int,
    params: dict,
    single: bool,
    scope: str = "",
):
    """The `Page` of `page_statement`'s rows. `total`: the count, when the rows could not carry
    it (a page past the end; None for the first page, whose emptiness says 0); `scope`: as
    given to `page_params`."""
    has_more = len(rows) > limit
    items = [row[0] if single else row for row in rows[:limit]]
    if rows:
        total = rows[0][-1]
    next_cursor = None
    if has_more and items:
        last = items[-1]
        value = getattr(last, sort.lstrip("-"))
        next_cursor = _encode(sort, value, last.id, scope)
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
    scope: str = "",
) -> Page:
    """A page of `stmt` (see `page_statement`; `count`: a cheaper statement giving the same number
    as counting `stmt`'s rows, when there is one). Columns read faster on a Core connection than
    through an ORM session. One round trip, but for a page past the end."""
    if count is None:
        count = select(func.count()).select_from(stmt.subquery())
    params = page_params(
        model=model, sort=sort, limit=limit, offset=offset, cursor=cursor, scope=scope
    )
    page = page_statement(stmt, model=model, sort=sort, after_cursor=bool(cursor), count=count)
    rows = list((await session.execute(page, params)).all())
    total = (await session.execute(count)).scalar_one() if counts_alone(rows, params) else None
    single = len(stmt.column_descriptions) == 1  # an entity (or one column) comes back as such
    return page_of(
        rows, total=total, sort=sort, limit=limit, params=params, single=single, scope=scope
    )
