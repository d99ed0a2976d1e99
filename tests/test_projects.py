"""Projects through HTTP: ownership rules (ABAC), tenant isolation, ETags, filters and paging."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import text

from tests.support.factories import Account, signed_in
from tests.support.lists import assert_cursor_keeps_its_sort
from tests.test_roles import member


async def create(client, account: Account, title: str = "Website relaunch", **extra):
    response = await client.post(
        "/v1/projects", headers=account.headers, json={"title": title, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def api_key(owner: Account, scopes: list[str]) -> dict[str, str]:
    """An API key of the owner's organization, inserted directly (keys have their own tests)."""
    from models.common.base import utcnow
    from tessera.core import db, tokens

    secret = "sk_test_" + secrets.token_urlsafe(32)
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO api_keys (id, org_id, name, environment, prefix, key_hash, scopes, "
                "allowed_ips, created_at) VALUES (:id, :org, 'Projects test', 'test', :prefix, "
                ":hash, :scopes, '{}', :now)"
            ),
            {
                "id": f"key_{uuid.uuid4().hex[:26].upper()}",
                "org": owner.organization["id"],
                "prefix": secret[:12],
                "hash": tokens.digest(secret),
                "scopes": scopes,
                "now": utcnow(),
            },
        )
    return {"X-API-Key": secret}


async def test_create_get_replace_update_delete(client):
    owner = await signed_in(client)
    response = await client.post(
        "/v1/projects", headers=owner.headers, json={"title": "  Website relaunch "}
    )
    assert response.status_code == 201, response.text
    project = response.json()["data"]
    assert project["id"].startswith("prj_")
    assert project["org_id"] == owner.organization["id"]
    assert project["owner_id"] == owner.user["id"]
    assert (project["title"], project["status"]) == ("Website relaunch", "active")
    url = f"/v1/projects/{project['id']}"
    assert response.headers["location"] == url

    fetched = await client.get(url, headers=owner.headers)
    assert fetched.status_code == 200 and fetched.json()["data"] == project
    assert fetched.headers["etag"] == response.headers["etag"]

    replaced = await client.put(
        url, headers=owner.headers, json={"title": "Relaunch 2", "status": "archived"}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["data"]["title"] == "Relaunch 2"
    assert replaced.json()["data"]["status"] == "archived"
    incomplete = await client.put(url, headers=owner.headers, json={"title": "No status"})
    assert incomplete.status_code == 422

    patched = await client.patch(url, headers=owner.headers, json={"status": "active"})
    assert patched.status_code == 200
    assert patched.json()["data"]["title"] == "Relaunch 2"
    assert patched.json()["data"]["status"] == "active"
    assert patched.json()["data"]["updated_at"] >= project["updated_at"]

    assert (await client.delete(url, headers=owner.headers)).status_code == 204
    assert (await client.get(url, headers=owner.headers)).status_code == 404


async def test_invalid_project_input_is_422(client):
    owner = await signed_in(client)
    for body in (
        {},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": "Ok", "status": "deleted"},
        {"title": "Ok", "colour": "red"},
        {"title": "Bad\u0000byte"},
    ):
        response = await client.post("/v1/projects", headers=owner.headers, json=body)
        assert response.status_code == 422, body
    project = await create(client, owner)
    empty = await client.patch(f"/v1/projects/{project['id']}", headers=owner.headers, json={})
    assert empty.status_code == 422


async def test_editor_changes_only_own_projects_and_cannot_delete(client):
    owner = await signed_in(client)
    editor = await member(client, owner, role="editor")
    colleague = await member(client, owner, role="editor")
    own = await create(client, editor, "Editor's own")
    assert own["owner_id"] == editor.user["id"]
    others = await create(client, owner, "Owner's")
    colleagues = await create(client, colleague, "Colleague's")

    mine = f"/v1/projects/{own['id']}"
    assert (
        await client.patch(mine, headers=editor.headers, json={"title": "Renamed"})
    ).status_code == 200
    assert (
        await client.put(mine, headers=editor.headers, json={"title": "Again", "status": "active"})
    ).status_code == 200
    for project in (others, colleagues):
        url = f"/v1/projects/{project['id']}"
        assert (await client.get(url, headers=editor.headers)).status_code == 200
        patched = await client.patch(url, headers=editor.headers, json={"title": "Hijacked"})
        assert patched.status_code == 403
        assert patched.json()["error"]["code"] == "PERMISSION_DENIED"
        replaced = await client.put(
            url, headers=editor.headers, json={"title": "Hijacked", "status": "archived"}
        )
        assert replaced.status_code == 403
        assert (await client.delete(url, headers=editor.headers)).status_code == 403
    # Editors lack projects:delete, even for their own project.
    assert (await client.delete(mine, headers=editor.headers)).status_code == 403
    assert (await client.get(mine, headers=owner.headers)).json()["data"]["title"] == "Again"


async def test_owner_and_admin_change_and_delete_any_project(client):
    owner = await signed_in(client)
    editor = await member(client, owner, role="editor")
    admin = await member(client, owner, role="admin")
    first, second = await create(client, editor, "First"), await create(client, editor, "Second")
    for account, project in ((owner, first), (admin, second)):
        url = f"/v1/projects/{project['id']}"
        patched = await client.patch(url, headers=account.headers, json={"status": "archived"})
        assert patched.status_code == 200
        assert patched.json()["data"]["owner_id"] == editor.user["id"]  # ownership unchanged
        assert (await client.delete(url, headers=account.headers)).status_code == 204


async def test_other_organizations_projects_are_404(client):
    owner, stranger = await signed_in(client), await signed_in(client)
    project = await create(client, stranger, "Secret")
    url = f"/v1/projects/{project['id']}"
    assert (await client.get(url, headers=owner.headers)).status_code == 404
    assert (
        await client.put(url, headers=owner.headers, json={"title": "x", "status": "active"})
    ).status_code == 404
    assert (await client.patch(url, headers=owner.headers, json={"title": "x"})).status_code == 404
    assert (await client.delete(url, headers=owner.headers)).status_code == 404
    listed = (await client.get("/v1/projects", headers=owner.headers)).json()
    assert all(p["id"] != project["id"] for p in listed["data"])
    assert (await client.get(url, headers=stranger.headers)).json()["data"]["title"] == "Secret"


async def test_if_match_guards_changes(client):
    owner = await signed_in(client)
    project = await create(client, owner)
    url = f"/v1/projects/{project['id']}"
    etag = (await client.get(url, headers=owner.headers)).headers["etag"]

    changed = await client.patch(
        url, headers={**owner.headers, "If-Match": etag}, json={"title": "First edit"}
    )
    assert changed.status_code == 200
    new_etag = changed.headers["etag"]
    assert new_etag != etag
    for method, body in (("PATCH", {"title": "Lost"}), ("PUT", {"title": "L", "status": "active"})):
        stale = await client.request(
            method, url, headers={**owner.headers, "If-Match": etag}, json=body
        )
        assert stale.status_code == 412, method
        assert stale.json()["error"]["code"] == "PRECONDITION_FAILED"
    stale_delete = await client.delete(url, headers={**owner.headers, "If-Match": etag})
    assert stale_delete.status_code == 412
    assert (await client.get(url, headers=owner.headers)).json()["data"]["title"] == "First edit"
    deleted = await client.delete(url, headers={**owner.headers, "If-Match": new_etag})
    assert deleted.status_code == 204


async def test_list_filters_and_sorts(client):
    owner = await signed_in(client)
    editor = await member(client, owner, role="editor")
    alpha = await create(client, owner, "Alpha launch")
    beta = await create(client, editor, "Beta LAUNCH", status="archived")
    gamma = await create(client, owner, "Gamma 100% done")

    async def ids(**params):
        response = await client.get("/v1/projects", headers=owner.headers, params=params)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["data"]]

    assert await ids() == [gamma["id"], beta["id"], alpha["id"]]  # newest first
    assert await ids(sort="created_at") == [alpha["id"], beta["id"], gamma["id"]]
    assert await ids(sort="title") == [alpha["id"], beta["id"], gamma["id"]]
    assert await ids(sort="-title") == [gamma["id"], beta["id"], alpha["id"]]
    assert await ids(status="archived") == [beta["id"]]
    assert await ids(status="active", sort="created_at") == [alpha["id"], gamma["id"]]
    assert await ids(owner_id=editor.user["id"]) == [beta["id"]]
    assert await ids(q="launch", sort="created_at") == [alpha["id"], beta["id"]]
    assert await ids(q="100%") == [gamma["id"]]  # LIKE wildcards are literal
    assert await ids(q="%") == [gamma["id"]]
    assert await ids(q="_") == []
    bad = await client.get("/v1/projects", headers=owner.headers, params={"sort": "owner_id"})
    assert bad.status_code == 422


async def test_cursor_pagination_walks_every_project_once(client):
    owner = await signed_in(client)
    made = [(await create(client, owner, f"Project {i:02d}"))["id"] for i in range(5)]
    for sort, expected in (("-created_at", made[::-1]), ("title", made)):
        seen, cursor = [], None
        while True:
            params = {"limit": 2, "sort": sort, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/projects", headers=owner.headers, params=params)).json()
            assert page["total"] == 5 and page["limit"] == 2
            seen += [p["id"] for p in page["data"]]
            cursor = page["next_cursor"]
            assert page["has_more"] is (cursor is not None)
            if cursor is None:
                break
        assert seen == expected, sort
    await assert_cursor_keeps_its_sort(client, "/v1/projects", owner.headers, other_sort="title")


async def test_api_keys_may_name_a_member_as_owner(client):
    owner = await signed_in(client)
    editor = await member(client, owner, role="editor")
    outsider = await signed_in(client)
    key = await api_key(owner, ["projects:read", "projects:write"])

    named = await client.post(
        "/v1/projects", headers=key, json={"title": "Synced", "owner_id": editor.user["id"]}
    )
    assert named.status_code == 201, named.text
    assert named.json()["data"]["owner_id"] == editor.user["id"]
    ownerless = await client.post("/v1/projects", headers=key, json={"title": "Nobody's"})
    assert ownerless.status_code == 201 and ownerless.json()["data"]["owner_id"] is None
    stranger = await client.post(
        "/v1/projects", headers=key, json={"title": "No", "owner_id": outsider.user["id"]}
    )
    assert stranger.status_code == 422
    assert stranger.json()["error"]["details"][0]["field"] == "owner_id"
    # The refused project left nothing behind: no row, no audit entry, no event.
    titles = [p["title"] for p in (await client.get("/v1/projects", headers=key)).json()["data"]]
    assert sorted(titles) == ["Nobody's", "Synced"]
    entries = await client.get("/v1/audit?action=project.created", headers=owner.headers)
    audited = [e["metadata"]["title"] for e in entries.json()["data"]]
    assert sorted(audited) == ["Nobody's", "Synced"]
    emitted = await client.get("/v1/events?type=project.created", headers=owner.headers)
    assert sorted(e["data"]["title"] for e in emitted.json()["data"]) == ["Nobody's", "Synced"]
    verified = (await client.get("/v1/audit/verify", headers=owner.headers)).json()["data"]
    assert verified["intact"] is True and verified["checked"] >= 2
    # The named owner may now edit it as their own; a key without `admin` owns nothing.
    url = f"/v1/projects/{named.json()['data']['id']}"
    assert (await client.patch(url, headers=key, json={"title": "Key"})).status_code == 403
    admin_key = await api_key(owner, ["admin"])
    assert (await client.patch(url, headers=admin_key, json={"title": "Key"})).status_code == 200
    assert (
        await client.patch(url, headers=editor.headers, json={"title": "Mine"})
    ).status_code == 200


async def test_people_cannot_create_projects_for_someone_else(client):
    owner = await signed_in(client)
    editor = await member(client, owner, role="editor")
    response = await client.post(
        "/v1/projects", headers=owner.headers, json={"title": "Gift", "owner_id": editor.user["id"]}
    )
    assert response.status_code == 403
    own = await client.post(
        "/v1/projects", headers=owner.headers, json={"title": "Self", "owner_id": owner.user["id"]}
    )
    assert own.status_code == 201
