"""Login lockout per (email, source address), and administrators lifting it, through HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.support.factories import PASSWORD, login, signed_in, unique_email

WRONG = "Wrong-Password-1!"


@pytest.fixture
async def other_ip_client(app):
    transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def fail_until_locked(client, email: str) -> httpx.Response:
    """Four wrong passwords answer 401; the fifth locks (the default threshold)."""
    for _ in range(4):
        response = await client.post("/v1/auth/login", json={"email": email, "password": WRONG})
        assert response.status_code == 401, response.text
    return await client.post("/v1/auth/login", json={"email": email, "password": WRONG})


async def provisioned(client, admin) -> tuple[str, str]:
    email = unique_email("locked")
    response = await client.post(
        "/v1/users",
        headers=admin.headers,
        json={"email": email, "display_name": "Locked Out", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"], email


async def test_five_failures_lock_that_address_only(client, other_ip_client):
    admin = await signed_in(client)
    _, email = await provisioned(client, admin)
    locked = await fail_until_locked(client, email)
    assert locked.status_code == 423
    assert locked.json()["error"]["code"] == "ACCOUNT_LOCKED"
    assert 0 < int(locked.headers["retry-after"]) <= 900
    # The right password does not get through while the lock lasts.
    right = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert right.status_code == 423 and "retry-after" in right.headers
    # Another address is not locked out by this one's failures.
    elsewhere = await other_ip_client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert elsewhere.status_code == 200, elsewhere.text


async def test_unknown_email_locks_exactly_like_a_known_one(client):
    admin = await signed_in(client)
    _, known = await provisioned(client, admin)
    known_locked = await fail_until_locked(client, known)
    ghost_locked = await fail_until_locked(client, unique_email("ghost"))
    assert known_locked.status_code == ghost_locked.status_code == 423
    known_error = {k: v for k, v in known_locked.json()["error"].items() if k != "request_id"}
    ghost_error = {k: v for k, v in ghost_locked.json()["error"].items() if k != "request_id"}
    assert known_error == ghost_error
    assert known_locked.headers["retry-after"] == ghost_locked.headers["retry-after"]


async def test_unlock_restores_sign_in(client):
    admin = await signed_in(client)
    user_id, email = await provisioned(client, admin)
    assert (await fail_until_locked(client, email)).status_code == 423
    response = await client.post(f"/v1/users/{user_id}/unlock", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "active"
    assert response.headers["etag"]
    # Every failure, the lock and the unlock are in the organization's audit trail.
    trail = await client.get(
        "/v1/audit", headers=admin.headers, params={"resource_id": user_id, "limit": 100}
    )
    actions = [entry["action"] for entry in trail.json()["data"]]
    assert actions.count("auth.login_failed") == 4
    assert actions.count("user.locked") == 1 and actions.count("user.unlocked") == 1
    await login(client, email)
    # The counter starts again from zero: four more failures do not lock.
    for _ in range(4):
        again = await client.post("/v1/auth/login", json={"email": email, "password": WRONG})
        assert again.status_code == 401


async def test_unlock_needs_the_permission_and_stays_inside_the_organization(client):
    admin = await signed_in(client)
    user_id, _ = await provisioned(client, admin)
    _, viewer_email = await provisioned(client, admin)
    viewer = await login(client, viewer_email)
    headers = {"Authorization": f"Bearer {viewer['access_token']}"}
    denied = await client.post(f"/v1/users/{user_id}/unlock", headers=headers)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
    stranger = await signed_in(client)
    hidden = await client.post(f"/v1/users/{user_id}/unlock", headers=stranger.headers)
    assert hidden.status_code == 404


async def test_a_token_refresh_does_not_reset_the_failure_count(client):
    admin = await signed_in(client)
    _, email = await provisioned(client, admin)
    session = await login(client, email)
    for _ in range(4):
        response = await client.post("/v1/auth/login", json={"email": email, "password": WRONG})
        assert response.status_code == 401
    # The account's owner refreshing in between must not buy the guesser five more tries.
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 200
    fifth = await client.post("/v1/auth/login", json={"email": email, "password": WRONG})
    assert fifth.status_code == 423
    assert fifth.json()["error"]["code"] == "ACCOUNT_LOCKED" and "retry-after" in fifth.headers


async def test_a_successful_sign_in_clears_the_failures_on_record(client, other_ip_client):
    admin = await signed_in(client)
    _, email = await provisioned(client, admin)
    for _ in range(4):
        response = await client.post("/v1/auth/login", json={"email": email, "password": WRONG})
        assert response.status_code == 401
    # Failures from another address are that address's own: this sign-in leaves them.
    response = await other_ip_client.post(
        "/v1/auth/login", json={"email": email, "password": WRONG}
    )
    assert response.status_code == 401
    await login(client, email)
    # The count starts again: four more wrong passwords do not lock, the fifth does.
    locking = await fail_until_locked(client, email)
    assert locking.status_code == 423, locking.text
    # The other address kept its one failure: four more lock it.
    for attempt in range(4):
        response = await other_ip_client.post(
            "/v1/auth/login", json={"email": email, "password": WRONG}
        )
        assert response.status_code == (423 if attempt == 3 else 401), response.text
