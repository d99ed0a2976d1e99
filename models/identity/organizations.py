"""Organizations (tenants), their members and invitations.

A caller addresses only the organization its credentials were issued for (the access token's
`org`, an API key's organization); any other organization id answers 404, exactly like one that
does not exist. Membership changes lock the organization row (and the owner grants, as
`models.identity.roles` does), so "an organization always keeps an owner" holds under concurrency.

`models.identity.roles` imports this module, so it is imported here inside the functions that
use it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING

from sqlalchemy import delete as sql_delete
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import get_in_org, id_field, rfc3339, timestamp_field, utcnow
from models.common.pagination import Page, paginate
from models.identity.users import User, normalize_email
from tessera.core import tokens
from tessera.core.errors import Conflict, Detail, NotFound, PermissionDenied, ValidationFailed

if TYPE_CHECKING:
    from models.identity.roles import Role, RoleGrant
    from tessera.core.caller import Principal

OWNER = "owner"
INVITATION_TTL = timedelta(days=7)


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: str = id_field("org")
    name: str = Field(max_length=200)
    require_mfa: bool = False
    # Rate-limit tier (free, basic, pro, enterprise); the default comes from settings.
    tier: str | None = Field(default=None, max_length=20)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"

    org_id: str = Field(foreign_key="organizations.id", primary_key=True, ondelete="CASCADE")
    user_id: str = Field(foreign_key="users.id", primary_key=True, index=True, ondelete="CASCADE")
    created_at: datetime = timestamp_field(default_factory=utcnow)


class Invitation(SQLModel, table=True):
    __tablename__ = "invitations"

    id: str = id_field("inv")
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    email: str = Field(max_length=320)
    role: str = Field(max_length=100)
    token_hash: str = Field(unique=True, max_length=64)
    invited_by: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    expires_at: datetime = timestamp_field()
    accepted_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)


# --- organizations ---------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValidationFailed(
            "The organization name is empty.",
            [Detail("name", "TOO_SHORT", "Use at least one character that is not a space.")],
        )
    return cleaned


async def create(*, session: AsyncSession, name: str, owner_id: str) -> Organization:
    """A new organization whose creator is a member holding the `owner` role; it becomes the
    creator's default organization when they have none."""
    org = Organization(name=_clean_name(name))
    session.add(org)
    await session.flush()
    await add_member(session=session, org_id=org.id, user_id=owner_id, role=OWNER)
    owner = await session.get(User, owner_id)
    if owner is not None and owner.org_id is None:
        owner.org_id = org.id
    return org


async def get(
    *, session: AsyncSession, org_id: str, caller_org_id: str | None, lock: bool = False
) -> Organization:
    """The caller's own organization; any other id is 404 (tenant isolation)."""
    org = None
    if caller_org_id is not None and org_id == caller_org_id:
        org = await session.get(Organization, org_id, with_for_update=lock)
    if org is None:
        raise NotFound("No organization with this id.")
    return org


def list_query(*, user_id: str | None, org_id: str | None):
    """Organizations a user belongs to; for an API key, its own organization."""
    stmt = select(Organization)
    if user_id is not None:
        return stmt.join(Membership, Membership.org_id == Organization.id).where(
            Membership.user_id == user_id
        )
    return stmt.where(Organization.id == org_id)


async def update(
    *, session: AsyncSession, org: Organization, changes: dict, actor: Principal
) -> None:
    """Rename, or require MFA of every member. A user turns the requirement on only once their
    own account has MFA (409 otherwise): members without it keep no permissions until they
    enrol, and that must not lock out the person who asked for it."""
    if changes.get("require_mfa") and not org.require_mfa and actor.user_id is not None:
        from models.signin import mfa

        if await mfa.get_factor(session=session, user_id=actor.user_id) is None:
            raise Conflict("Set up MFA on your own account before requiring it of every member.")
    if "name" in changes:
        org.name = _clean_name(changes["name"])
    if "require_mfa" in changes:
        org.require_mfa = changes["require_mfa"]
    org.updated_at = utcnow()


async def delete(*, session: AsyncSession, org: Organization, actor: Principal) -> None:
    """Only an owner deletes an organization. Its sessions end at once; members whose default
    organization it was fall back to another of their organizations (or none)."""
    if not await _is_owner(session=session, org_id=org.id, actor=actor):
        raise PermissionDenied("Only an owner of the organization may delete it.")
    from models.signin import login as auth

    session_ids = (
        await session.exec(select(auth.Session.id).where(auth.Session.org_id == org.id))
    ).all()
    for session_id in session_ids:
        await auth.revoke_session(
            session=session, session_id=session_id, reason="organization_deleted"
        )
    defaulted = (await session.exec(select(User).where(User.org_id == org.id))).all()
    await session.delete(org)
    await session.flush()
    for user in defaulted:
        user.org_id = await _fallback_org(session=session, user_id=user.id, leaving=org.id)


def public(org: Organization) -> dict:
    return {
        "id": org.id,
        "name": org.name,
        "require_mfa": org.require_mfa,
        "created_at": rfc3339(org.created_at),
        "updated_at": rfc3339(org.updated_at),
    }


# --- members ---------------------------------------------------------------------------------

# What `paginate` sorts and pages members by: rows carry `id` (the user id), `joined_at`, `email`.
MEMBER_COLUMNS = SimpleNamespace(
    id=Membership.user_id, joined_at=Membership.created_at, email=User.email
)


async def add_member(*, session: AsyncSession, org_id: str, user_id: str, role: str) -> None:
    """Make a user a member holding `role`; 409 when they already are one."""
    from models.identity import roles as access

    inserted = await session.exec(
        insert(Membership)
        .values(org_id=org_id, user_id=user_id, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(Membership.user_id)
    )
    if inserted.first() is None:
        raise Conflict("The user is already a member of this organization.")
    await access.grant_role(session=session, org_id=org_id, user_id=user_id, role_name=role)


async def is_member(*, session: AsyncSession, org_id: str, user_id: str) -> bool:
    return await session.get(Membership, (org_id, user_id)) is not None


def members_query(*, org_id: str):
    return (
        select(
            Membership.user_id.label("id"),
            User.email,
            User.display_name,
            Membership.created_at.label("joined_at"),
        )
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id)
    )


async def list_members(
    *,
    session: AsyncSession,
    org_id: str,
    sort: str,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    scope: str = "",
) -> Page:
    page = await paginate(
        session,
        members_query(org_id=org_id),
        model=MEMBER_COLUMNS,
        sort=sort,
        limit=limit,
        offset=offset,
        cursor=cursor,
        scope=scope,
    )
    roles = await _role_names(session=session, org_id=org_id, user_ids=[r.id for r in page.items])
    page.items = [_public_member(row, roles.get(row.id, [])) for row in page.items]
    return page


async def get_member(*, session: AsyncSession, org_id: str, user_id: str) -> dict:
    row = (await session.exec(members_query(org_id=org_id).where(User.id == user_id))).first()
    if row is None:
        raise NotFound("No member with this user id in the organization.")
    roles = await _role_names(session=session, org_id=org_id, user_ids=[user_id])
    return _public_member(row, roles.get(user_id, []))


async def add_existing_user(
    *, session: AsyncSession, org_id: str, email: str, role: str, actor: Principal
) -> dict:
    """Add a registered user, found by email, with one role the caller may confer."""
    from models.identity import users

    await _lock(session=session, org_id=org_id)
    found = await _require_role(session=session, org_id=org_id, name=role, field="role")
    _ensure_may_confer(actor, [found])
    user = await users.get_by_email(session=session, email=email)
    if user is None or user.status == "deleted":
        raise NotFound("No user with this email; invite them instead.")
    await add_member(session=session, org_id=org_id, user_id=user.id, role=found.name)
    if user.org_id is None:
        user.org_id = org_id
    return await get_member(session=session, org_id=org_id, user_id=user.id)


async def set_roles(
    *, session: AsyncSession, org_id: str, user_id: str, roles: list[str], actor: Principal
) -> dict:
    """Replace a member's roles. Grants of roles the member keeps stay as they are (with any
    department condition). The caller must hold every permission of the roles it adds or takes
    away (403), and the last owner keeps the owner role (409)."""
    from models.identity import roles as access

    await _lock(session=session, org_id=org_id)
    await get_member(session=session, org_id=org_id, user_id=user_id)
    wanted: dict[str, Role] = {}
    unknown = []
    for index, name in enumerate(roles):
        role = await access.find_role(session=session, org_id=org_id, name=name)
        if role is None:
            unknown.append(Detail(f"roles.{index}", "UNKNOWN_ROLE", f"No role named '{name}'."))
        else:
            wanted[role.id] = role
    if unknown:
        raise ValidationFailed("Some roles do not exist.", unknown)
    current = await _grants(session=session, org_id=org_id, user_id=user_id)
    held = {role.id: role for _, role in current}
    added = [role for role_id, role in wanted.items() if role_id not in held]
    dropped = [role for role_id, role in held.items() if role_id not in wanted]
    _ensure_may_confer(actor, added + dropped)
    if any(_is_owner_role(role) for role in dropped):
        await _ensure_another_owner(
            session=session,
            org_id=org_id,
            user_id=user_id,
            message="The last owner cannot lose the owner role; make another member owner first.",
        )
    for grant, role in current:
        if role.id not in wanted:
            await session.delete(grant)
    for role in added:
        session.add(access.RoleGrant(org_id=org_id, user_id=user_id, role_id=role.id))
    await session.flush()
    return await get_member(session=session, org_id=org_id, user_id=user_id)


async def remove_member(
    *, session: AsyncSession, org_id: str, user_id: str, actor: Principal
) -> None:
    """End a membership: its role grants go, the user's sessions in the organization end, and
    their default organization falls back to another one (or none). The caller must hold every
    permission the member's roles give (403); the last owner stays (409)."""
    from models.identity import roles as access
    from models.signin import login as auth

    await _lock(session=session, org_id=org_id)
    await get_member(session=session, org_id=org_id, user_id=user_id)
    current = [role for _, role in await _grants(session=session, org_id=org_id, user_id=user_id)]
    _ensure_may_confer(actor, current)
    if any(_is_owner_role(role) for role in current):
        await _ensure_another_owner(
            session=session,
            org_id=org_id,
            user_id=user_id,
            message="The last owner cannot be removed; make another member owner first.",
        )
    await session.exec(
        sql_delete(access.RoleGrant).where(
            access.RoleGrant.org_id == org_id, access.RoleGrant.user_id == user_id
        )
    )
    await session.exec(
        sql_delete(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    )
    session_ids = (
        await session.exec(
            select(auth.Session.id).where(
                auth.Session.user_id == user_id,
                auth.Session.org_id == org_id,
                auth.Session.revoked_at.is_(None),
            )
        )
    ).all()
    for session_id in session_ids:
        await auth.revoke_session(session=session, session_id=session_id, reason="member_removed")
    user = await session.get(User, user_id)
    if user is not None and user.org_id == org_id:
        user.org_id = await _fallback_org(session=session, user_id=user_id, leaving=org_id)


def _public_member(row, roles: list[str]) -> dict:
    return {
        "user_id": row.id,
        "email": row.email,
        "display_name": row.display_name,
        "roles": roles,
        "joined_at": rfc3339(row.joined_at),
    }


# --- invitations -----------------------------------------------------------------------------


async def create_invitation(
    *, session: AsyncSession, org_id: str, email: str, role: str, actor: Principal
) -> tuple[Invitation, str]:
    """A pending invitation and its single-use token (returned once; only its SHA-256 is kept).
    A new invitation replaces the pending ones for the same email."""
    from models.identity import users

    await _lock(session=session, org_id=org_id)
    found = await _require_role(session=session, org_id=org_id, name=role, field="role")
    _ensure_may_confer(actor, [found])
    email = normalize_email(email)
    invitee = await users.get_by_email(session=session, email=email)
    if invitee is not None and await is_member(session=session, org_id=org_id, user_id=invitee.id):
        raise Conflict("A user with this email is already a member of the organization.")
    await session.exec(
        sql_delete(Invitation).where(
            Invitation.org_id == org_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
        )
    )
    token = tokens.opaque("inv")
    invitation = Invitation(
        org_id=org_id,
        email=email,
        role=found.name,
        token_hash=tokens.digest(token),
        invited_by=actor.user_id,
        expires_at=utcnow() + INVITATION_TTL,
    )
    session.add(invitation)
    await session.flush()
    return invitation, token


def invitations_query(*, org_id: str, status: str | None = None):
    stmt = select(Invitation).where(Invitation.org_id == org_id)
    now = utcnow()
    if status == "accepted":
        stmt = stmt.where(Invitation.accepted_at.is_not(None))
    elif status == "pending":
        stmt = stmt.where(Invitation.accepted_at.is_(None), Invitation.expires_at > now)
    elif status == "expired":
        stmt = stmt.where(Invitation.accepted_at.is_(None), Invitation.expires_at <= now)
    return stmt


async def get_invitation(
    *, session: AsyncSession, org_id: str, invitation_id: str, lock: bool = False
) -> Invitation:
    return await get_in_org(
        session,
        Invitation,
        invitation_id,
        org_id=org_id,
        missing="No invitation with this id.",
        lock=lock,
    )


async def revoke_invitation(*, session: AsyncSession, invitation: Invitation) -> None:
    if invitation.accepted_at is not None:
        raise Conflict("The invitation was already accepted; remove the member instead.")
    await session.delete(invitation)


async def accept_invitation(
    *, session: AsyncSession, token: str, user_id: str
) -> tuple[Organization, Invitation]:
    """Join the inviting organization with the invited role. Only the invited email may accept,
    once, before the invitation expires."""
    by_token = select(Invitation).where(Invitation.token_hash == tokens.digest(token))
    invitation = (await session.exec(by_token)).first()
    if invitation is None:
        raise NotFound("No invitation with this token.")
    # Lock the organization, then the invitation (the order every membership change uses).
    await _lock(session=session, org_id=invitation.org_id)
    locked = by_token.with_for_update().execution_options(populate_existing=True)
    invitation = (await session.exec(locked)).first()
    if invitation is None:
        raise NotFound("No invitation with this token.")
    user = await session.get(User, user_id)
    if user is None or normalize_email(user.email) != normalize_email(invitation.email):
        raise PermissionDenied("This invitation was sent to another email address.")
    if invitation.accepted_at is not None:
        raise Conflict("This invitation has already been used.")
    if invitation.expires_at <= utcnow():
        raise Conflict("This invitation has expired; ask for a new one.")
    from models.identity import roles as access

    role = await access.find_role(session=session, org_id=invitation.org_id, name=invitation.role)
    if role is None:
        raise Conflict("The invited role no longer exists; ask for a new invitation.")
    await add_member(
        session=session, org_id=invitation.org_id, user_id=user_id, role=invitation.role
    )
    invitation.accepted_at = utcnow()
    if user.org_id is None:
        user.org_id = invitation.org_id
    org = await session.get(Organization, invitation.org_id)
    assert org is not None  # the invitation row would be gone with it
    return org, invitation


def invitation_status(invitation: Invitation) -> str:
    if invitation.accepted_at is not None:
        return "accepted"
    return "expired" if invitation.expires_at <= utcnow() else "pending"


def public_invitation(invitation: Invitation, token: str | None = None) -> dict:
    body = {
        "id": invitation.id,
        "org_id": invitation.org_id,
        "email": invitation.email,
        "role": invitation.role,
        "status": invitation_status(invitation),
        "invited_by": invitation.invited_by,
        "expires_at": rfc3339(invitation.expires_at),
        "accepted_at": rfc3339(invitation.accepted_at),
        "created_at": rfc3339(invitation.created_at),
    }
    if token is not None:
        body["token"] = token
    return body


# --- rules shared by the operations above ------------------------------------------------------


async def _lock(*, session: AsyncSession, org_id: str) -> None:
    """Serialise membership changes of one organization for the rest of the transaction."""
    await session.get(Organization, org_id, with_for_update=True)


def _is_owner_role(role: Role) -> bool:
    return role.org_id is None and role.name == OWNER


async def _grants(
    *, session: AsyncSession, org_id: str, user_id: str
) -> list[tuple[RoleGrant, Role]]:
    from models.identity.roles import Role, RoleGrant

    stmt = (
        select(RoleGrant, Role)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(RoleGrant.org_id == org_id, RoleGrant.user_id == user_id)
    )
    return list((await session.exec(stmt)).all())


async def _role_names(
    *, session: AsyncSession, org_id: str, user_ids: list[str]
) -> dict[str, list[str]]:
    from models.identity.roles import Role, RoleGrant

    if not user_ids:
        return {}
    stmt = (
        select(RoleGrant.user_id, Role.name)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(RoleGrant.org_id == org_id, RoleGrant.user_id.in_(user_ids))
    )
    names: dict[str, set[str]] = {}
    for user_id, name in (await session.exec(stmt)).all():
        names.setdefault(user_id, set()).add(name)
    return {user_id: sorted(found) for user_id, found in names.items()}


async def _ensure_another_owner(
    *, session: AsyncSession, org_id: str, user_id: str, message: str
) -> None:
    """409 unless someone besides `user_id` holds `owner` without a department limit. The owner
    grants are locked, like `models.identity.roles.revoke_member_role` does, so concurrent changes
    through either path cannot both pass."""
    from models.identity.roles import Role, RoleGrant

    stmt = (
        select(RoleGrant.user_id)
        .join(Role, Role.id == RoleGrant.role_id)
        .where(
            RoleGrant.org_id == org_id,
            RoleGrant.department.is_(None),
            Role.org_id.is_(None),
            Role.name == OWNER,
        )
        .with_for_update(of=RoleGrant)
    )
    owners = set((await session.exec(stmt)).all())
    if not owners - {user_id}:
        raise Conflict(message)


async def _is_owner(*, session: AsyncSession, org_id: str, actor: Principal) -> bool:
    """The caller signed in as an owner and still is one (API keys never are)."""
    if actor.user_id is None or OWNER not in actor.roles:
        return False
    grants = await _grants(session=session, org_id=org_id, user_id=actor.user_id)
    return any(_is_owner_role(role) for _, role in grants)


async def _require_role(*, session: AsyncSession, org_id: str, name: str, field: str) -> Role:
    from models.identity import roles as access

    role = await access.find_role(session=session, org_id=org_id, name=name)
    if role is None:
        raise ValidationFailed(
            "The role does not exist.", [Detail(field, "UNKNOWN_ROLE", f"No role named '{name}'.")]
        )
    return role


def _ensure_may_confer(actor: Principal, roles: list[Role]) -> None:
    """No escalation: granting or taking away roles needs every permission they carry (the rule
    role grants follow everywhere, `models.identity.roles.ensure_may_confer`)."""
    from models.identity import roles as access

    permissions = {p for role in roles for p in access.role_permissions(role)}
    access.ensure_may_confer(set(actor.permissions), permissions)


async def _fallback_org(*, session: AsyncSession, user_id: str, leaving: str) -> str | None:
    """The organization a user signs in to after leaving their default one: the one they joined
    first, if any."""
    stmt = (
        select(Membership.org_id)
        .where(Membership.user_id == user_id, Membership.org_id != leaving)
        .order_by(Membership.created_at, Membership.org_id)
        .limit(1)
    )
    return (await session.exec(stmt)).first()
