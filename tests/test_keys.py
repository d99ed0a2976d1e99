"""API keys through HTTP: shown once, stored hashed, scoped, IP-restricted, expiring, revocable,
rotatable, and confined to their organization."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import yaml
from sqlalchemy import text

from models.identity.roles import PERMISSIONS
from models.platform import keys as auth
from tessera.core import db, tokens
from tessera.web.contract import SPEC_PATH
from tests.support.factories import signed_in

SECRET = re.compile(r"^sk_(live|test)_[A-Za-z0-9_-]{43}$")


async def create_key(client, account, **fields) -> dict:
    body = {"name": "CI", "scopes": ["keys:read"], **fields}
    response = await client.post("/v1/keys", headers=account.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def as_key(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_create_shows_the_secret_once_and_stores_only_its_digest(client):
    account = await signed_in(client)
    response = await client.post(
        "/v1/keys",
        headers=account.headers,
        json={"name": "Billing sync", "scopes": ["users:read", "keys:read"]},
    )
    assert response.status_code == 201
    key = response.json()["data"]
    assert response.headers["location"] == f"/v1/keys/{key['id']}"
    assert response.headers["etag"].startswith('"')
    secret = key["secret"]
    assert SECRET.match(secret) and secret.startswith("sk_live_")
    assert key["prefix"] == secret[:12]
    assert key["environment"] == "live"
    assert key["scopes"] == ["keys:read", "users:read"]
    assert key["allowed_ips"] == [] and key["expires_at"] is None
    assert key["created_by"] == account.user["id"]
    assert key["last_used_at"] is None and key["revoked_at"] is None

    got = await client.get(f"/v1/keys/{key['id']}", headers=account.headers)
    assert got.status_code == 200
    assert "secret" not in got.json()["data"] and secret not in got.text
    assert got.json()["data"] == {k: v for k, v in key.items() if k != "secret"}
    listed = await client.get("/v1/keys", headers=account.headers)
    assert [k["id"] for k in listed.json()["data"]] == [key["id"]]
    assert secret not in listed.text and "key_hash" not in listed.text

    async with db.transaction() as session:
        row = (
            await session.execute(
                text("SELECT key_hash, prefix FROM api_keys WHERE id = :id"), {"id": key["id"]}
            )
        ).one()
    assert row.key_hash == tokens.digest(secret) and row.prefix == secret[:12]


async def test_test_environment_keys_start_with_sk_test(client):
    account = await signed_in(client)
    key = await create_key(client, account, environment="test")
    assert key["secret"].startswith("sk_test_") and SECRET.match(key["secret"])
    assert key["prefix"].startswith("sk_test_") and key["environment"] == "test"
    response = await client.get("/v1/keys", headers=as_key(key["secret"]))
    assert response.status_code == 200


async def test_key_authenticates_with_either_header_and_acts_with_exactly_its_scopes(client):
    account = await signed_in(client)
    key = await create_key(client, account, scopes=["keys:read"])
    for headers in (as_key(key["secret"]), {"Authorization": f"Bearer {key['secret']}"}):
        listed = await client.get("/v1/keys", headers=headers)
        assert listed.status_code == 200, listed.text
        assert key["id"] in [k["id"] for k in listed.json()["data"]]  # its own organization's
        denied = await client.post(
            "/v1/keys", headers=headers, json={"name": "More", "scopes": ["keys:read"]}
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
        assert "keys:manage" in denied.json()["error"]["message"]
        webhooks = await client.get("/v1/webhooks", headers=headers)
        assert webhooks.status_code == 403


async def test_a_key_cannot_mint_a_scope_its_creator_lacks(client):
    account = await signed_in(client)
    manager = await create_key(client, account, scopes=["keys:manage", "keys:read"])
    headers = as_key(manager["secret"])
    ok = await client.post("/v1/keys", headers=headers, json={"name": "R", "scopes": ["keys:read"]})
    assert ok.status_code == 201, ok.text
    assert ok.json()["data"]["created_by"] is None  # made by a key, not a person
    for scopes in (["keys:read", "users:read"], ["admin"]):
        escalation = await client.post(
            "/v1/keys", headers=headers, json={"name": "Escalate", "scopes": scopes}
        )
        assert escalation.status_code == 403
        body = escalation.json()["error"]
        assert body["code"] == "PERMISSION_DENIED"
        assert body["details"][0]["field"] == f"scopes.{len(scopes) - 1}"
        assert body["details"][0]["code"] == "NOT_HELD"
    # Rotating hands out a new secret with the old key's scopes: the same rule applies.
    wide = await create_key(client, account, scopes=["users:read", "keys:read"])
    rotated = await client.post(f"/v1/keys/{wide['id']}/rotate", headers=headers)
    assert rotated.status_code == 403
    still = await client.get("/v1/keys", headers=as_key(wide["secret"]))
    assert still.status_code == 200
    # An admin key may mint any scope.
    admin = await create_key(client, account, scopes=["admin"])
    minted = await client.post(
        "/v1/keys",
        headers=as_key(admin["secret"]),
        json={"name": "Any", "scopes": ["users:delete", "webhooks:manage"]},
    )
    assert minted.status_code == 201, minted.text


async def test_expired_key_is_refused(client):
    account = await signed_in(client)
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    key = await create_key(client, account, expires_at=in_an_hour)
    assert key["expires_at"] is not None
    assert (await client.get("/v1/keys", headers=as_key(key["secret"]))).status_code == 200
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": key["id"]},
        )
    # Expiry is fixed at creation, so the instance caches it; forget the cached row as a second
    # instance (or a few seconds) would.
    auth.keys_cache.drop(tokens.digest(key["secret"]))
    assert_unauthenticated(await client.get("/v1/keys", headers=as_key(key["secret"])))
    rotate = await client.post(f"/v1/keys/{key['id']}/rotate", headers=account.headers)
    assert rotate.status_code == 409


async def test_expiry_in_the_past_is_422(client):
    account = await signed_in(client)
    response = await client.post(
        "/v1/keys",
        headers=account.headers,
        json={"name": "Old", "scopes": ["keys:read"], "expires_at": "2020-01-01T00:00:00Z"},
    )
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["expires_at"]


async def test_revoked_key_is_refused_at_once_and_revoking_again_is_204(client):
    account = await signed_in(client)
    key = await create_key(client, account)
    assert (await client.get("/v1/keys", headers=as_key(key["secret"]))).status_code == 200
    revoked = await client.delete(f"/v1/keys/{key['id']}", headers=account.headers)
    assert revoked.status_code == 204
    assert_unauthenticated(await client.get("/v1/keys", headers=as_key(key["secret"])))
    assert_unauthenticated(
        await client.get("/v1/keys", headers={"Authorization": f"Bearer {key['secret']}"})
    )
    again = await client.delete(f"/v1/keys/{key['id']}", headers=account.headers)
    assert again.status_code == 204
    shown = (await client.get(f"/v1/keys/{key['id']}", headers=account.headers)).json()["data"]
    assert shown["revoked_at"] is not None
    other = await create_key(client, account)
    only_revoked = await client.get("/v1/keys?revoked=true", headers=account.headers)
    assert [k["id"] for k in only_revoked.json()["data"]] == [key["id"]]
    only_live = await client.get("/v1/keys?revoked=false", headers=account.headers)
    assert [k["id"] for k in only_live.json()["data"]] == [other["id"]]
    assert (
        await client.post(f"/v1/keys/{key['id']}/rotate", headers=account.headers)
    ).status_code == 409


async def test_revoke_with_a_stale_if_match_is_412(client):
    account = await signed_in(client)
    key = await create_key(client, account)
    stale = await client.delete(
        f"/v1/keys/{key['id']}", headers={**account.headers, "If-Match": '"stale"'}
    )
    assert stale.status_code == 412
    assert (await client.get("/v1/keys", headers=as_key(key["secret"]))).status_code == 200
    etag = (await client.get(f"/v1/keys/{key['id']}", headers=account.headers)).headers["etag"]
    fresh = await client.delete(
        f"/v1/keys/{key['id']}", headers={**account.headers, "If-Match": etag}
    )
    assert fresh.status_code == 204


async def test_rotation_replaces_the_secret_and_keeps_the_settings(client):
    account = await signed_in(client)
    in_a_day = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    old = await create_key(
        client,
        account,
        name="Nightly export",
        environment="test",
        scopes=["keys:read", "users:read"],
        allowed_ips=["127.0.0.1", "10.0.0.0/8"],
        expires_at=in_a_day,
    )
    assert (await client.get("/v1/keys", headers=as_key(old["secret"]))).status_code == 200
    response = await client.post(f"/v1/keys/{old['id']}/rotate", headers=account.headers)
    assert response.status_code == 201, response.text
    new = response.json()["data"]
    assert response.headers["location"] == f"/v1/keys/{new['id']}"
    assert new["id"] != old["id"] and new["secret"] != old["secret"]
    assert SECRET.match(new["secret"]) and new["secret"].startswith("sk_test_")
    for field in ("name", "environment", "scopes", "allowed_ips", "expires_at"):
        assert new[field] == old[field], field
    assert_unauthenticated(await client.get("/v1/keys", headers=as_key(old["secret"])))
    assert (await client.get("/v1/keys", headers=as_key(new["secret"]))).status_code == 200
    old_now = (await client.get(f"/v1/keys/{old['id']}", headers=account.headers)).json()["data"]
    assert old_now["revoked_at"] is not None
    again = await client.post(f"/v1/keys/{old['id']}/rotate", headers=account.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"


async def test_ip_allowlist(app, client):
    account = await signed_in(client)
    key = await create_key(client, account, allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    assert key["allowed_ips"] == ["10.0.0.0/8", "2001:db8::/32"]
    refused = await client.get("/v1/keys", headers=as_key(key["secret"]))  # from 127.0.0.1
    assert_unauthenticated(refused)
    inside = httpx.ASGITransport(app=app, client=("10.1.2.3", 1234))
    async with httpx.AsyncClient(transport=inside, base_url="http://testserver") as office:
        accepted = await office.get("/v1/keys", headers=as_key(key["secret"]))
        assert accepted.status_code == 200, accepted.text
        bearer = await office.get("/v1/keys", headers={"Authorization": f"Bearer {key['secret']}"})
        assert bearer.status_code == 200
    outside = httpx.ASGITransport(app=app, client=("11.0.0.1", 1234))
    async with httpx.AsyncClient(transport=outside, base_url="http://testserver") as stranger:
        assert_unauthenticated(await stranger.get("/v1/keys", headers=as_key(key["secret"])))


async def test_another_organizations_key_is_not_found(client):
    alice = await signed_in(client)
    bob = await signed_in(client)
    key = await create_key(client, alice)
    bob_key = await create_key(client, bob, scopes=["keys:read", "keys:manage"])
    for headers in (bob.headers, as_key(bob_key["secret"])):
        for method, path in (
            ("GET", f"/v1/keys/{key['id']}"),
            ("DELETE", f"/v1/keys/{key['id']}"),
            ("POST", f"/v1/keys/{key['id']}/rotate"),
        ):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
        listed = await client.get("/v1/keys", headers=headers)
        assert key["id"] not in [k["id"] for k in listed.json()["data"]]
    assert (await client.get("/v1/keys", headers=as_key(key["secret"]))).status_code == 200
    shown = await client.get(f"/v1/keys/{key['id']}", headers=alice.headers)
    assert shown.json()["data"]["revoked_at"] is None


async def test_unknown_scopes_and_bad_cidrs_are_422_per_entry(client):
    account = await signed_in(client)
    scopes = await client.post(
        "/v1/keys",
        headers=account.headers,
        json={"name": "Bad", "scopes": ["keys:read", "keys:fly"]},
    )
    assert scopes.status_code == 422
    assert [(d["field"], d["code"]) for d in scopes.json()["error"]["details"]] == [
        ("scopes.1", "INVALID_VALUE")
    ]
    cidrs = await client.post(
        "/v1/keys",
        headers=account.headers,
        json={
            "name": "Bad",
            "scopes": ["keys:read"],
            "allowed_ips": ["10.0.0.0/8", "10.0.0.0/33", "1.2.3", "::1/129"],
        },
    )
    assert cidrs.status_code == 422
    details = cidrs.json()["error"]["details"]
    assert [d["field"] for d in details] == ["allowed_ips.1", "allowed_ips.2", "allowed_ips.3"]
    assert {d["code"] for d in details} == {"INVALID_FORMAT"}
    shape = await client.post(
        "/v1/keys",
        headers=account.headers,
        json={"name": "Bad", "scopes": ["keys:read"], "allowed_ips": ["not an ip"]},
    )
    assert shape.status_code == 422
    assert shape.json()["error"]["details"][0]["field"] == "allowed_ips.0"
    listed = await client.get("/v1/keys", headers=account.headers)
    assert listed.json()["total"] == 0


async def test_allowlist_entries_are_normalised(client):
    account = await signed_in(client)
    key = await create_key(client, account, allowed_ips=["10.1.2.3/8", "192.0.2.7", "10.0.0.0/8"])
    assert key["allowed_ips"] == ["10.0.0.0/8", "192.0.2.7/32"]


async def test_last_used_at_is_set_after_use(client):
    account = await signed_in(client)
    key = await create_key(client, account)
    before = (await client.get(f"/v1/keys/{key['id']}", headers=account.headers)).json()["data"]
    assert before["last_used_at"] is None
    assert (await client.get("/v1/keys", headers=as_key(key["secret"]))).status_code == 200
    after = (await client.get(f"/v1/keys/{key['id']}", headers=account.headers)).json()["data"]
    assert after["last_used_at"] is not None
    assert after["last_used_at"] >= after["created_at"]


async def _use_uncached(client, secret: str) -> None:
    """One request with the key, looked up in the database (as after the cache's few seconds)."""
    auth.keys_cache.drop(tokens.digest(secret))
    assert (await client.get("/v1/keys", headers=as_key(secret))).status_code == 200


async def _last_used_at(key_id: str) -> datetime | None:
    async with db.reader() as session:
        query = text("SELECT last_used_at FROM api_keys WHERE id = :id")
        return (await session.execute(query, {"id": key_id})).scalar_one()


async def test_last_used_at_is_written_at_most_once_a_minute(client):
    account = await signed_in(client)
    key = await create_key(client, account)
    await _use_uncached(client, key["secret"])
    first = await _last_used_at(key["id"])
    assert first is not None
    # A use within the minute reads the key but does not rewrite its row.
    await _use_uncached(client, key["secret"])
    assert await _last_used_at(key["id"]) == first
    # Once the recorded use is older than a minute, the next use records itself.
    stale = first - timedelta(seconds=auth.KEY_TOUCH_INTERVAL_S + 1)
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE api_keys SET last_used_at = :at WHERE id = :id"),
            {"at": stale, "id": key["id"]},
        )
    await _use_uncached(client, key["secret"])
    refreshed = await _last_used_at(key["id"])
    assert refreshed is not None and refreshed > first


async def test_list_pages_with_a_cursor(client):
    account = await signed_in(client)
    ids = [(await create_key(client, account, name=f"k{i}"))["id"] for i in range(3)]
    first = (await client.get("/v1/keys?limit=2", headers=account.headers)).json()
    assert first["total"] == 3 and first["has_more"] is True
    assert [k["id"] for k in first["data"]] == ids[::-1][:2]  # newest first
    second = (
        await client.get(
            "/v1/keys", params={"limit": 2, "cursor": first["next_cursor"]}, headers=account.headers
        )
    ).json()
    assert [k["id"] for k in second["data"]] == [ids[0]]
    assert second["has_more"] is False and second["next_cursor"] is None
    # The total is the whole list's on every page, one past the end included.
    assert second["total"] == 3
    past = (await client.get("/v1/keys?limit=2&offset=5", headers=account.headers)).json()
    assert past["data"] == [] and past["total"] == 3 and past["has_more"] is False


def test_the_contract_lists_exactly_the_permission_catalog_as_scopes():
    spec = yaml.safe_load(SPEC_PATH.read_text())
    assert spec["components"]["schemas"]["ApiKeyScope"]["enum"] == list(PERMISSIONS)
