"""The organization's list of users (`GET /v1/users`): its members who are not deleted, with the
roles they hold there, filtered, sorted and paged in one round trip."""

from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import String, bindparam, column, exists, or_, table
from sqlmodel import select

from models.common.pagination import counts_alone, page_of, page_params, page_statement, paginate
from models.identity.tables import Membership, Role, RoleGrant, User
from models.identity.users import (
    PUBLIC_COLUMNS,
    grant_applies,
    normalize_email,
    public,
    role_names,
    roles_held,
)
from tessera.core import db


def list_query(
    *,
    org_id: str,
    email: str | None = None,
    status: str | None = None,
    role: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    q: str | None = None,
    columns: tuple = (User,),
):
    """The organization's members (not deleted) matching the filters; `columns`: what to read
    of each (the `User` by default)."""
    stmt = (
        select(*columns)
        .select_from(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, User.status != "deleted")
    )
    if email:
        stmt = stmt.where(User.email == normalize_email(email))
    if status:
        stmt = stmt.where(User.status == status)
    if role:
        stmt = stmt.where(
            exists().where(
                RoleGrant.user_id == User.id,
                RoleGrant.org_id == org_id,
                Role.id == RoleGrant.role_id,
                Role.name == role,
                grant_applies(RoleGrant.department, User.department),
            )
        )
    if created_after:
        stmt = stmt.where(User.created_at >= created_after)
    if created_before:
        stmt = stmt.where(User.created_at < created_before)
    if q:
        stmt = stmt.where(
            or_(
                User.email.icontains(q, autoescape=True),
                User.display_name.icontains(q, autoescape=True),
            )
        )
    return stmt


@cache
def _member_count_statement():
    """What `list_query(org_id=...)` without filters counts, the cheap way: the organization's
    count of members who are not deleted, which triggers keep (migration 0010). Kept by the
    database and never written here, so not a field of `Organization`."""
    organizations = table("organizations", column("id"), column("member_count"))
    org_id = bindparam("org_id", type_=String)
    return select(organizations.c.member_count).where(organizations.c.id == org_id)


async def list_page(
    *,
    org_id: str,
    sort: str,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    scope: str = "",
    **filters,
) -> dict:
    """A page of the organization's members with their roles, one round trip (but for a page
    past the end). Unfiltered, the usual case, its statement is built once per sort. `scope`: as
    `models.common.pagination.page_params` takes it."""
    if any(value is not None for value in filters.values()):
        columns = (*PUBLIC_COLUMNS, roles_held(org_id))
        async with db.autocommit() as conn:  # rows of columns: no ORM session
            page = await paginate(
                conn,
                list_query(org_id=org_id, columns=columns, **filters),
                model=User,
                sort=sort,
                limit=limit,
                offset=offset,
                cursor=cursor,
                scope=scope,
            )
    else:
        params = page_params(
            model=User, sort=sort, limit=limit, offset=offset, cursor=cursor, scope=scope
        )
        params["org_id"] = org_id
        rows = await db.fetch_all(_members_page_statement(sort, bool(cursor)), params)
        total = None
        if counts_alone(rows, params):
            total = (await db.fetch_one(_member_count_statement(), params)).member_count
        page = page_of(
            rows, total=total, sort=sort, limit=limit, params=params, single=False, scope=scope
        )
    return page.envelope(lambda row: public(row, role_names(row)))


@cache
def _members_page_statement(sort: str, after_cursor: bool):
    """The unfiltered list's page, with the count its organization keeps as the total."""
    org_id = bindparam("org_id", type_=String)
    return page_statement(
        list_query(org_id=org_id, columns=(*PUBLIC_COLUMNS, roles_held(org_id))),
        model=User,
        sort=sort,
        after_cursor=after_cursor,
        count=_member_count_statement(),
    )
