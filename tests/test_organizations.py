"""Organizations, members and invitations, through HTTP: tenant isolation, roles, last-owner rules,
single-use invitations and optimistic concurrency."""

from __future__ import annotations

from sqlalchemy import text

from tests.support.factories import Account, login, register, signed_in, unique_email


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _invite(client, owner: Account, email: str, role: str = "viewer") -> dict:
    response = await client.post(
        f"/v1/organizations/{owner.organization['id']}/invitations",
        json={"email": email, "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def _join(client, owner: Account, role: str = "viewer") -> Account:
    """A new user (without an organization of their own) invited into the owner's organization,
    accepted, and signed in again so their token acts in it with `role`."""
    email = unique_email(role)
    created = await register(client, org=False, email=email)
    invitation = await _invite(client, owner, email, role)
    first = await login(client, email)
    accepted = await client.post(
        "/v1/invitations/accept",
        json={"token": invitation["token"]},
        headers=_bearer(first["access_token"]),
    )
    assert accepted.status_code == 200, accepted.text
    tokens = await login(client, email)
    assert tokens["user"]["org_id"] == owner.organization["id"]
    return Account(
        user={**created["user"], **tokens["user"]},
        organization=owner.organization,
        email=email,
        password=owner.password,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


def _org_url(account: Account, suffix: str = "") -> str:
    return f"/v1/organizations/{account.organization['id']}{suffix}"


# --- organizations ---------------------------------------------------------------------------


async def test_create_list_get_update_delete(client):
    owner = await signed_in(client)
    created = await client.post(
        "/v1/organizations", json={"name": "  Second Org  "}, headers=owner.headers
    )
    assert created.status_code == 201, created.text
    second = created.json()["data"]
    assert second["name"] == "Second Org" and second["require_mfa"] is False
    assert second["id"].startswith("org_")
    assert created.headers["location"] == f"/v1/organizations/{second['id']}"
    assert created.headers["etag"].startswith('"')

    listed = await client.get("/v1/organizations", headers=owner.headers)
    assert listed.status_code == 200
    body = listed.json()
    assert [o["id"] for o in body["data"]] == [owner.organization["id"], second["id"]]
    assert body["total"] == 2 and body["has_more"] is False
    by_name = await client.get("/v1/organizations?sort=-name&limit=1", headers=owner.headers)
    assert by_name.json()["data"][0]["id"] == second["id"]
    assert by_name.json()["has_more"] is True

    fetched = await client.get(_org_url(owner), headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json()["data"] == owner.organization
    assert fetched.headers["etag"].startswith('"')

    patched = await client.patch(
        _org_url(owner), json={"name": "Renamed", "require_mfa": False}, headers=owner.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["name"] == "Renamed"
    assert patched.json()["data"]["require_mfa"] is False
    assert patched.headers["etag"] != fetched.headers["etag"]
    again = await client.get(_org_url(owner), headers=owner.headers)
    assert again.json()["data"]["name"] == "Renamed"

    # Deleting cannot be undone: it needs the current ETag.
    unguarded = await client.delete(_org_url(owner), headers=owner.headers)
    assert unguarded.status_code == 422
    assert unguarded.json()["error"]["details"][0]["field"].lower() == "if-match"
    deleted = await client.delete(
        _org_url(owner), headers={**owner.headers, "If-Match": again.headers["etag"]}
    )
    assert deleted.status_code == 204
    # Sessions acting in the deleted organization end at once.
    assert (await client.get("/v1/organizations", headers=owner.headers)).status_code == 401
    # The owner now signs in to the organization they still belong to.
    tokens = await login(client, owner.email)
    assert tokens["user"]["org_id"] == second["id"]
    remaining = await client.get("/v1/organizations", headers=_bearer(tokens["access_token"]))
    assert [o["id"] for o in remaining.json()["data"]] == [second["id"]]


async def test_another_organization_of_the_caller_is_reached_with_the_roles_held_in_it(client):
    owner = await signed_in(client)
    created = await client.post("/v1/organizations", json={"name": "Side"}, headers=owner.headers)
    url = created.headers["location"]
    # The token acts in the owner's first organization, yet the new one answers at once.
    fetched = await client.get(url, headers=owner.headers)
    assert fetched.status_code == 200, fetched.text
    renamed = await client.patch(
        url,
        json={"name": "Side Renamed"},
        headers={**owner.headers, "If-Match": fetched.headers["etag"]},
    )
    assert renamed.status_code == 200, renamed.text
    # Someone who owns their own organization but is only a viewer here may read, not write.
    guest = await signed_in(client)
    added = await client.post(
        f"{url}/members", json={"email": guest.email, "role": "viewer"}, headers=owner.headers
    )
    assert added.status_code == 201, added.text
    assert (await client.get(url, headers=guest.headers)).status_code == 200
    denied = await client.patch(url, json={"name": "Guest Was Here"}, headers=guest.headers)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
    members = await client.get(f"{url}/members", headers=guest.headers)
    assert {m["user_id"] for m in members.json()["data"]} == {owner.user["id"], guest.user["id"]}

    deleted = await client.delete(
        url, headers={**owner.headers, "If-Match": renamed.headers["etag"]}
    )
    assert deleted.status_code == 204
    assert (await client.get(url, headers=owner.headers)).status_code == 404
    # The owner's session acts in their first organization, which is untouched.
    listed = await client.get("/v1/organizations", headers=owner.headers)
    assert [o["id"] for o in listed.json()["data"]] == [owner.organization["id"]]


async def test_first_organization_becomes_the_default(client):
    loner = await signed_in(client, org=False)
    assert loner.user["org_id"] is None
    created = await client.post("/v1/organizations", json={"name": "Mine"}, headers=loner.headers)
    assert created.status_code == 201
    org_id = created.json()["data"]["id"]
    tokens = await login(client, loner.email)
    assert tokens["user"]["org_id"] == org_id and tokens["user"]["roles"] == ["owner"]
    fetched = await client.get(
        f"/v1/organizations/{org_id}", headers=_bearer(tokens["access_token"])
    )
    assert fetched.status_code == 200


async def test_requiring_mfa_needs_mfa_on_the_callers_own_account(client):
    from tessera.core import db

    owner = await signed_in(client)
    refused = await client.patch(_org_url(owner), json={"require_mfa": True}, headers=owner.headers)
    assert refused.status_code == 409
    assert "MFA" in refused.json()["error"]["message"]
    current = await client.get(_org_url(owner), headers=owner.headers)
    assert current.json()["data"]["require_mfa"] is False
    async with db.transaction() as session:  # a confirmed factor, as enrolling leaves it
        await session.execute(
            text(
                "INSERT INTO mfa_factors (user_id, secret_encrypted, confirmed_at, created_at) "
                "VALUES (:user_id, 'sealed', now(), now())"
            ),
            {"user_id": owner.user["id"]},
        )
    accepted = await client.patch(
        _org_url(owner), json={"require_mfa": True}, headers=owner.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["require_mfa"] is True


async def test_empty_names_are_422(client):
    owner = await signed_in(client)
    for name in ("", "   ", "\t "):
        response = await client.post(
            "/v1/organizations", json={"name": name}, headers=owner.headers
        )
        assert response.status_code == 422, name
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
        assert response.json()["error"]["details"][0]["field"] == "name"
    blank = await client.patch(_org_url(owner), json={"name": "  "}, headers=owner.headers)
    assert blank.status_code == 422
    nothing = await client.patch(_org_url(owner), json={}, headers=owner.headers)
    assert nothing.status_code == 422
    unchanged = await client.get(_org_url(owner), headers=owner.headers)
    assert unchanged.json()["data"]["name"] == owner.organization["name"]


async def test_if_match_guards_update_and_delete(client):
    owner = await signed_in(client)
    etag = (await client.get(_org_url(owner), headers=owner.headers)).headers["etag"]
    stale = await client.patch(
        _org_url(owner), json={"name": "Nope"}, headers={**owner.headers, "If-Match": '"0000"'}
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "PRECONDITION_FAILED"
    ok = await client.patch(
        _org_url(owner), json={"name": "Fresh"}, headers={**owner.headers, "If-Match": etag}
    )
    assert ok.status_code == 200
    replay = await client.patch(
        _org_url(owner), json={"name": "Lost update"}, headers={**owner.headers, "If-Match": etag}
    )
    assert replay.status_code == 412
    gone = await client.delete(_org_url(owner), headers={**owner.headers, "If-Match": etag})
    assert gone.status_code == 412
    current = await client.get(_org_url(owner), headers=owner.headers)
    assert current.json()["data"]["name"] == "Fresh"
    deleted = await client.delete(
        _org_url(owner), headers={**owner.headers, "If-Match": current.headers["etag"]}
    )
    assert deleted.status_code == 204


async def test_only_an_owner_deletes_the_organization(client):
    owner = await signed_in(client)
    admin = await _join(client, owner, "admin")
    etag = (await client.get(_org_url(owner), headers=admin.headers)).headers["etag"]
    response = await client.delete(_org_url(owner), headers={**admin.headers, "If-Match": etag})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert (await client.get(_org_url(owner), headers=owner.headers)).status_code == 200


# --- tenant isolation ------------------------------------------------------------------------


async def test_another_organization_is_404_never_403_or_data(client):
    mine = await signed_in(client)
    theirs = await signed_in(client)
    other = _org_url(theirs)
    their_user = theirs.user["id"]
    attempts = [
        await client.get(other, headers=mine.headers),
        await client.patch(other, json={"name": "Pwned"}, headers=mine.headers),
        await client.delete(other, headers={**mine.headers, "If-Match": f'"{"0" * 32}"'}),
        await client.get(f"{other}/members", headers=mine.headers),
        await client.post(
            f"{other}/members", json={"email": mine.email, "role": "owner"}, headers=mine.headers
        ),
        await client.get(f"{other}/members/{their_user}", headers=mine.headers),
        await client.patch(
            f"{other}/members/{their_user}", json={"roles": ["viewer"]}, headers=mine.headers
        ),
        await client.delete(f"{other}/members/{their_user}", headers=mine.headers),
        await client.get(f"{other}/invitations", headers=mine.headers),
        await client.post(
            f"{other}/invitations", json={"email": unique_email()}, headers=mine.headers
        ),
        # Their member addressed through my own organization is not a member of it.
        await client.get(_org_url(mine, f"/members/{their_user}"), headers=mine.headers),
        await client.delete(_org_url(mine, f"/members/{their_user}"), headers=mine.headers),
    ]
    for response in attempts:
        assert response.status_code == 404, (response.request.method, response.request.url)
        assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
        assert theirs.organization["name"] not in response.text
    listed = await client.get("/v1/organizations", headers=mine.headers)
    assert theirs.organization["id"] not in listed.text
    intact = await client.get(other, headers=theirs.headers)
    assert intact.json()["data"] == theirs.organization
    members = (await client.get(f"{other}/members", headers=theirs.headers)).json()["data"]
    assert [m["user_id"] for m in members] == [their_user]
    assert members[0]["roles"] == ["owner"]


async def test_another_organizations_invitation_is_404(client):
    mine = await signed_in(client)
    theirs = await signed_in(client)
    invitation = await _invite(client, theirs, unique_email())
    url = f"{_org_url(mine)}/invitations/{invitation['id']}"
    assert (await client.get(url, headers=mine.headers)).status_code == 404
    assert (await client.delete(url, headers=mine.headers)).status_code == 404
    theirs_url = f"{_org_url(theirs)}/invitations/{invitation['id']}"
    assert (await client.get(theirs_url, headers=theirs.headers)).status_code == 200


# --- members ---------------------------------------------------------------------------------


async def test_viewer_reads_members_but_cannot_change_them(client):
    owner = await signed_in(client)
    viewer = await _join(client, owner, "viewer")
    assert viewer.user["roles"] == ["viewer"]
    members = await client.get(_org_url(owner, "/members"), headers=viewer.headers)
    assert members.status_code == 200
    roles = {m["email"]: m["roles"] for m in members.json()["data"]}
    assert roles == {owner.email: ["owner"], viewer.email: ["viewer"]}
    outsider = await register(client, org=False)
    attempts = [
        await client.post(
            _org_url(owner, "/members"),
            json={"email": outsider["user"]["email"]},
            headers=viewer.headers,
        ),
        await client.post(
            _org_url(owner, "/invitations"), json={"email": unique_email()}, headers=viewer.headers
        ),
        await client.patch(
            _org_url(owner, f"/members/{viewer.user['id']}"),
            json={"roles": ["admin"]},
            headers=viewer.headers,
        ),
        await client.patch(_org_url(owner), json={"name": "Mine now"}, headers=viewer.headers),
    ]
    for response in attempts:
        assert response.status_code == 403, response.request.url
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    after = await client.get(_org_url(owner, "/members"), headers=owner.headers)
    assert after.json()["total"] == 2


async def test_add_update_and_remove_a_member(client):
    owner = await signed_in(client)
    other = await register(client, org=False)
    email, user_id = other["user"]["email"], other["user"]["id"]

    added = await client.post(
        _org_url(owner, "/members"),
        json={"email": email.upper(), "role": "editor"},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    member = added.json()["data"]
    assert member["user_id"] == user_id and member["roles"] == ["editor"]
    assert added.headers["location"] == _org_url(owner, f"/members/{user_id}")
    assert (await login(client, email))["user"]["org_id"] == owner.organization["id"]

    twice = await client.post(
        _org_url(owner, "/members"), json={"email": email}, headers=owner.headers
    )
    assert twice.status_code == 409
    nobody = await client.post(
        _org_url(owner, "/members"), json={"email": unique_email("ghost")}, headers=owner.headers
    )
    assert nobody.status_code == 404
    bad_role = await client.post(
        _org_url(owner, "/members"),
        json={"email": (await register(client, org=False))["user"]["email"], "role": "wizard"},
        headers=owner.headers,
    )
    assert bad_role.status_code == 422

    url = _org_url(owner, f"/members/{user_id}")
    unknown = await client.patch(url, json={"roles": ["editor", "wizard"]}, headers=owner.headers)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "roles.1"
    etag = (await client.get(url, headers=owner.headers)).headers["etag"]
    updated = await client.patch(
        url, json={"roles": ["admin", "viewer"]}, headers={**owner.headers, "If-Match": etag}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["roles"] == ["admin", "viewer"]
    stale = await client.patch(
        url, json={"roles": ["viewer"]}, headers={**owner.headers, "If-Match": etag}
    )
    assert stale.status_code == 412

    member_tokens = await login(client, email)
    assert member_tokens["user"]["roles"] == ["admin", "viewer"]
    removed = await client.delete(url, headers=owner.headers)
    assert removed.status_code == 204
    # Their sessions in the organization end at once, and they no longer default to it.
    after = await client.get("/v1/organizations", headers=_bearer(member_tokens["access_token"]))
    assert after.status_code == 401
    relogin = await login(client, email)
    assert relogin["user"]["org_id"] is None and relogin["user"]["roles"] == []
    assert (await client.get(url, headers=owner.headers)).status_code == 404
    members = (await client.get(_org_url(owner, "/members"), headers=owner.headers)).json()
    assert [m["user_id"] for m in members["data"]] == [owner.user["id"]]


async def test_last_owner_is_protected(client):
    owner = await signed_in(client)
    me = _org_url(owner, f"/members/{owner.user['id']}")
    demoted = await client.patch(me, json={"roles": ["admin"]}, headers=owner.headers)
    assert demoted.status_code == 409
    assert demoted.json()["error"]["code"] == "CONFLICT"
    left = await client.delete(me, headers=owner.headers)
    assert left.status_code == 409
    still = await client.get(me, headers=owner.headers)
    assert still.json()["data"]["roles"] == ["owner"]

    # An admin cannot take the owner role away either, nor remove the owner.
    admin = await _join(client, owner, "admin")
    assert (
        await client.patch(me, json={"roles": ["viewer"]}, headers=admin.headers)
    ).status_code == 409
    assert (await client.delete(me, headers=admin.headers)).status_code == 409

    # With a second owner, the first may step down.
    co_owner = await _join(client, owner, "owner")
    stepped = await client.patch(me, json={"roles": ["admin"]}, headers=owner.headers)
    assert stepped.status_code == 200
    assert stepped.json()["data"]["roles"] == ["admin"]
    last = _org_url(owner, f"/members/{co_owner.user['id']}")
    assert (await client.delete(last, headers=co_owner.headers)).status_code == 409


async def test_a_deactivated_owner_does_not_keep_the_organization_owned(client):
    """The last-owner rule is one rule on every path: a co-owner counts only while active."""
    owner = await signed_in(client)
    co_owner = await _join(client, owner, "owner")
    co_owner_path = f"/v1/users/{co_owner.user['id']}"
    deactivated = await client.patch(
        co_owner_path, json={"status": "deactivated"}, headers=owner.headers
    )
    assert deactivated.status_code == 200
    me = _org_url(owner, f"/members/{owner.user['id']}")
    assert (
        await client.patch(me, json={"roles": ["admin"]}, headers=owner.headers)
    ).status_code == 409
    assert (await client.delete(me, headers=owner.headers)).status_code == 409
    revoke = f"/v1/users/{owner.user['id']}/roles/owner"
    assert (await client.delete(revoke, headers=owner.headers)).status_code == 409

    reactivated = await client.post(f"{co_owner_path}/reactivate", headers=owner.headers)
    assert reactivated.status_code == 200
    stepped = await client.patch(me, json={"roles": ["admin"]}, headers=owner.headers)
    assert stepped.status_code == 200 and stepped.json()["data"]["roles"] == ["admin"]


# --- invitations -----------------------------------------------------------------------------


async def test_invitation_is_single_use_and_only_for_the_invited_email(client):
    owner = await signed_in(client)
    email = unique_email("invitee")
    invitee = await register(client, org=False, email=email)
    invitation = await _invite(client, owner, email.upper(), "editor")
    assert invitation["email"] == email and invitation["role"] == "editor"
    assert invitation["status"] == "pending" and invitation["token"].startswith("inv_")
    assert invitation["org_id"] == owner.organization["id"]

    stranger = await signed_in(client, org=False)
    wrong = await client.post(
        "/v1/invitations/accept", json={"token": invitation["token"]}, headers=stranger.headers
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "PERMISSION_DENIED"

    tokens = await login(client, email)
    accepted = await client.post(
        "/v1/invitations/accept",
        json={"token": invitation["token"]},
        headers=_bearer(tokens["access_token"]),
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["id"] == owner.organization["id"]
    reused = await client.post(
        "/v1/invitations/accept",
        json={"token": invitation["token"]},
        headers=_bearer(tokens["access_token"]),
    )
    assert reused.status_code == 409
    unknown = await client.post(
        "/v1/invitations/accept",
        json={"token": "inv_thisTokenWasNeverIssued"},
        headers=_bearer(tokens["access_token"]),
    )
    assert unknown.status_code == 404

    members = (await client.get(_org_url(owner, "/members"), headers=owner.headers)).json()
    joined = {m["user_id"]: m for m in members["data"]}
    assert joined[invitee["user"]["id"]]["roles"] == ["editor"]
    assert joined[invitee["user"]["id"]]["email"] == email

    listed = await client.get(_org_url(owner, "/invitations"), headers=owner.headers)
    assert listed.status_code == 200
    assert "token" not in listed.text and invitation["token"] not in listed.text
    assert [(i["id"], i["status"]) for i in listed.json()["data"]] == [
        (invitation["id"], "accepted")
    ]
    single = await client.get(
        _org_url(owner, f"/invitations/{invitation['id']}"), headers=owner.headers
    )
    assert single.json()["data"]["accepted_at"] is not None and "token" not in single.json()["data"]
    revoke = await client.delete(
        _org_url(owner, f"/invitations/{invitation['id']}"), headers=owner.headers
    )
    assert revoke.status_code == 409

    # Used is used: even after leaving, the token does not let them back in.
    removed = await client.delete(
        _org_url(owner, f"/members/{invitee['user']['id']}"), headers=owner.headers
    )
    assert removed.status_code == 204
    tokens = await login(client, email)
    again = await client.post(
        "/v1/invitations/accept",
        json={"token": invitation["token"]},
        headers=_bearer(tokens["access_token"]),
    )
    assert again.status_code == 409
    assert "already been used" in again.json()["error"]["message"]


async def test_expired_revoked_and_superseded_invitations_do_not_work(client):
    from tessera.core import db

    owner = await signed_in(client)
    email = unique_email("late")
    await register(client, org=False, email=email)
    headers = _bearer((await login(client, email))["access_token"])

    expired = await _invite(client, owner, email)
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": expired["id"]},
        )
    late = await client.post(
        "/v1/invitations/accept", json={"token": expired["token"]}, headers=headers
    )
    assert late.status_code == 409
    assert "expired" in late.json()["error"]["message"]

    first = await _invite(client, owner, email)
    second = await _invite(client, owner, email, "editor")  # replaces the pending one
    pending = await client.get(
        _org_url(owner, "/invitations?status=pending"), headers=owner.headers
    )
    assert [i["id"] for i in pending.json()["data"]] == [second["id"]]
    stale = await client.post(
        "/v1/invitations/accept", json={"token": first["token"]}, headers=headers
    )
    assert stale.status_code == 404

    revoked = await client.delete(
        _org_url(owner, f"/invitations/{second['id']}"), headers=owner.headers
    )
    assert revoked.status_code == 204
    gone = await client.post(
        "/v1/invitations/accept", json={"token": second["token"]}, headers=headers
    )
    assert gone.status_code == 404


async def test_inviting_a_member_or_an_unknown_role_fails(client):
    owner = await signed_in(client)
    member = await client.post(
        _org_url(owner, "/invitations"), json={"email": owner.email}, headers=owner.headers
    )
    assert member.status_code == 409
    wizard = await client.post(
        _org_url(owner, "/invitations"),
        json={"email": unique_email(), "role": "wizard"},
        headers=owner.headers,
    )
    assert wizard.status_code == 422
    assert wizard.json()["error"]["details"][0]["code"] == "UNKNOWN_ROLE"


# --- audit -----------------------------------------------------------------------------------


async def test_organization_member_and_invitation_changes_are_audited_by_who_made_them(client):
    owner = await signed_in(client)
    renamed = await client.patch(_org_url(owner), json={"name": "Audited"}, headers=owner.headers)
    assert renamed.status_code == 200
    joined = await _join(client, owner, "viewer")
    member_url = _org_url(owner, f"/members/{joined.user['id']}")
    changed = await client.patch(member_url, json={"roles": ["editor"]}, headers=owner.headers)
    assert changed.status_code == 200
    assert (await client.delete(member_url, headers=owner.headers)).status_code == 204
    pending = await _invite(client, owner, unique_email("never"))
    revoked = await client.delete(
        _org_url(owner, f"/invitations/{pending['id']}"), headers=owner.headers
    )
    assert revoked.status_code == 204

    async def actors(action: str) -> list[str]:
        page = await client.get(f"/v1/audit?action={action}", headers=owner.headers)
        assert page.status_code == 200
        return [entry["actor_id"] for entry in page.json()["data"]]

    by_owner = [owner.user["id"]]
    assert await actors("organization.updated") == by_owner
    assert await actors("invitation.created") == by_owner * 2
    assert await actors("invitation.accepted") == [joined.user["id"]]
    assert await actors("member.updated") == by_owner
    assert await actors("member.removed") == by_owner
    assert await actors("invitation.revoked") == by_owner
