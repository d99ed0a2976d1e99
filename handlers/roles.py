"""Roles, grants of roles to members, and the permission audit."""

from __future__ import annotations

from models.identity import member_roles, roles
from tessera.core import db
from tessera.core.caller import require_org
from tessera.web.http import check_if_match, created, listing, one


async def list_roles(
    limit: int = 20, offset: int = 0, cursor: str | None = None, sort: str = "created_at"
):
    caller = require_org()
    async with db.transaction() as session:
        return await listing(
            session,
            roles.roles_query(org_id=caller.org_id),
            model=roles.Role,
            render=roles.public_role,
            limit=limit,
            offset=offset,
            cursor=cursor,
            sort=sort,
        )


async def create_role(body: dict):
    caller = require_org()
    async with db.transaction() as session:
        role = await roles.create_role(
            session=session,
            org_id=caller.org_id,
            name=body["name"],
            description=body.get("description", ""),
            permissions=body["permissions"],
            caller_permissions=set(caller.permissions),
        )
    return created(roles.public_role(role), f"/v1/roles/{role.id}")


async def get_role(role_id: str):
    caller = require_org()
    async with db.transaction() as session:
        role = await roles.get_role(session=session, org_id=caller.org_id, role_id=role_id)
    return one(roles.public_role(role))


async def update_role(role_id: str, body: dict):
    caller = require_org()
    async with db.transaction() as session:
        role = await roles.get_role(session=session, org_id=caller.org_id, role_id=role_id)
        check_if_match(roles.public_role(role))
        await roles.update_role(
            session=session, role=role, changes=body, caller_permissions=set(caller.permissions)
        )
    return one(roles.public_role(role))


async def delete_role(role_id: str):
    caller = require_org()
    async with db.transaction() as session:
        role = await roles.get_role(session=session, org_id=caller.org_id, role_id=role_id)
        check_if_match(roles.public_role(role))
        await roles.delete_role(
            session=session, role=role, caller_permissions=set(caller.permissions)
        )
    return None, 204


async def grant_user_role(user_id: str, body: dict):
    caller = require_org()
    async with db.transaction() as session:
        grant, role = await member_roles.grant_member_role(
            session=session,
            org_id=caller.org_id,
            user_id=user_id,
            role_name=body["role"],
            department=body.get("department"),
            caller_permissions=set(caller.permissions),
        )
    return created(member_roles.public_grant(grant, role), f"/v1/users/{user_id}/roles/{role.name}")


async def revoke_user_role(user_id: str, role: str):
    caller = require_org()
    async with db.transaction() as session:
        await member_roles.revoke_member_role(
            session=session,
            org_id=caller.org_id,
            user_id=user_id,
            role_name=role,
            caller_permissions=set(caller.permissions),
        )
    return None, 204


async def get_permission_audit():
    caller = require_org()
    async with db.transaction() as session:
        entries = await roles.permission_audit(session=session, org_id=caller.org_id)
    return {"data": entries}, 200
