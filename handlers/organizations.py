"""Organizations (tenants), their members and invitations."""

from __future__ import annotations

from models.identity import invitations, member_roles, members, organizations
from tessera.core import db
from tessera.core.caller import principal, require_user
from tessera.web.http import check_if_match, created, list_scope, listing, one


async def list_organizations(
    limit: int = 20, offset: int = 0, cursor: str | None = None, sort: str = "created_at"
):
    caller = principal()
    async with db.transaction() as session:
        return await listing(
            session,
            organizations.list_query(user_id=caller.user_id, org_id=caller.org_id),
            model=organizations.Organization,
            render=organizations.public,
            limit=limit,
            offset=offset,
            cursor=cursor,
            sort=sort,
        )


async def create_organization(body: dict):
    caller = require_user()
    async with db.transaction() as session:
        org = await organizations.create_and_record(
            session=session, name=body["name"], owner_id=caller.user_id
        )
    return created(organizations.public(org), f"/v1/organizations/{org.id}")


async def get_organization(org_id: str):
    caller = principal()
    async with db.transaction() as session:
        org = await organizations.get(session=session, org_id=org_id, caller_org_id=caller.org_id)
    return one(organizations.public(org))


async def update_organization(org_id: str, body: dict):
    caller = principal()
    async with db.transaction() as session:
        org = await organizations.get(
            session=session, org_id=org_id, caller_org_id=caller.org_id, lock=True
        )
        check_if_match(organizations.public(org))
        await organizations.update(session=session, org=org, changes=body, actor=caller)
    return one(organizations.public(org))


async def delete_organization(org_id: str):
    caller = principal()
    async with db.transaction() as session:
        org = await organizations.get(
            session=session, org_id=org_id, caller_org_id=caller.org_id, lock=True
        )
        check_if_match(organizations.public(org))
        await organizations.delete(session=session, org=org, actor=caller)
    return None, 204


async def list_members(
    org_id: str,
    limit: int = 20,
    offset: int = 0,
    cursor: str | None = None,
    sort: str = "joined_at",
):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(session=session, org_id=org_id, caller_org_id=caller.org_id)
        body = await members.list_members(
            session=session,
            org_id=org_id,
            sort=sort,
            limit=limit,
            offset=offset,
            cursor=cursor,
            scope=list_scope(),
        )
    return body, 200


async def add_member(org_id: str, body: dict):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(session=session, org_id=org_id, caller_org_id=caller.org_id)
        member = await members.add_existing_user(
            session=session,
            org_id=org_id,
            email=body["email"],
            role=body.get("role", "viewer"),
            actor=caller,
        )
    return created(member, f"/v1/organizations/{org_id}/members/{member['user_id']}")


async def get_member(org_id: str, user_id: str):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(session=session, org_id=org_id, caller_org_id=caller.org_id)
        member = await members.get_member(session=session, org_id=org_id, user_id=user_id)
    return one(member)


async def update_member(org_id: str, user_id: str, body: dict):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(
            session=session, org_id=org_id, caller_org_id=caller.org_id, lock=True
        )
        check_if_match(await members.get_member(session=session, org_id=org_id, user_id=user_id))
        member = await member_roles.set_roles(
            session=session, org_id=org_id, user_id=user_id, names=body["roles"], actor=caller
        )
    return one(member)


async def remove_member(org_id: str, user_id: str):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(
            session=session, org_id=org_id, caller_org_id=caller.org_id, lock=True
        )
        check_if_match(await members.get_member(session=session, org_id=org_id, user_id=user_id))
        await members.remove_member(session=session, org_id=org_id, user_id=user_id, actor=caller)
    return None, 204


async def create_invitation(org_id: str, body: dict):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(session=session, org_id=org_id, caller_org_id=caller.org_id)
        invitation, token = await invitations.create_invitation(
            session=session,
            org_id=org_id,
            email=body["email"],
            role=body.get("role", "viewer"),
            actor=caller,
        )
    return created(
        invitations.public_invitation(invitation, token),
        f"/v1/organizations/{org_id}/invitations/{invitation.id}",
    )


async def list_invitations(
    org_id: str,
    limit: int = 20,
    offset: int = 0,
    cursor: str | None = None,
    status: str | None = None,
):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(session=session, org_id=org_id, caller_org_id=caller.org_id)
        return await listing(
            session,
            invitations.invitations_query(org_id=org_id, status=status),
            model=invitations.Invitation,
            render=invitations.public_invitation,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


async def get_invitation(org_id: str, invitation_id: str):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(session=session, org_id=org_id, caller_org_id=caller.org_id)
        invitation = await invitations.get_invitation(
            session=session, org_id=org_id, invitation_id=invitation_id
        )
    return one(invitations.public_invitation(invitation))


async def revoke_invitation(org_id: str, invitation_id: str):
    caller = principal()
    async with db.transaction() as session:
        await organizations.get(session=session, org_id=org_id, caller_org_id=caller.org_id)
        await invitations.revoke_invitation(
            session=session, org_id=org_id, invitation_id=invitation_id
        )
    return None, 204


async def accept_invitation(body: dict):
    caller = require_user()
    async with db.transaction() as session:
        org, _ = await invitations.accept_invitation(
            session=session, token=body["token"], user_id=caller.user_id
        )
    return one(organizations.public(org))
