"""Registration, login, tokens, refresh rotation, logout and sessions, through HTTP."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pydantic
import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlmodel import update

from models.common.base import utcnow
from models.identity.users import User
from models.signin.start import start_sign_in_and_commit
from models.signin.token_pairs import RefreshToken
from tessera.core import db, passwords, tokens
from tessera.core.errors import AuthenticationFailed
from tessera.core.settings import Settings, get_settings
from tests.support.factories import PASSWORD, login, register, signed_in, unique_email


async def test_register_login_me(client):
    email = unique_email()
    created = await register(client, email=email.upper())
    assert created["user"]["email"] == email  # stored lower-case
    assert created["user"]["roles"] == ["owner"]
    assert created["organization"]["id"] == created["user"]["org_id"]
    tokens = await login(client, email)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["data"]["id"] == created["user"]["id"]
    assert me.json()["data"]["last_login_at"] is not None
    assert me.headers["etag"].startswith('"')
    assert "password" not in me.text


async def test_register_without_organization(client):
    created = await register(client, org=False)
    assert "organization" not in created
    assert created["user"]["org_id"] is None and created["user"]["roles"] == []


async def test_taken_email_is_409_case_insensitively(client):
    email = unique_email()
    await register(client, email=email)
    response = await client.post(
        "/v1/auth/register",
        json={"email": email.upper(), "password": PASSWORD, "display_name": "Twin"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"


async def test_weak_password_is_422_with_one_detail_per_rule(client):
    response = await client.post(
        "/v1/auth/register",
        json={"email": unique_email(), "password": "password", "display_name": "Weak"},
    )
    assert response.status_code == 422
    codes = {d["code"] for d in response.json()["error"]["details"]}
    assert {
        "TOO_SHORT",
        "MISSING_UPPERCASE",
        "MISSING_DIGIT",
        "MISSING_SPECIAL",
        "COMMON_PASSWORD",
    } <= codes
    assert {d["field"] for d in response.json()["error"]["details"]} == {"password"}


async def test_password_containing_the_email_is_rejected(client):
    response = await client.post(
        "/v1/auth/password/validate",
        json={"password": "Zebrafish-2026-Lovelace!", "email": "lovelace@example.com"},
    )
    data = response.json()["data"]
    assert data["valid"] is False
    assert [p["code"] for p in data["problems"]] == ["CONTAINS_EMAIL"]
    strong = (await client.post("/v1/auth/password/validate", json={"password": PASSWORD})).json()
    assert strong["data"]["valid"] is True and strong["data"]["score"] >= 3


async def test_wrong_password_and_unknown_email_answer_identically(client):
    account = await register(client)
    wrong = await client.post(
        "/v1/auth/login", json={"email": account["user"]["email"], "password": "Wrong-Password-1!"}
    )
    unknown = await client.post(
        "/v1/auth/login", json={"email": unique_email("ghost"), "password": "Wrong-Password-1!"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert wrong.headers["www-authenticate"].startswith("Bearer")


async def test_refresh_rotates_and_old_access_keeps_session(client):
    account = await signed_in(client)
    response = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert response.status_code == 200
    pair = response.json()["data"]
    assert pair["refresh_token"] != account.refresh_token
    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert me.status_code == 200


async def _refresh(client, refresh_token: str):
    return await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


async def _me_status(client, access_token: str) -> int:
    me = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {access_token}"})
    return me.status_code


async def test_concurrent_refresh_within_overlap_gets_the_same_successor(client):
    account = await signed_in(client)
    first, second = await asyncio.gather(
        _refresh(client, account.refresh_token), _refresh(client, account.refresh_token)
    )
    assert first.status_code == second.status_code == 200
    pair = {k: first.json()["data"][k] for k in ("access_token", "refresh_token", "expires_in")}
    assert pair == {k: second.json()["data"][k] for k in pair}  # the same successor pair
    # A retry a moment later (still inside the window) answers that same pair again.
    retry = await _refresh(client, account.refresh_token)
    assert retry.status_code == 200
    assert {k: retry.json()["data"][k] for k in pair} == pair
    assert await _me_status(client, pair["access_token"]) == 200  # and the pair works


async def test_previous_refresh_token_after_the_overlap_window_is_reuse(client):
    account = await signed_in(client)
    first = await _refresh(client, account.refresh_token)
    assert first.status_code == 200
    # Move the rotation back past the 10 s window instead of sleeping through it.
    async with db.transaction() as session:
        await session.exec(
            update(RefreshToken)
            .where(RefreshToken.token_hash == tokens.digest(account.refresh_token))
            .values(used_at=utcnow() - timedelta(seconds=11))
        )
    assert (await _refresh(client, account.refresh_token)).status_code == 401
    # Reuse ends the session: the successor handed out before is dead too.
    successor = first.json()["data"]
    assert (await _refresh(client, successor["refresh_token"])).status_code == 401
    assert await _me_status(client, successor["access_token"]) == 401


async def test_previous_refresh_token_after_its_successor_was_used_is_reuse(client):
    account = await signed_in(client)
    successor = (await _refresh(client, account.refresh_token)).json()["data"]["refresh_token"]
    assert (await _refresh(client, successor)).status_code == 200
    # Within the window, but the successor has moved on: this is no longer a racing twin.
    assert (await _refresh(client, account.refresh_token)).status_code == 401
    assert await _me_status(client, account.access_token) == 401


async def test_reusing_an_older_refresh_token_revokes_the_session(client):
    account = await signed_in(client)
    one = (
        await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    ).json()
    two = (
        await client.post("/v1/auth/refresh", json={"refresh_token": one["data"]["refresh_token"]})
    ).json()
    # The first token is now two generations old: reuse.
    reused = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reused.status_code == 401
    # The whole session is gone: the newest refresh token and access tokens stop working.
    newest = await client.post(
        "/v1/auth/refresh", json={"refresh_token": two["data"]["refresh_token"]}
    )
    assert newest.status_code == 401
    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {two['data']['access_token']}"}
    )
    assert me.status_code == 401


async def test_logout_revokes_the_session_at_once(client):
    account = await signed_in(client)
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 200
    assert (await client.post("/v1/auth/logout", headers=account.headers)).status_code == 204
    after = await client.get("/v1/users/me", headers=account.headers)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 401


async def test_sessions_list_marks_the_current_one(client):
    account = await signed_in(client)
    second = await login(client, account.email)
    response = await client.get("/v1/users/me/sessions", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2 and body["has_more"] is False
    assert sum(s["current"] for s in body["data"]) == 1
    assert all(s["ip"] == "127.0.0.1" for s in body["data"])
    assert second["access_token"] != account.access_token


async def test_password_change_needs_current_password_and_revokes_other_sessions(client):
    account = await signed_in(client)
    other = await login(client, account.email)
    wrong = await client.put(
        "/v1/users/me/password",
        headers=account.headers,
        json={"current_password": "Not-The-Password-1!", "new_password": "Another-Good-Pass-42!"},
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["field"] == "current_password"
    ok = await client.put(
        "/v1/users/me/password",
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": "Another-Good-Pass-42!"},
    )
    assert ok.status_code == 204
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 200
    revoked = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert revoked.status_code == 401
    await login(client, account.email, "Another-Good-Pass-42!")


async def test_jwks_publishes_the_signing_key(client):
    """The suite's signing key is the generated one, so EC P-256: its tokens are ES256 and
    verify offline with the published key alone."""
    account = await signed_in(client)
    import jwt

    jwks = (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(account.access_token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    assert header["alg"] == key.algorithm_name == "ES256"
    claims = jwt.decode(account.access_token, key, audience="tessera-api")
    assert claims["sub"] == account.user["id"]
    assert set(claims) >= {
        "sub",
        "org",
        "roles",
        "scope",
        "sid",
        "iss",
        "aud",
        "iat",
        "nbf",
        "exp",
        "jti",
    }


# --- password hashing and policy settings --------------------------------------------------------


async def _stored_hash(user_id: str) -> str:
    async with db.transaction() as session:
        return (await session.get(User, user_id)).password_hash


async def test_passwords_are_argon2id_with_owasp_parameters_and_rehash_on_login(client):
    account = await register(client)
    user_id = account["user"]["id"]
    assert (await _stored_hash(user_id)).startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    # A hash made under older, weaker parameters is upgraded at the next sign-in.
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with db.transaction() as session:
        (await session.get(User, user_id)).password_hash = weak
    await login(client, account["user"]["email"])
    upgraded = await _stored_hash(user_id)
    assert upgraded != weak and upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    await login(client, account["user"]["email"])  # and the new hash still verifies


async def _sign_in_traces(user_id: str) -> tuple[int, int, int]:
    """Sessions, `user.login` audit entries and `user.login` events of a user."""
    async with db.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM sessions WHERE user_id = :u),"
                    " (SELECT count(*) FROM audit_log WHERE action = 'user.login'"
                    "   AND resource_id = :u),"
                    " (SELECT count(*) FROM events WHERE type = 'user.login'"
                    "   AND data -> 'object' ->> 'id' = :u)"
                ),
                {"u": user_id},
            )
        ).one()
    return tuple(row)


async def test_a_sign_in_refused_at_its_last_step_leaves_nothing_behind(client):
    """Between the password check and the sign-in the user was suspended, or their account
    no longer belongs to the organization read before: no session, audit entry or event."""
    account = await signed_in(client)
    user_id, org_id = account.user["id"], account.organization["id"]
    before = await _sign_in_traces(user_id)
    assert before == (1, 1, 1)
    with pytest.raises(AuthenticationFailed):
        await start_sign_in_and_commit(
            user_id=user_id, org_id="org_elsewhere", ip="10.0.0.9", user_agent=None
        )
    async with db.transaction() as session:
        (await session.get(User, user_id)).status = "suspended"
    with pytest.raises(AuthenticationFailed):
        await start_sign_in_and_commit(
            user_id=user_id, org_id=org_id, ip="10.0.0.9", user_agent=None
        )
    assert await _sign_in_traces(user_id) == before
    async with db.transaction() as session:
        (await session.get(User, user_id)).status = "active"
    await login(client, account.email)
    assert await _sign_in_traces(user_id) == (2, 2, 2)
    verified = await client.get("/v1/audit/verify", headers=account.headers)
    assert verified.json()["data"]["intact"] is True


async def test_hashing_runs_off_the_event_loop(monkeypatch):
    threads = []

    class Recorder:
        def hash(self, password):
            threads.append(threading.get_ident())
            return "hashed"

        def verify(self, stored, password):
            threads.append(threading.get_ident())
            return True

    monkeypatch.setattr(passwords, "hasher", lambda: Recorder())
    assert await passwords.hash_password("x") == "hashed"
    assert await passwords.verify_password("hashed", "x") is True
    assert len(threads) == 2 and threading.get_ident() not in threads


def test_the_minimum_password_length_is_never_below_8(monkeypatch):
    monkeypatch.setenv("TESSERA_PASSWORD_MIN_LENGTH", "7")
    with pytest.raises(pydantic.ValidationError):
        Settings()
    monkeypatch.setenv("TESSERA_PASSWORD_MIN_LENGTH", "8")
    assert Settings().password_min_length == 8


async def test_validate_returns_a_score_and_suggestions_for_a_weak_password(client):
    response = await client.post("/v1/auth/password/validate", json={"password": "abc"})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["valid"] is False and data["score"] <= 1
    assert "TOO_SHORT" in {p["code"] for p in data["problems"]}
    assert data["suggestions"]


async def test_the_email_verification_gate_holds_sign_in_until_verified(client, monkeypatch):
    account = await register(client)
    monkeypatch.setattr(get_settings(), "require_email_verification", True)
    gated = await client.post(
        "/v1/auth/login", json={"email": account["user"]["email"], "password": PASSWORD}
    )
    assert gated.status_code == 403
    assert gated.json()["error"]["code"] == "PERMISSION_DENIED"
    async with db.transaction() as session:
        (await session.get(User, account["user"]["id"])).email_verified = True
    await login(client, account["user"]["email"])
