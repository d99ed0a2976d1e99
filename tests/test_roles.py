"""Roles, grants (with department limits), the permission audit, through HTTP.

Access tokens carry the roles and permissions of the moment they were issued, so tests that
change a member's roles sign that member in again before looking.
"""

from __future__ import annotations

import asyncio
import functools
import uuid

import jwt
import yaml

from models.identity.roles import PERMISSIONS, SYSTEM_ROLES
from tessera.core.caller import AUTHENTICATED
from tessera.web.contract import SPEC_PATH
from tests.support.factories import PASSWORD, Account, login, signed_in, unique_email


@functools.cache
def _spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


_password_hash: str | None = None


async def member(
    client, owner: Account, *, role: str = "viewer", department: str | None = None
) -> Account:
    """A new user in the owner's organization holding `role`, signed in."""
    global _password_hash
    from models.identity import organizations, users
    from tessera.core import db, passwords

    if _password_hash is None:
        _password_hash = await passwords.hash_password(PASSWORD)
    email = unique_email(role)
    async with db.transaction() as session:
        user = await users.create(
            session=session,
            email=email,
            display_name=f"Member {role}",
            password_hash=_password_hash,
            org_id=owner.organization["id"],
            department=department,
            email_verified=True,
        )
        await organizations.add_member(
            session=session, org_id=owner.organization["id"], user_id=user.id, role=role
        )
    return await relogin(client, email)


async def relogin(client, email: str) -> Account:
    tokens = await login(client, email)
    return Account(
        user=tokens["user"],
        organization={"id": tokens["user"]["org_id"]},
        email=email,
        password=PASSWORD,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


def scope(account: Account) -> set[str]:
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    return set(claims["scope"].split())


def role_name() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


async def create_role(client, account: Account, permissions: list[str], **extra):
    body = {"name": role_name(), "permissions": permissions, **extra}
    return await client.post("/v1/roles", headers=account.headers, json=body)


async def all_roles(client, account: Account) -> dict[str, dict]:
    response = await client.get("/v1/roles", headers=account.headers, params={"limit": 100})
    assert response.status_code == 200, response.text
    return {role["name"]: role for role in response.json()["data"]}


async def audit(client, account: Account) -> dict[str, list[dict]]:
    response = await client.get("/v1/permissions/audit", headers=account.headers)
    assert response.status_code == 200, response.text
    return {entry["permission"]: entry["holders"] for entry in response.json()["data"]}


def test_the_contract_lists_exactly_the_permission_catalog():
    enum = _spec()["components"]["schemas"]["Permission"]["enum"]
    assert enum == list(PERMISSIONS)


def test_every_secured_operation_declares_its_permission():
    """One check (tessera.auth) enforces `x-permission`; an operation without a declaration
    would silently be open to any signed-in caller, so the declaration is never optional."""
    spec = _spec()
    default = spec.get("security", [])
    problems = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            declared = op.get("x-permission")
            where = f"{method.upper()} {path}"
            if not op.get("security", default):
                if declared is not None:
                    problems.append(f"{where}: public, yet declares {declared}")
            elif declared != AUTHENTICATED and declared not in PERMISSIONS:
                problems.append(f"{where}: x-permission {declared!r}")
            if "x-permission-self" in op and "{" + op["x-permission-self"] + "}" not in path:
                problems.append(f"{where}: x-permission-self names no path parameter")
    assert problems == []


async def test_list_shows_built_in_roles_from_code_and_only_own_custom_roles(client):
    owner, stranger = await signed_in(client), await signed_in(client)
    created = await create_role(client, owner, ["projects:read"], description="Reads projects")
    assert created.status_code == 201, created.text

    roles = await all_roles(client, owner)
    for name, (description, permissions) in SYSTEM_ROLES.items():
        assert roles[name]["system"] is True
        assert roles[name]["description"] == description
        assert roles[name]["permissions"] == sorted(permissions)
    assert "projects:delete" not in roles["editor"]["permissions"]
    custom = roles[created.json()["data"]["name"]]
    assert custom == created.json()["data"]
    assert custom["system"] is False and custom["description"] == "Reads projects"

    theirs = await all_roles(client, stranger)
    assert set(SYSTEM_ROLES) <= set(theirs) and custom["name"] not in theirs


async def test_roles_page_with_a_cursor_and_sort_by_name(client):
    owner = await signed_in(client)
    for _ in range(2):
        assert (await create_role(client, owner, ["projects:read"])).status_code == 201
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/roles", headers=owner.headers, params=params)).json()
        assert page["total"] == len(SYSTEM_ROLES) + 2
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len({r["id"] for r in seen}) == len(SYSTEM_ROLES) + 2
    assert [r["system"] for r in seen] == [True] * len(SYSTEM_ROLES) + [False, False]
    by_name = await client.get("/v1/roles", headers=owner.headers, params={"sort": "name"})
    builtins = [r["name"] for r in by_name.json()["data"] if r["system"]]
    assert builtins == sorted(SYSTEM_ROLES)


async def test_create_role_answers_201_with_location_and_etag(client):
    owner = await signed_in(client)
    response = await create_role(client, owner, ["projects:read", "audit:read"])
    assert response.status_code == 201, response.text
    role = response.json()["data"]
    assert role["id"].startswith("rol_") and role["permissions"] == ["audit:read", "projects:read"]
    assert response.headers["location"] == f"/v1/roles/{role['id']}"
    fetched = await client.get(response.headers["location"], headers=owner.headers)
    assert fetched.status_code == 200 and fetched.json()["data"] == role
    assert fetched.headers["etag"] == response.headers["etag"]


async def test_role_names_are_unique_in_the_org_and_built_in_names_are_reserved(client):
    owner, stranger = await signed_in(client), await signed_in(client)
    name = role_name()
    first = await client.post(
        "/v1/roles", headers=owner.headers, json={"name": name, "permissions": []}
    )
    assert first.status_code == 201
    again = await client.post(
        "/v1/roles", headers=owner.headers, json={"name": name, "permissions": ["users:read"]}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"
    for builtin in SYSTEM_ROLES:
        taken = await client.post(
            "/v1/roles", headers=owner.headers, json={"name": builtin, "permissions": []}
        )
        assert taken.status_code == 409, builtin
    # Another organization may use the same name.
    elsewhere = await client.post(
        "/v1/roles", headers=stranger.headers, json={"name": name, "permissions": []}
    )
    assert elsewhere.status_code == 201


async def test_concurrent_creates_of_one_name_make_one_role(client):
    owner = await signed_in(client)
    body = {"name": role_name(), "permissions": ["projects:read"]}
    responses = await asyncio.gather(
        *(client.post("/v1/roles", headers=owner.headers, json=body) for _ in range(3))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409]


async def test_invalid_role_input_is_422(client):
    owner = await signed_in(client)
    for body in (
        {"name": "Bad Name", "permissions": []},
        {"name": "x", "permissions": []},
        {"name": role_name(), "permissions": ["projects:fly"]},
        {"name": role_name(), "permissions": ["users:read", "users:read"]},
        {"name": role_name()},
    ):
        response = await client.post("/v1/roles", headers=owner.headers, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_built_in_roles_cannot_be_changed_or_deleted(client):
    owner = await signed_in(client)
    roles = await all_roles(client, owner)
    for name in SYSTEM_ROLES:
        role_id = roles[name]["id"]
        patched = await client.patch(
            f"/v1/roles/{role_id}", headers=owner.headers, json={"permissions": ["admin"]}
        )
        assert patched.status_code == 409, name
        deleted = await client.delete(f"/v1/roles/{role_id}", headers=owner.headers)
        assert deleted.status_code == 409, name
    assert (await all_roles(client, owner))["viewer"] == roles["viewer"]


async def test_update_and_delete_a_custom_role_with_if_match(client):
    owner = await signed_in(client)
    created = await create_role(client, owner, ["projects:read"])
    role, etag = created.json()["data"], created.headers["etag"]
    url = f"/v1/roles/{role['id']}"

    changed = await client.patch(
        url,
        headers={**owner.headers, "If-Match": etag},
        json={"permissions": ["projects:read", "projects:write"], "description": "Writers"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["permissions"] == ["projects:read", "projects:write"]
    assert changed.json()["data"]["description"] == "Writers"
    assert changed.headers["etag"] != etag

    stale = await client.patch(
        url, headers={**owner.headers, "If-Match": etag}, json={"description": "Late"}
    )
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "PRECONDITION_FAILED"
    stale_delete = await client.delete(url, headers={**owner.headers, "If-Match": etag})
    assert stale_delete.status_code == 412

    deleted = await client.delete(
        url, headers={**owner.headers, "If-Match": changed.headers["etag"]}
    )
    assert deleted.status_code == 204
    assert (await client.get(url, headers=owner.headers)).status_code == 404
    assert (await client.delete(url, headers=owner.headers)).status_code == 404


async def test_deleting_a_role_removes_its_grants(client):
    owner = await signed_in(client)
    created = await create_role(client, owner, ["audit:read"])
    role = created.json()["data"]
    someone = await member(client, owner, role=role["name"])
    assert "audit:read" in scope(someone)
    assert any(
        h["user_id"] == someone.user["id"] for h in (await audit(client, owner))["audit:read"]
    )

    assert (
        await client.delete(f"/v1/roles/{role['id']}", headers=owner.headers)
    ).status_code == 204
    holders = (await audit(client, owner))["audit:read"]
    assert all(h["user_id"] != someone.user["id"] for h in holders)
    again = await relogin(client, someone.email)
    assert "audit:read" not in scope(again) and again.user["roles"] == []


async def test_other_organizations_roles_and_users_are_404(client):
    owner, stranger = await signed_in(client), await signed_in(client)
    theirs = (await create_role(client, stranger, ["projects:read"])).json()["data"]
    url = f"/v1/roles/{theirs['id']}"
    assert (await client.get(url, headers=owner.headers)).status_code == 404
    patched = await client.patch(url, headers=owner.headers, json={"description": "mine now"})
    assert patched.status_code == 404
    assert (await client.delete(url, headers=owner.headers)).status_code == 404
    # Their custom role's name does not resolve in my organization.
    mine = await member(client, owner)
    grant = await client.post(
        f"/v1/users/{mine.user['id']}/roles", headers=owner.headers, json={"role": theirs["name"]}
    )
    assert grant.status_code == 422 and grant.json()["error"]["details"][0]["field"] == "role"
    # Their members cannot be granted or revoked from my organization.
    stranger_id = stranger.user["id"]
    grant = await client.post(
        f"/v1/users/{stranger_id}/roles", headers=owner.headers, json={"role": "viewer"}
    )
    assert grant.status_code == 404
    revoke = await client.delete(f"/v1/users/{stranger_id}/roles/owner", headers=owner.headers)
    assert revoke.status_code == 404
    assert (await client.get(url, headers=stranger.headers)).status_code == 200


async def test_grant_and_revoke_show_in_the_next_token(client):
    owner = await signed_in(client)
    viewer = await member(client, owner, role="viewer")
    assert viewer.user["roles"] == ["viewer"] and "projects:write" not in scope(viewer)
    url = f"/v1/users/{viewer.user['id']}/roles"

    granted = await client.post(url, headers=owner.headers, json={"role": "editor"})
    assert granted.status_code == 201, granted.text
    grant = granted.json()["data"]
    assert grant["id"].startswith("grt_")
    assert (grant["user_id"], grant["role"], grant["department"]) == (
        viewer.user["id"],
        "editor",
        None,
    )
    assert granted.headers["location"] == f"{url}/editor"
    twice = await client.post(url, headers=owner.headers, json={"role": "editor"})
    assert twice.status_code == 409

    # The token in hand is unchanged (15-minute tokens); signing in again shows the grant.
    me = (await client.get("/v1/users/me", headers=viewer.headers)).json()["data"]
    assert me["roles"] == ["viewer"]
    viewer = await relogin(client, viewer.email)
    me = (await client.get("/v1/users/me", headers=viewer.headers)).json()["data"]
    assert me["roles"] == ["editor", "viewer"] and "projects:write" in scope(viewer)
    created = await client.post("/v1/projects", headers=viewer.headers, json={"title": "Mine"})
    assert created.status_code == 201

    assert (await client.delete(f"{url}/editor", headers=owner.headers)).status_code == 204
    assert (await client.delete(f"{url}/editor", headers=owner.headers)).status_code == 404
    assert (await client.delete(f"{url}/no-such-role", headers=owner.headers)).status_code == 404
    viewer = await relogin(client, viewer.email)
    assert viewer.user["roles"] == ["viewer"] and "projects:write" not in scope(viewer)


async def test_granting_an_unknown_role_or_to_a_non_member_fails(client):
    owner = await signed_in(client)
    viewer = await member(client, owner)
    unknown = await client.post(
        f"/v1/users/{viewer.user['id']}/roles", headers=owner.headers, json={"role": "wizard"}
    )
    assert unknown.status_code == 422
    loner = await signed_in(client, org=False)
    outsider = await client.post(
        f"/v1/users/{loner.user['id']}/roles", headers=owner.headers, json={"role": "viewer"}
    )
    assert outsider.status_code == 404


async def test_the_last_owner_cannot_be_revoked(client):
    owner = await signed_in(client)
    mine = f"/v1/users/{owner.user['id']}/roles/owner"
    last = await client.delete(mine, headers=owner.headers)
    assert last.status_code == 409 and last.json()["error"]["code"] == "CONFLICT"

    other = await member(client, owner)
    # An owner grant limited to a department does not keep the organization owned.
    limited = await client.post(
        f"/v1/users/{other.user['id']}/roles",
        headers=owner.headers,
        json={"role": "owner", "department": "nowhere"},
    )
    assert limited.status_code == 201
    assert (await client.delete(mine, headers=owner.headers)).status_code == 409
    await client.delete(f"/v1/users/{other.user['id']}/roles/owner", headers=owner.headers)

    full = await client.post(
        f"/v1/users/{other.user['id']}/roles", headers=owner.headers, json={"role": "owner"}
    )
    assert full.status_code == 201
    assert (await client.delete(mine, headers=owner.headers)).status_code == 204


async def test_two_owners_revoking_each_other_at_once_leave_one_owner(client):
    first = await signed_in(client)
    second = await member(client, first)
    granted = await client.post(
        f"/v1/users/{second.user['id']}/roles", headers=first.headers, json={"role": "owner"}
    )
    assert granted.status_code == 201
    second = await relogin(client, second.email)
    responses = await asyncio.gather(
        client.delete(f"/v1/users/{second.user['id']}/roles/owner", headers=first.headers),
        client.delete(f"/v1/users/{first.user['id']}/roles/owner", headers=second.headers),
    )
    assert sorted(r.status_code for r in responses) == [204, 409]
    owners = [h for h in (await audit(client, first))["admin"] if h["role"] == "owner"]
    assert len(owners) == 1


async def test_custom_role_with_projects_read_only_can_list_but_not_create(client):
    owner = await signed_in(client)
    reader_role = (await create_role(client, owner, ["projects:read"])).json()["data"]
    reader = await member(client, owner, role=reader_role["name"])
    assert scope(reader) == {"projects:read"}
    assert (await client.get("/v1/projects", headers=reader.headers)).status_code == 200
    denied = await client.post("/v1/projects", headers=reader.headers, json={"title": "Nope"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "PERMISSION_DENIED"
    assert (await client.get("/v1/roles", headers=reader.headers)).status_code == 403


async def test_nobody_confers_permissions_they_do_not_hold(client):
    owner = await signed_in(client)
    manager_role = await create_role(client, owner, ["roles:read", "roles:write", "projects:read"])
    manager = await member(client, owner, role=manager_role.json()["data"]["name"])
    viewer = await member(client, owner)

    beyond = await create_role(client, manager, ["projects:read", "users:delete"])
    assert beyond.status_code == 403 and "users:delete" in beyond.json()["error"]["message"]
    within = await create_role(client, manager, ["projects:read"])
    assert within.status_code == 201
    widen = await client.patch(
        f"/v1/roles/{within.json()['data']['id']}",
        headers=manager.headers,
        json={"permissions": ["projects:read", "admin"]},
    )
    assert widen.status_code == 403
    # Granting (or revoking) a role carries the same rule: no path to `owner` via roles:write.
    url = f"/v1/users/{manager.user['id']}/roles"
    assert (
        await client.post(url, headers=manager.headers, json={"role": "owner"})
    ).status_code == 403
    revoke_owner = await client.delete(
        f"/v1/users/{owner.user['id']}/roles/owner", headers=manager.headers
    )
    assert revoke_owner.status_code == 403
    granted = await client.post(
        f"/v1/users/{viewer.user['id']}/roles",
        headers=manager.headers,
        json={"role": within.json()["data"]["name"]},
    )
    assert granted.status_code == 201
    # An admin may confer anything.
    assert (await create_role(client, owner, ["admin"])).status_code == 201


async def test_department_limited_grant_applies_only_inside_the_department(client):
    owner = await signed_in(client)
    researcher = await member(client, owner, department="research")
    seller = await member(client, owner, department="sales")
    for someone in (researcher, seller):
        granted = await client.post(
            f"/v1/users/{someone.user['id']}/roles",
            headers=owner.headers,
            json={"role": "editor", "department": "research"},
        )
        assert granted.status_code == 201 and granted.json()["data"]["department"] == "research"

    researcher = await relogin(client, researcher.email)
    seller = await relogin(client, seller.email)
    assert researcher.user["roles"] == ["editor", "viewer"] and "projects:write" in scope(
        researcher
    )
    assert seller.user["roles"] == ["viewer"] and "projects:write" not in scope(seller)
    for someone, roles in ((researcher, ["editor", "viewer"]), (seller, ["viewer"])):
        shown = await client.get(f"/v1/users/{someone.user['id']}", headers=owner.headers)
        assert shown.json()["data"]["roles"] == roles
    ok = await client.post("/v1/projects", headers=researcher.headers, json={"title": "Lab"})
    assert ok.status_code == 201
    denied = await client.post("/v1/projects", headers=seller.headers, json={"title": "Deal"})
    assert denied.status_code == 403

    holders = {h["user_id"]: h for h in (await audit(client, owner))["projects:write"]}
    assert holders[researcher.user["id"]] == {
        "user_id": researcher.user["id"],
        "email": researcher.email,
        "role": "editor",
        "department_limit": "research",
        "effective": True,
    }
    assert holders[seller.user["id"]]["effective"] is False
    assert holders[owner.user["id"]]["effective"] is True
    assert holders[owner.user["id"]]["department_limit"] is None


async def test_audit_covers_the_whole_catalog_and_only_this_organization(client):
    owner, stranger = await signed_in(client), await signed_in(client)
    viewer = await member(client, owner)
    entries = await audit(client, owner)
    assert list(entries) == list(PERMISSIONS)
    for permission, holders in entries.items():
        assert [h["role"] for h in holders if h["user_id"] == owner.user["id"]] == ["owner"]
        viewer_holds = any(h["user_id"] == viewer.user["id"] for h in holders)
        assert viewer_holds == (permission in SYSTEM_ROLES["viewer"][1]), permission
        assert all(h["user_id"] != stranger.user["id"] for h in holders)
    readable = await client.get("/v1/permissions/audit", headers=viewer.headers)
    assert readable.status_code == 200  # viewers hold roles:read
    denied = await client.post(
        "/v1/roles", headers=viewer.headers, json={"name": role_name(), "permissions": []}
    )
    assert denied.status_code == 403
