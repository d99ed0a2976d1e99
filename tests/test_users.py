"""User administration, the signed-in user's account, preferences and sessions, through HTTP."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tessera.core import db
from tests.support.factories import PASSWORD, Account, login, signed_in, unique_email
from tests.support.lists import assert_cursor_keeps_its_sort


async def provision(client, admin: Account, **fields) -> dict:
    body = {"email": unique_email(), "display_name": "Provisioned User", **fields}
    response = await client.post("/v1/users", headers=admin.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def member(client, admin: Account, roles: list[str] | None = None) -> Account:
    """A user of `admin`'s organization, provisioned with a password and signed in."""
    user = await provision(client, admin, password=PASSWORD, roles=roles or ["viewer"])
    tokens = await login(client, user["email"])
    return Account(
        user=tokens["user"],
        organization=admin.organization,
        email=user["email"],
        password=PASSWORD,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def list_all(client, admin: Account, **params) -> list[dict]:
    response = await client.get("/v1/users", headers=admin.headers, params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]


# --- provisioning ----------------------------------------------------------------------------


async def test_create_user_answers_201_with_location_etag_and_no_secrets(client):
    admin = await signed_in(client)
    response = await client.post(
        "/v1/users",
        headers=admin.headers,
        json={
            "email": unique_email("grace").upper(),
            "display_name": "  Grace Hopper ",
            "password": PASSWORD,
            "department": "research",
            "roles": ["editor"],
        },
    )
    assert response.status_code == 201, response.text
    user = response.json()["data"]
    assert response.headers["location"] == f"/v1/users/{user['id']}"
    assert user["email"] == user["email"].lower()
    assert user["display_name"] == "Grace Hopper"
    assert user["roles"] == ["editor"] and user["department"] == "research"
    assert user["org_id"] == admin.organization["id"] and user["status"] == "active"
    assert "password" not in response.text and "argon2" not in response.text
    fetched = await client.get(response.headers["location"], headers=admin.headers)
    assert fetched.status_code == 200
    assert fetched.json()["data"] == user
    assert fetched.headers["etag"] == response.headers["etag"]
    signed = await login(client, user["email"])
    assert signed["user"]["roles"] == ["editor"]


async def test_created_user_defaults_to_viewer_and_without_password_cannot_sign_in(client):
    admin = await signed_in(client)
    user = await provision(client, admin)
    assert user["roles"] == ["viewer"]
    response = await client.post(
        "/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
    )
    assert response.status_code == 401


async def test_taken_email_is_409_case_insensitively(client):
    admin = await signed_in(client)
    other_org = await signed_in(client)
    response = await client.post(
        "/v1/users",
        headers=admin.headers,
        json={"email": other_org.email.upper(), "display_name": "Twin"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"


async def test_weak_password_and_unknown_role_are_422(client):
    admin = await signed_in(client)
    weak = await client.post(
        "/v1/users",
        headers=admin.headers,
        json={"email": unique_email(), "display_name": "Weak", "password": "password1"},
    )
    assert weak.status_code == 422
    assert {d["field"] for d in weak.json()["error"]["details"]} == {"password"}
    unknown = await client.post(
        "/v1/users",
        headers=admin.headers,
        json={"email": unique_email(), "display_name": "Ghost", "roles": ["viewer", "wizard"]},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0] == {
        "field": "roles.1",
        "code": "UNKNOWN_ROLE",
        "message": "No role named 'wizard'.",
    }
    blank = await client.post(
        "/v1/users", headers=admin.headers, json={"email": unique_email(), "display_name": "   "}
    )
    assert blank.status_code == 422


async def test_viewer_cannot_create_users(client):
    admin = await signed_in(client)
    viewer = await member(client, admin)
    response = await client.post(
        "/v1/users",
        headers=viewer.headers,
        json={"email": unique_email(), "display_name": "Sneaky"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    # Reading is allowed to viewers.
    assert (await client.get("/v1/users", headers=viewer.headers)).status_code == 200


async def test_batch_creates_the_good_items_and_reports_the_bad_ones(client):
    admin = await signed_in(client)
    taken = await provision(client, admin)
    good = [unique_email("batch"), unique_email("batch")]
    response = await client.post(
        "/v1/users/batch",
        headers=admin.headers,
        json={
            "items": [
                {"email": good[0], "display_name": "First", "roles": ["editor"]},
                {"email": taken["email"], "display_name": "Duplicate"},
                {"email": unique_email(), "display_name": "Weak", "password": "password1"},
                {"email": unique_email(), "display_name": "Nobody", "roles": ["wizard"]},
                {"email": good[1], "display_name": "Last", "password": PASSWORD},
            ]
        },
    )
    assert response.status_code == 200, response.text
    results = response.json()["data"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == ["created", "error", "error", "error", "created"]
    assert results[1]["error"]["code"] == "CONFLICT"
    assert results[2]["error"]["code"] == "VALIDATION_ERROR"
    assert results[2]["error"]["details"][0]["field"] == "password"
    assert results[3]["error"]["details"][0]["code"] == "UNKNOWN_ROLE"
    assert results[0]["user"]["roles"] == ["editor"]
    listed = {u["email"] for u in await list_all(client, admin)}
    assert set(good) <= listed
    await login(client, good[1])


async def test_batch_is_limited_to_100_items(client):
    admin = await signed_in(client)
    items = [{"email": unique_email(), "display_name": "Bulk"} for _ in range(101)]
    response = await client.post("/v1/users/batch", headers=admin.headers, json={"items": items})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["code"] == "TOO_MANY_ITEMS"


# --- listing ---------------------------------------------------------------------------------


async def _populate(client, admin: Account, count: int) -> list[dict]:
    names = ["Same Name", "Other Name", "Third Name"]
    items = [
        {"email": unique_email(f"walk{i}"), "display_name": names[i % 3]} for i in range(count)
    ]
    response = await client.post("/v1/users/batch", headers=admin.headers, json={"items": items})
    assert all(r["status"] == "created" for r in response.json()["data"])
    return [r["user"] for r in response.json()["data"]]


async def test_total_counts_members_that_are_not_deleted(client):
    """The unfiltered list counts members its own way (the organization's count, kept by
    triggers): it must agree with the page walk and with a filtered count, which counts the
    page's query."""
    admin = await signed_in(client)
    users = await _populate(client, admin, 4)
    gone = await client.delete(f"/v1/users/{users[0]['id']}", headers=admin.headers)
    assert gone.status_code == 204
    deactivated = await client.patch(
        f"/v1/users/{users[1]['id']}", headers=admin.headers, json={"status": "deactivated"}
    )
    assert deactivated.status_code == 200
    listed = (await client.get("/v1/users", headers=admin.headers, params={"limit": 100})).json()
    assert listed["total"] == len(listed["data"]) == 4  # the admin and three members
    assert users[0]["id"] not in {u["id"] for u in listed["data"]}
    by_status = [
        (await client.get("/v1/users", headers=admin.headers, params={"status": s})).json()["total"]
        for s in ("active", "deactivated")
    ]
    assert by_status == [3, 1]


async def test_cursor_walk_returns_every_user_exactly_once(client):
    admin = await signed_in(client)
    await _populate(client, admin, 24)
    for sort in ("-created_at", "display_name", "-email"):
        seen: list[str] = []
        params: dict = {"limit": 7, "sort": sort}
        pages = 0
        while True:
            response = await client.get("/v1/users", headers=admin.headers, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["total"] == 25 and body["limit"] == 7
            seen += [u["id"] for u in body["data"]]
            pages += 1
            if not body["has_more"]:
                assert body["next_cursor"] is None
                break
            params = {"limit": 7, "sort": sort, "cursor": body["next_cursor"]}
        assert pages == 4
        assert len(seen) == len(set(seen)) == 25, sort
    # A page past the end still answers the whole list's total, filtered or not.
    for params in ({"offset": 50}, {"offset": 50, "status": "active"}):
        response = await client.get("/v1/users", headers=admin.headers, params=params)
        body = response.json()
        assert (body["data"], body["total"], body["has_more"]) == ([], 25, False), params


async def test_default_page_and_limit_bounds(client):
    admin = await signed_in(client)
    await _populate(client, admin, 21)
    first = (await client.get("/v1/users", headers=admin.headers)).json()
    assert len(first["data"]) == 20 and first["limit"] == 20 and first["has_more"] is True
    for bad in (0, 101, -1):
        response = await client.get("/v1/users", headers=admin.headers, params={"limit": bad})
        assert response.status_code == 422, bad
        assert response.json()["error"]["details"][0]["field"] == "limit"


async def test_offset_still_works(client):
    admin = await signed_in(client)
    await _populate(client, admin, 9)
    everyone = [u["id"] for u in await list_all(client, admin)]
    response = await client.get(
        "/v1/users", headers=admin.headers, params={"limit": 3, "offset": 4}
    )
    body = response.json()
    assert [u["id"] for u in body["data"]] == everyone[4:7]
    assert body["offset"] == 4 and body["total"] == 10


async def test_cursor_from_another_sort_is_422(client):
    admin = await signed_in(client)
    await _populate(client, admin, 3)
    await assert_cursor_keeps_its_sort(client, "/v1/users", admin.headers, other_sort="email")


async def test_sorting(client):
    admin = await signed_in(client)
    await _populate(client, admin, 6)
    for field in ("email", "display_name", "created_at"):
        ascending = await list_all(client, admin, sort=field)
        values = [(u[field], u["id"]) for u in ascending]
        assert values == sorted(values), field
        descending = await list_all(client, admin, sort=f"-{field}")
        assert [u["id"] for u in descending] == [u["id"] for u in reversed(ascending)], field
    default = await list_all(client, admin)
    assert [u["id"] for u in default] == [u["id"] for u in descending]  # -created_at
    bad = await client.get("/v1/users", headers=admin.headers, params={"sort": "password_hash"})
    assert bad.status_code == 422


async def test_filters(client):
    admin = await signed_in(client)
    ada = await provision(
        client, admin, email=unique_email("ada"), display_name="Ada Lovelace", roles=["editor"]
    )
    await asyncio.sleep(0.01)
    grace = await provision(client, admin, email=unique_email("grace"), display_name="Grace Hop")
    await asyncio.sleep(0.01)
    alan = await provision(
        client, admin, email=unique_email("alan"), display_name="Alan Turing", roles=["editor"]
    )
    deactivated = await client.patch(
        f"/v1/users/{alan['id']}", headers=admin.headers, json={"status": "deactivated"}
    )
    assert deactivated.status_code == 200

    async def ids(**params) -> set[str]:
        return {u["id"] for u in await list_all(client, admin, **params)}

    assert await ids(email=ada["email"].upper()) == {ada["id"]}
    assert await ids(email="nobody@example.com") == set()
    assert await ids(status="deactivated") == {alan["id"]}
    assert await ids(status="active") == {admin.user["id"], ada["id"], grace["id"]}
    assert await ids(role="editor") == {ada["id"], alan["id"]}
    assert await ids(role="owner") == {admin.user["id"]}
    assert await ids(role="wizard") == set()
    assert await ids(q="LOVELACE") == {ada["id"]}
    assert await ids(q="grace-") == {grace["id"]}  # a substring of the email
    assert await ids(q="%") == set()  # LIKE wildcards are literal
    assert await ids(created_after=grace["created_at"]) == {grace["id"], alan["id"]}
    assert await ids(created_before=grace["created_at"]) == {admin.user["id"], ada["id"]}
    assert await ids(created_after=ada["created_at"], created_before=alan["created_at"]) == {
        ada["id"],
        grace["id"],
    }
    bad = await client.get("/v1/users", headers=admin.headers, params={"created_after": "soon"})
    assert bad.status_code == 422
    bad = await client.get("/v1/users", headers=admin.headers, params={"status": "deleted"})
    assert bad.status_code == 422


async def test_list_shows_roles_held_in_the_callers_organization_only(client):
    admin = await signed_in(client)
    await provision(client, admin, roles=["editor", "viewer"])
    users = await list_all(client, admin)
    assert sorted(u["roles"] for u in users) == [["editor", "viewer"], ["owner"]]
    assert all("password" not in u and "password_hash" not in u for u in users)


# --- tenant isolation ------------------------------------------------------------------------


async def test_another_organizations_user_is_404_for_every_operation(client):
    admin = await signed_in(client)
    stranger_admin = await signed_in(client)
    stranger = await provision(client, stranger_admin, password=PASSWORD)
    path = f"/v1/users/{stranger['id']}"
    attempts = [
        client.get(path, headers=admin.headers),
        client.put(path, headers=admin.headers, json={"display_name": "X", "department": None}),
        client.patch(path, headers=admin.headers, json={"status": "deactivated"}),
        client.delete(path, headers=admin.headers),
        client.post(f"{path}/reactivate", headers=admin.headers),
        client.post(f"{path}/unlock", headers=admin.headers),
        client.get(f"{path}/sessions", headers=admin.headers),
        client.delete(f"{path}/sessions", headers=admin.headers),
    ]
    for response in await asyncio.gather(*attempts):
        assert response.status_code == 404, (response.request.method, response.request.url)
        assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    # The owner of the other organization is just as invisible, and nothing changed.
    owner = await client.get(f"/v1/users/{stranger_admin.user['id']}", headers=admin.headers)
    assert owner.status_code == 404
    assert stranger["id"] not in {u["id"] for u in await list_all(client, admin)}
    still = await client.get(path, headers=stranger_admin.headers)
    assert still.json()["data"]["status"] == "active"
    await login(client, stranger["email"])


async def test_unknown_and_malformed_ids_are_404_or_422(client):
    admin = await signed_in(client)
    missing = await client.get("/v1/users/usr_01JD3ZK8Q6V4W2X7Y9A1B3C5D7", headers=admin.headers)
    assert missing.status_code == 404
    malformed = await client.get("/v1/users/usr%00x", headers=admin.headers)
    assert malformed.status_code == 422


# --- changes and ETags -----------------------------------------------------------------------


async def test_if_match_guards_put_patch_and_delete(client):
    admin = await signed_in(client)
    user = await provision(client, admin, department="ops")
    path = f"/v1/users/{user['id']}"
    original = await client.get(path, headers=admin.headers)
    stale = original.headers["etag"]
    changed = await client.patch(
        path, headers={**admin.headers, "If-Match": stale}, json={"display_name": "Renamed"}
    )
    assert changed.status_code == 200
    assert changed.json()["data"]["display_name"] == "Renamed"
    assert changed.json()["data"]["department"] == "ops"
    fresh = changed.headers["etag"]
    assert fresh != stale
    for attempt in (
        client.patch(path, headers={**admin.headers, "If-Match": stale}, json={"status": "active"}),
        client.put(
            path,
            headers={**admin.headers, "If-Match": stale},
            json={"display_name": "Again", "department": None},
        ),
        client.delete(path, headers={**admin.headers, "If-Match": stale}),
    ):
        response = await attempt
        assert response.status_code == 412
        assert response.json()["error"]["code"] == "PRECONDITION_FAILED"
    replaced = await client.put(
        path,
        headers={**admin.headers, "If-Match": fresh},
        json={"display_name": "Replaced", "department": None},
    )
    assert replaced.status_code == 200
    assert replaced.json()["data"]["department"] is None
    assert (await client.get(path, headers=admin.headers)).headers["etag"] == replaced.headers[
        "etag"
    ]
    deleted = await client.delete(
        path, headers={**admin.headers, "If-Match": replaced.headers["etag"]}
    )
    assert deleted.status_code == 204


async def test_put_needs_every_field_and_patch_at_least_one(client):
    admin = await signed_in(client)
    user = await provision(client, admin)
    path = f"/v1/users/{user['id']}"
    partial = await client.put(path, headers=admin.headers, json={"display_name": "Only"})
    assert partial.status_code == 422
    empty = await client.patch(path, headers=admin.headers, json={})
    assert empty.status_code == 422
    status = await client.patch(path, headers=admin.headers, json={"status": "deleted"})
    assert status.status_code == 422


async def test_admins_change_their_own_status_only_through_me(client):
    admin = await signed_in(client)
    path = f"/v1/users/{admin.user['id']}"
    patched = await client.patch(path, headers=admin.headers, json={"status": "deactivated"})
    assert patched.status_code == 409
    assert (await client.delete(path, headers=admin.headers)).status_code == 409
    renamed = await client.patch(path, headers=admin.headers, json={"display_name": "Boss"})
    assert renamed.status_code == 200


async def test_deactivating_a_user_revokes_their_sessions_and_reactivation_restores_sign_in(
    client,
):
    admin = await signed_in(client)
    user = await member(client, admin)
    path = f"/v1/users/{user.user['id']}"
    response = await client.patch(path, headers=admin.headers, json={"status": "deactivated"})
    assert response.json()["data"]["status"] == "deactivated"
    assert (await client.get("/v1/users/me", headers=user.headers)).status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refresh.status_code == 401
    blocked = await client.post("/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert blocked.status_code == 403
    reactivated = await client.post(f"{path}/reactivate", headers=admin.headers)
    assert reactivated.status_code == 200 and reactivated.json()["data"]["status"] == "active"
    await login(client, user.email)


async def test_admin_soft_delete_hides_the_user_and_blocks_sign_in(client):
    admin = await signed_in(client)
    user = await member(client, admin)
    path = f"/v1/users/{user.user['id']}"
    assert (await client.delete(path, headers=admin.headers)).status_code == 204
    assert (await client.get(path, headers=admin.headers)).status_code == 404
    assert (await client.delete(path, headers=admin.headers)).status_code == 404
    assert user.user["id"] not in {u["id"] for u in await list_all(client, admin)}
    assert (await client.get("/v1/users/me", headers=user.headers)).status_code == 401
    denied = await client.post("/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert denied.status_code == 401


async def test_the_last_owner_of_an_organization_with_members_cannot_leave(client):
    admin = await signed_in(client)
    await provision(client, admin)
    response = await client.request(
        "DELETE", "/v1/users/me", headers=admin.headers, json={"password": PASSWORD}
    )
    assert response.status_code == 409
    deactivate = await client.post(
        "/v1/users/me/deactivate", headers=admin.headers, json={"password": PASSWORD}
    )
    assert deactivate.status_code == 409
    assert (await client.get("/v1/users/me", headers=admin.headers)).status_code == 200


# --- the signed-in user ----------------------------------------------------------------------


async def test_update_me(client):
    admin = await signed_in(client)
    viewer = await member(client, admin)
    me = await client.get("/v1/users/me", headers=viewer.headers)
    renamed = await client.patch(
        "/v1/users/me",
        headers={**viewer.headers, "If-Match": me.headers["etag"]},
        json={"display_name": "New Name"},
    )
    assert renamed.status_code == 200
    assert renamed.json()["data"]["display_name"] == "New Name"
    assert (
        renamed.headers["etag"]
        == (await client.get("/v1/users/me", headers=viewer.headers)).headers["etag"]
    )
    stale = await client.patch(
        "/v1/users/me",
        headers={**viewer.headers, "If-Match": me.headers["etag"]},
        json={"display_name": "Stale"},
    )
    assert stale.status_code == 412
    # The department is an access attribute: members do not choose their own.
    department = await client.patch(
        "/v1/users/me", headers=viewer.headers, json={"department": "finance"}
    )
    assert department.status_code == 403
    owner = await client.patch("/v1/users/me", headers=admin.headers, json={"department": "ops"})
    assert owner.status_code == 200 and owner.json()["data"]["department"] == "ops"
    unknown = await client.patch("/v1/users/me", headers=viewer.headers, json={"status": "x"})
    assert unknown.status_code == 422


async def test_preferences_round_trip_and_validation(client):
    account = await signed_in(client)
    defaults = await client.get("/v1/users/me/preferences", headers=account.headers)
    assert defaults.status_code == 200
    assert defaults.json()["data"] == {
        "theme": "system",
        "language": "en",
        "timezone": "UTC",
        "notifications": {"email": True, "sms": False, "push": False, "in_app": True},
    }
    chosen = {
        "theme": "dark",
        "language": "en-GB",
        "timezone": "Europe/London",
        "notifications": {"email": False, "sms": True, "push": True, "in_app": False},
    }
    stored = await client.put(
        "/v1/users/me/preferences",
        headers={**account.headers, "If-Match": defaults.headers["etag"]},
        json=chosen,
    )
    assert stored.status_code == 200 and stored.json()["data"] == chosen
    again = await client.get("/v1/users/me/preferences", headers=account.headers)
    assert again.json()["data"] == chosen and again.headers["etag"] == stored.headers["etag"]
    stale = await client.put(
        "/v1/users/me/preferences",
        headers={**account.headers, "If-Match": defaults.headers["etag"]},
        json=chosen,
    )
    assert stale.status_code == 412
    invalid = [
        ({**chosen, "theme": "neon"}, "theme"),
        ({**chosen, "language": "English"}, "language"),
        ({**chosen, "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({**chosen, "notifications": {"email": True}}, "notifications.sms"),
        ({**chosen, "font": "serif"}, "font"),
        ({k: v for k, v in chosen.items() if k != "theme"}, "theme"),
    ]
    for body, field in invalid:
        response = await client.put("/v1/users/me/preferences", headers=account.headers, json=body)
        assert response.status_code == 422, body
        assert field in {d["field"] for d in response.json()["error"]["details"]}, body
    unchanged = await client.get("/v1/users/me/preferences", headers=account.headers)
    assert unchanged.json()["data"] == chosen


async def test_deactivate_me_needs_the_password_and_revokes_every_session(client):
    account = await signed_in(client, org=False)
    other = await login(client, account.email)
    wrong = await client.post(
        "/v1/users/me/deactivate", headers=account.headers, json={"password": "Not-It-123!"}
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["field"] == "password"
    response = await client.post(
        "/v1/users/me/deactivate", headers=account.headers, json={"password": PASSWORD}
    )
    assert response.status_code == 204
    for token in (account.access_token, other["access_token"]):
        assert (await client.get("/v1/users/me", headers=bearer(token))).status_code == 401
    blocked = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert blocked.status_code == 403


async def test_soft_delete_me(client):
    account = await signed_in(client)
    response = await client.request(
        "DELETE", "/v1/users/me", headers=account.headers, json={"password": PASSWORD}
    )
    assert response.status_code == 204
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 401
    denied = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert denied.status_code == 401
    again = await client.post(
        "/v1/auth/register",
        json={"email": account.email, "password": PASSWORD, "display_name": "Again"},
    )
    assert again.status_code == 409  # a soft-deleted account keeps its email


async def _delete_me(client, account: Account, password: str, *, mode: str):
    return await client.request(
        "DELETE",
        "/v1/users/me",
        headers=account.headers,
        params={"mode": mode},
        json={"password": password},
    )


async def test_hard_delete_me_erases_the_account_and_frees_the_email(client):
    account = await signed_in(client)
    wrong = await _delete_me(client, account, "Wrong-Password-1!", mode="hard")
    assert wrong.status_code == 422
    response = await _delete_me(client, account, PASSWORD, mode="hard")
    assert response.status_code == 204
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 401
    again = await client.post(
        "/v1/auth/register",
        json={"email": account.email, "password": PASSWORD, "display_name": "Again"},
    )
    assert again.status_code == 201
    assert again.json()["data"]["user"]["id"] != account.user["id"]


async def test_delete_me_needs_a_body_and_a_known_mode(client):
    account = await signed_in(client)
    missing = await client.delete("/v1/users/me", headers=account.headers)
    assert missing.status_code in (400, 422)
    mode = await _delete_me(client, account, PASSWORD, mode="shred")
    assert mode.status_code == 422
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 200


# --- sessions --------------------------------------------------------------------------------


async def test_admin_revokes_a_members_session_and_its_token_stops_working(client):
    admin = await signed_in(client)
    user = await member(client, admin)
    second = await login(client, user.email)
    path = f"/v1/users/{user.user['id']}/sessions"
    listed = await client.get(path, headers=admin.headers)
    assert listed.status_code == 200
    sessions = listed.json()["data"]
    assert listed.json()["total"] == 2 and not any(s["current"] for s in sessions)
    first_sid = next(s["id"] for s in sessions if s["id"] != _session_of(second["access_token"]))
    revoked = await client.delete(f"{path}/{first_sid}", headers=admin.headers)
    assert revoked.status_code == 204
    assert (await client.get("/v1/users/me", headers=user.headers)).status_code == 401
    assert (
        await client.get("/v1/users/me", headers=bearer(second["access_token"]))
    ).status_code == 200
    again = await client.delete(f"{path}/{first_sid}", headers=admin.headers)
    assert again.status_code == 404
    assert (await client.delete(path, headers=admin.headers)).status_code == 204
    assert (
        await client.get("/v1/users/me", headers=bearer(second["access_token"]))
    ).status_code == 401
    assert (await client.get(path, headers=admin.headers)).json()["total"] == 0


async def test_members_end_their_own_sessions_but_not_others(client):
    admin = await signed_in(client)
    viewer = await member(client, admin)
    other = await login(client, viewer.email)
    own = f"/v1/users/{viewer.user['id']}/sessions"
    # Their own sessions need no `sessions:read` (the operation's x-permission-self).
    listed = await client.get(own, headers=viewer.headers)
    assert listed.status_code == 200 and listed.json()["total"] == 2
    mine = await client.delete(
        f"{own}/{_session_of(other['access_token'])}", headers=viewer.headers
    )
    assert mine.status_code == 204
    assert (
        await client.get("/v1/users/me", headers=bearer(other["access_token"]))
    ).status_code == 401
    admins = f"/v1/users/{admin.user['id']}/sessions"
    theirs = await client.delete(
        f"{admins}/{_session_of(admin.access_token)}", headers=viewer.headers
    )
    assert theirs.status_code == 403
    assert (await client.delete(admins, headers=viewer.headers)).status_code == 403
    assert (await client.get(admins, headers=viewer.headers)).status_code == 403
    assert (await client.get("/v1/users/me", headers=admin.headers)).status_code == 200
    # Ending all of one's own sessions keeps the one making the request.
    third = await login(client, viewer.email)
    assert (await client.delete(own, headers=viewer.headers)).status_code == 204
    assert (await client.get("/v1/users/me", headers=viewer.headers)).status_code == 200
    assert (
        await client.get("/v1/users/me", headers=bearer(third["access_token"]))
    ).status_code == 401


async def test_a_session_of_another_user_is_404_under_this_user(client):
    admin = await signed_in(client)
    one = await member(client, admin)
    two = await member(client, admin)
    response = await client.delete(
        f"/v1/users/{one.user['id']}/sessions/{_session_of(two.access_token)}",
        headers=admin.headers,
    )
    assert response.status_code == 404
    assert (await client.get("/v1/users/me", headers=two.headers)).status_code == 200


def _session_of(access_token: str) -> str:
    import jwt

    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


async def test_a_header_outside_its_schema_is_422_and_changes_nothing(client):
    account = await signed_in(client)
    response = await client.patch(
        "/v1/users/me",
        json={"display_name": "Never Saved"},
        headers={**account.headers, "If-Match": "x" * 201},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["request_id"]
    assert [(d["field"], d["code"]) for d in error["details"]] == [("If-Match", "TOO_LONG")]
    me = await client.get("/v1/users/me", headers=account.headers)
    assert me.json()["data"]["display_name"] != "Never Saved"


async def _miscounted_organizations() -> list:
    """Organizations whose kept member count differs from a count of their members."""
    recount = text(
        "SELECT o.id, o.member_count, (SELECT count(*) FROM memberships m JOIN users u"
        " ON u.id = m.user_id WHERE m.org_id = o.id AND u.status <> 'deleted') AS members"
        " FROM organizations o"
    )
    async with db.reader() as session:
        rows = (await session.execute(recount)).all()
    return [row for row in rows if row.member_count != row.members]


async def test_the_member_count_follows_every_change_of_membership_and_status(client):
    admin = await signed_in(client)
    users = await _populate(client, admin, 5)
    ids = [u["id"] for u in users]

    async def total() -> int:
        response = await client.get("/v1/users", headers=admin.headers, params={"limit": 1})
        assert await _miscounted_organizations() == []
        return response.json()["total"]

    async def sql(statement: str, user_id: str) -> None:
        async with db.transaction() as session:
            await session.execute(text(statement), {"id": user_id})

    assert await total() == 6
    assert (await client.delete(f"/v1/users/{ids[0]}", headers=admin.headers)).status_code == 204
    assert await total() == 5  # soft-deleted
    removed = await client.delete(
        f"/v1/organizations/{admin.organization['id']}/members/{ids[1]}", headers=admin.headers
    )
    assert removed.status_code == 204, removed.text
    assert await total() == 4  # no longer a member
    await sql("UPDATE users SET status = 'active' WHERE id = :id", ids[0])
    assert await total() == 5  # brought back
    await sql("UPDATE users SET status = 'deactivated' WHERE id = :id", ids[2])
    assert await total() == 5  # deactivated members still count
    await sql("DELETE FROM users WHERE id = :id", ids[3])
    assert await total() == 4  # erased, memberships with it
    await sql("UPDATE users SET status = 'deleted' WHERE id = :id", ids[4])
    await sql("DELETE FROM users WHERE id = :id", ids[4])
    assert await total() == 3  # erased after a soft delete: counted off once
