"""Small response helpers that handlers share: created/ETag responses, list pages and If-Match
checks."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import orjson
from connexion.context import scope as _current_scope
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.pagination import paginate
from tessera.core.errors import Detail, PreconditionFailed, ValidationFailed
from tessera.core.request_context import request_header


def etag_of(resource: dict) -> str:
    """A strong validator derived from the representation itself, so it changes exactly when
    anything a client can see changes."""
    digest = hashlib.sha256(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'


def if_match() -> str | None:
    return request_header(b"if-match")


def check_if_match(current: dict) -> None:
    """412 when the client's `If-Match` names a representation other than the current one."""
    wanted = if_match()
    if wanted is None or wanted.strip() == "*":
        return
    candidates = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
    if etag_of(current) not in candidates:
        raise PreconditionFailed("The resource has changed since it was read; fetch it again.")


_PAGING_PARAMETERS = frozenset({"cursor", "limit", "offset"})


def list_scope() -> str:
    """What a list's cursor is bound to: the path and every filter and sort of the request, in a
    canonical order; paging parameters aside, which change from page to page."""
    current = _current_scope._get_current_object()
    pairs = sorted(
        (name, value)
        for name, value in parse_qsl(current.get("query_string", b"").decode("latin-1"))
        if name not in _PAGING_PARAMETERS
    )
    return current["path"] + "?" + urlencode(pairs)


def one(resource: dict, status: int = 200, headers: dict | None = None):
    """`{"data": resource}` with its ETag."""
    return {"data": resource}, status, {"ETag": etag_of(resource), **(headers or {})}


def created(resource: dict, location: str):
    return one(resource, 201, {"Location": location})


async def listing(
    session: AsyncSession,
    query,
    *,
    model,
    render,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    sort: str = "-created_at",
):
    """A list response: `query` paginated as `models.common.pagination.paginate` does (the list
    operations' shared `limit`, `offset`, `cursor` and `sort`), each row shown by `render`."""
    page = await paginate(
        session,
        query,
        model=model,
        sort=sort,
        limit=limit,
        offset=offset,
        cursor=cursor,
        scope=list_scope(),
    )
    return page.envelope(render), 200


def parse_datetime(value: str | None, field: str = "date") -> datetime | None:
    """Connexion validates `format: date-time` query values but hands them over as strings."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        raise ValidationFailed(
            "A date-time parameter is invalid.",
            [Detail(field, "INVALID_FORMAT", "Use RFC 3339, e.g. 2026-11-23T12:00:00Z.")],
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def created_between(after: str | None, before: str | None) -> dict[str, datetime | None]:
    """A list's `created_after` and `created_before` filters, parsed; an error names the field."""
    return {
        "created_after": parse_datetime(after, "created_after"),
        "created_before": parse_datetime(before, "created_before"),
    }
