"""What an access token states, and signing it.

A person's access token carries the roles and permissions they hold in the organization it acts
in (`Access`), read with the organization's MFA rule and the user's factor in one round trip;
a token an OAuth client holds carries the granted scopes the user holds instead. Sign-in
(`models.signin.start`), rotation (`models.signin.token_pairs`) and the OAuth grants read it
here; `acting_in` re-reads it for another organization of the caller's.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import NamedTuple, Protocol

from sqlalchemy import String, bindparam, exists, func, literal_column
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.identity import organizations
from models.identity import roles as access
from models.identity.mfa_factors import MfaFactor
from models.identity.organizations import Organization
from models.identity.users import User
from tessera.core import db, tokens
from tessera.core.caller import Principal


class Signed(Protocol):
    """What `sign` reads of a sign-in: a `SignIn`, or a row with these columns."""

    id: str
    user_id: str
    org_id: str | None
    client_id: str | None
    scope: str | None


class Access(NamedTuple):
    """What a member holds in an organization, as their access token states it."""

    roles: list[str]
    permissions: set[str]
    enrollment_due: bool  # none of them until they set up MFA where the organization requires it

    @classmethod
    def of(cls, held: list | None, department: str | None, mfa_due: bool | None) -> Access:
        if mfa_due:
            return cls([], set(), True)
        return cls(*access.effective_permissions(held or [], department), False)


def access_columns(org_id, user_id) -> tuple:
    """Two columns stating what a member holds, for any statement that knows the organization
    and the user (bind parameters, or another statement's columns): their grants as JSON rows
    for `access.effective_permissions`, and whether MFA enrollment is still due."""
    held = (
        select(
            func.coalesce(
                func.json_agg(func.json_build_array(*access.GRANT_COLUMNS)),
                literal_column("'[]'::json"),
            )
        )
        .select_from(access.RoleGrant)
        .join(access.Role, access.Role.id == access.RoleGrant.role_id)
        .where(access.RoleGrant.org_id == org_id, access.RoleGrant.user_id == user_id)
    )
    factor = (
        exists()
        .where(MfaFactor.user_id == user_id, MfaFactor.confirmed_at.is_not(None))
        .correlate_except(MfaFactor)
    )
    due = select(Organization.require_mfa & ~factor).where(Organization.id == org_id)
    return held.scalar_subquery().label("held"), due.scalar_subquery().label("mfa_due")


@cache
def _access_query():
    return select(*access_columns(bindparam("org_id", type_=String), bindparam("user_id")))


async def token_access(
    *, session: AsyncSession, user_id: str, department: str | None, org_id: str | None
) -> Access:
    """One round trip: grants, the organization's MFA rule and the user's factor together."""
    if org_id is None:
        return Access([], set(), False)
    params = {"org_id": org_id, "user_id": user_id}
    held, due = (await session.execute(_access_query(), params)).one()
    return Access.of(held, department, due)


async def org_access(
    *, session: AsyncSession, user: User, org_id: str
) -> tuple[list[str], set[str]]:
    """Roles and permissions a member holds in an organization: none until they set up MFA
    where the organization requires it (refresh and sign-in re-check)."""
    held = await token_access(
        session=session, user_id=user.id, department=user.department, org_id=org_id
    )
    return held.roles, held.permissions


def sign(sign_in: Signed, held: Access, **issue) -> tuple[str, int]:
    """The access token of a sign-in. `issue`: `issued_at` and `jti` for a token that must come
    out identical when re-issued."""
    claims = {
        "sub": sign_in.user_id,
        "org": sign_in.org_id,
        "roles": held.roles,
        "scope": " ".join(sorted(held.permissions)),
        "sid": sign_in.id,
    }
    if sign_in.client_id:  # held by an OAuth client: the granted scopes the user holds, no roles
        granted = {p for p in (sign_in.scope or "").split() if access.grants(held.permissions, p)}
        claims |= {"roles": [], "scope": " ".join(sorted(granted)), "client_id": sign_in.client_id}
    return tokens.issue_access_token(claims, **issue)


async def access_token(
    *, session: AsyncSession, user: User, sign_in: Signed
) -> tuple[str, int, Access]:
    """The access token of a sign-in of `user`, with what it states."""
    held = await token_access(
        session=session, user_id=user.id, department=user.department, org_id=sign_in.org_id
    )
    token, ttl = sign(sign_in, held)
    return token, ttl, held


async def acting_in(caller: Principal, org_id: str) -> Principal:
    """A person's access token acts in one organization (its `org`). On the operations of
    another organization they belong to (`/v1/organizations/{org_id}/…`) they act there, with
    the roles they hold in it, read now. Anyone else keeps their principal and the operation
    answers 404 for the foreign id, as for any other tenant's resource."""
    if caller.kind != "user" or caller.client_id is not None or org_id == caller.org_id:
        return caller
    async with db.reader() as session:
        user = await session.get(User, caller.user_id)
        if user is None or not await organizations.is_member(
            session=session, org_id=org_id, user_id=user.id
        ):
            return caller
        roles, permissions = await org_access(session=session, user=user, org_id=org_id)
    return replace(caller, org_id=org_id, roles=tuple(roles), permissions=frozenset(permissions))
