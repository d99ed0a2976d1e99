"""TOTP two-step sign-in and recovery codes, through HTTP.

The server's TOTP clock (`models.signin.mfa.clock`) is frozen by the `totp_clock` fixture, so each
test chooses exactly which 30-second step a code belongs to.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, unquote, urlparse

import jwt
import pyotp
import pytest
from sqlalchemy import text

from models.signin import mfa
from tessera.core import db, tokens
from tessera.core.secrets_box import unseal
from tests.support.factories import PASSWORD, Account, new_member, signed_in

CODE_FORMAT = re.compile(r"^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2}$")
STEP = 30


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_015.0  # 15 s into a step, far from its edges

    def advance(self, steps: int = 1) -> None:
        self.now += steps * STEP


@pytest.fixture
def totp_clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(mfa, "clock", lambda: clock.now)
    return clock


def code_at(secret: str, at: float) -> str:
    return pyotp.TOTP(secret).at(at)


async def enable(client, account: Account) -> str:
    response = await client.post("/v1/users/me/2fa/enable", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]["secret"]


async def enable_and_confirm(client, account: Account, clock: Clock) -> tuple[str, list[str]]:
    """MFA on; the current step's code is spent by the confirmation, so the clock moves on."""
    secret = await enable(client, account)
    response = await client.post(
        "/v1/users/me/2fa/verify",
        headers=account.headers,
        json={"code": code_at(secret, clock.now)},
    )
    assert response.status_code == 200, response.text
    clock.advance()
    return secret, response.json()["data"]["recovery_codes"]


async def login(client, account: Account, **extra):
    return await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD, **extra}
    )


async def status(client, account: Account) -> dict:
    response = await client.get("/v1/users/me/2fa", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def error(response) -> dict:
    return response.json()["error"]


# --- enrollment --------------------------------------------------------------------------------


async def test_enable_answers_secret_uri_and_png_qr_and_seals_the_secret(client):
    account = await signed_in(client)
    response = await client.post("/v1/users/me/2fa/enable", headers=account.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    secret = data["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)  # 160 bits of base32
    uri = urlparse(data["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/Tessera:{account.email}"
    query = parse_qs(uri.query)
    assert query["secret"] == [secret] and query["issuer"] == ["Tessera"]
    assert base64.b64decode(data["qr_png_base64"]).startswith(b"\x89PNG\r\n\x1a\n")
    # Not on until confirmed.
    assert await status(client, account) == {
        "enabled": False,
        "confirmed_at": None,
        "recovery_codes_remaining": 0,
    }
    assert (await login(client, account)).status_code == 200

    async with db.transaction() as session:
        stored = (
            await session.execute(
                text("SELECT secret_encrypted FROM mfa_factors WHERE user_id = :u"),
                {"u": account.user["id"]},
            )
        ).scalar_one()
    assert secret not in stored
    assert unseal(stored) == secret

    # Enabling again before confirming replaces the secret.
    again = await enable(client, account)
    assert again != secret


async def test_confirm_turns_mfa_on_and_shows_ten_recovery_codes_once(client, totp_clock):
    account = await signed_in(client)
    secret = await enable(client, account)
    wrong = await client.post(
        "/v1/users/me/2fa/verify",
        headers=account.headers,
        json={"code": code_at(secret, totp_clock.now + 10 * STEP)},
    )
    assert wrong.status_code == 422
    assert [d["field"] for d in error(wrong)["details"]] == ["code"]

    response = await client.post(
        "/v1/users/me/2fa/verify",
        headers=account.headers,
        json={"code": code_at(secret, totp_clock.now)},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["enabled"] is True
    codes = data["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(CODE_FORMAT.match(c) for c in codes)

    state = await status(client, account)
    assert state["enabled"] is True and state["confirmed_at"].endswith("Z")
    assert state["recovery_codes_remaining"] == 10
    # Already on: neither a new secret nor a second confirmation.
    enable_again = await client.post("/v1/users/me/2fa/enable", headers=account.headers)
    assert enable_again.status_code == 409
    assert error(enable_again)["code"] == "CONFLICT"
    confirm_again = await client.post(
        "/v1/users/me/2fa/verify",
        headers=account.headers,
        json={"code": code_at(secret, totp_clock.now + STEP)},
    )
    assert confirm_again.status_code == 409

    async with db.transaction() as session:
        rows = (
            await session.execute(
                text("SELECT code_hash FROM recovery_codes WHERE user_id = :u"),
                {"u": account.user["id"]},
            )
        ).all()
        audited = (
            await session.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE action = 'mfa.enabled' AND actor_id = :u"
                ),
                {"u": account.user["id"]},
            )
        ).scalar_one()
    stored = {row.code_hash for row in rows}
    assert stored == {tokens.digest(c.replace("-", "")) for c in codes}  # digests only
    assert audited == 1


async def test_confirm_without_a_pending_setup_is_409(client):
    account = await signed_in(client)
    response = await client.post(
        "/v1/users/me/2fa/verify", headers=account.headers, json={"code": "123456"}
    )
    assert response.status_code == 409


# --- sign-in ---------------------------------------------------------------------------------


async def test_login_challenge_then_verify_and_codes_are_never_replayed(client, totp_clock):
    account = await signed_in(client)
    secret, _ = await enable_and_confirm(client, account, totp_clock)

    challenged = await login(client, account)
    assert challenged.status_code == 401
    assert error(challenged)["code"] == "MFA_REQUIRED"
    assert challenged.headers["www-authenticate"].startswith("Bearer")
    mfa_token = challenged.headers["tessera-mfa-token"]
    assert mfa_token.startswith("mfa_")

    code = code_at(secret, totp_clock.now)
    verified = await client.post("/v1/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code})
    assert verified.status_code == 200, verified.text
    data = verified.json()["data"]
    assert data["user"]["id"] == account.user["id"] and data["mfa_enrollment_required"] is False
    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {data['access_token']}"}
    )
    assert me.status_code == 200

    # The challenge works once.
    reused = await client.post(
        "/v1/auth/mfa/verify",
        json={"mfa_token": mfa_token, "code": code_at(secret, totp_clock.now + STEP)},
    )
    assert reused.status_code == 401 and error(reused)["code"] == "AUTHENTICATION_FAILED"

    # The same code (same step) with a fresh challenge is a replay.
    fresh = (await login(client, account)).headers["tessera-mfa-token"]
    replayed = await client.post("/v1/auth/mfa/verify", json={"mfa_token": fresh, "code": code})
    assert replayed.status_code == 401
    assert error(replayed)["code"] == "MFA_REQUIRED"
    assert error(replayed)["details"][0]["field"] == "code"

    # The next step's code (one step of drift) works directly at login, once.
    next_code = code_at(secret, totp_clock.now + STEP)
    direct = await login(client, account, mfa_code=next_code)
    assert direct.status_code == 200, direct.text
    again = await login(client, account, mfa_code=next_code)
    assert again.status_code == 401 and error(again)["code"] == "MFA_REQUIRED"
    assert error(again)["details"][0]["field"] == "mfa_code"
    assert again.headers["tessera-mfa-token"].startswith("mfa_")
    # Once a later step was accepted, an earlier one (still inside the window) is refused too.
    totp_clock.advance()
    earlier = await login(client, account, mfa_code=code_at(secret, totp_clock.now - STEP))
    assert earlier.status_code == 401
    # Two steps away is outside the window.
    far = await login(client, account, mfa_code=code_at(secret, totp_clock.now + 2 * STEP))
    assert far.status_code == 401


async def test_password_is_checked_before_the_second_factor(client, totp_clock):
    account = await signed_in(client)
    secret, _ = await enable_and_confirm(client, account, totp_clock)
    response = await client.post(
        "/v1/auth/login",
        json={
            "email": account.email,
            "password": "Wrong-Password-1!",
            "mfa_code": code_at(secret, totp_clock.now),
        },
    )
    assert response.status_code == 401
    assert error(response)["code"] == "AUTHENTICATION_FAILED"
    assert "tessera-mfa-token" not in response.headers
    # The code was not spent by that attempt.
    ok = await login(client, account, mfa_code=code_at(secret, totp_clock.now))
    assert ok.status_code == 200


async def test_recovery_code_works_once(client, totp_clock):
    account = await signed_in(client)
    _, codes = await enable_and_confirm(client, account, totp_clock)

    first = await login(client, account, recovery_code=codes[0])
    assert first.status_code == 200, first.text
    second = await login(client, account, recovery_code=codes[0])
    assert second.status_code == 401 and error(second)["code"] == "MFA_REQUIRED"
    assert error(second)["details"][0]["field"] == "recovery_code"

    # Through the challenge too; case and dashes do not matter.
    token = (await login(client, account)).headers["tessera-mfa-token"]
    typed = codes[1].replace("-", "").upper()
    verified = await client.post(
        "/v1/auth/mfa/verify", json={"mfa_token": token, "recovery_code": typed}
    )
    assert verified.status_code == 200, verified.text
    token = (await login(client, account)).headers["tessera-mfa-token"]
    spent = await client.post(
        "/v1/auth/mfa/verify", json={"mfa_token": token, "recovery_code": codes[1]}
    )
    assert spent.status_code == 401
    assert (await status(client, account))["recovery_codes_remaining"] == 8


async def test_code_and_recovery_code_together_are_rejected(client, totp_clock):
    account = await signed_in(client)
    secret, codes = await enable_and_confirm(client, account, totp_clock)
    response = await login(
        client, account, mfa_code=code_at(secret, totp_clock.now), recovery_code=codes[0]
    )
    assert response.status_code == 422
    token = (await login(client, account)).headers["tessera-mfa-token"]
    missing = await client.post("/v1/auth/mfa/verify", json={"mfa_token": token})
    assert missing.status_code == 422


async def test_expired_or_unknown_challenge_is_refused(client, totp_clock):
    account = await signed_in(client)
    secret, _ = await enable_and_confirm(client, account, totp_clock)
    token = (await login(client, account)).headers["tessera-mfa-token"]
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE email_tokens SET expires_at = now() - interval '1 second' "
                "WHERE token_hash = :h"
            ),
            {"h": tokens.digest(token)},
        )
    code = code_at(secret, totp_clock.now)
    expired = await client.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": code})
    assert expired.status_code == 401 and error(expired)["code"] == "AUTHENTICATION_FAILED"
    unknown = await client.post(
        "/v1/auth/mfa/verify", json={"mfa_token": "mfa_not-a-real-token", "code": code}
    )
    assert unknown.status_code == 401 and error(unknown)["code"] == "AUTHENTICATION_FAILED"


async def test_wrong_codes_count_toward_the_lockout(client, totp_clock):
    account = await signed_in(client)
    secret, _ = await enable_and_confirm(client, account, totp_clock)
    wrong = code_at(secret, totp_clock.now + 10 * STEP)
    for _ in range(2):
        response = await login(client, account, mfa_code=wrong)
        assert response.status_code == 401 and error(response)["code"] == "MFA_REQUIRED"
    token = response.headers["tessera-mfa-token"]
    for _ in range(2):
        response = await client.post(
            "/v1/auth/mfa/verify", json={"mfa_token": token, "code": wrong}
        )
        assert response.status_code == 401 and error(response)["code"] == "MFA_REQUIRED"
    locking = await client.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": wrong})
    assert locking.status_code == 423
    assert error(locking)["code"] == "ACCOUNT_LOCKED"
    assert int(locking.headers["retry-after"]) > 0
    # Locked: the right code and the right password no longer help.
    right = code_at(secret, totp_clock.now)
    assert (
        await client.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": right})
    ).status_code == 423
    assert (await login(client, account, mfa_code=right)).status_code == 423
    async with db.transaction() as session:
        failures = (
            await session.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE resource_id = :u "
                    "AND action IN ('auth.mfa_failed', 'user.locked')"
                ),
                {"u": account.user["id"]},
            )
        ).scalar_one()
    assert failures == 5


async def test_a_correct_password_alone_does_not_reset_the_failure_count(client, totp_clock):
    account = await signed_in(client)
    secret, _ = await enable_and_confirm(client, account, totp_clock)
    wrong = code_at(secret, totp_clock.now + 10 * STEP)
    for _ in range(4):
        assert (await login(client, account, mfa_code=wrong)).status_code == 401
        assert (await login(client, account)).status_code == 401  # password ok, no code
    assert (await login(client, account, mfa_code=wrong)).status_code == 423


# --- recovery codes and disabling --------------------------------------------------------------


async def test_regenerating_recovery_codes_invalidates_the_old_ones(client, totp_clock):
    account = await signed_in(client)
    secret, old = await enable_and_confirm(client, account, totp_clock)
    wrong = await client.post(
        "/v1/users/me/2fa/recovery-codes",
        headers=account.headers,
        json={"code": code_at(secret, totp_clock.now + 10 * STEP)},
    )
    assert wrong.status_code == 422 and error(wrong)["details"][0]["field"] == "code"

    response = await client.post(
        "/v1/users/me/2fa/recovery-codes",
        headers=account.headers,
        json={"code": code_at(secret, totp_clock.now)},
    )
    assert response.status_code == 200
    new = response.json()["data"]["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert (await status(client, account))["recovery_codes_remaining"] == 10
    assert (await login(client, account, recovery_code=old[0])).status_code == 401
    assert (await login(client, account, recovery_code=new[0])).status_code == 200


async def test_disable_needs_the_password_and_a_code(client, totp_clock):
    account = await signed_in(client)
    secret, codes = await enable_and_confirm(client, account, totp_clock)
    url = "/v1/users/me/2fa/disable"
    code = code_at(secret, totp_clock.now)

    no_code = await client.post(url, headers=account.headers, json={"password": PASSWORD})
    assert no_code.status_code == 422 and error(no_code)["details"][0]["field"] == "code"
    bad_password = await client.post(
        url, headers=account.headers, json={"password": "Wrong-Password-1!", "code": code}
    )
    assert bad_password.status_code == 422
    assert error(bad_password)["details"][0]["field"] == "password"
    bad_code = await client.post(
        url,
        headers=account.headers,
        json={"password": PASSWORD, "code": code_at(secret, totp_clock.now + 10 * STEP)},
    )
    assert bad_code.status_code == 422 and error(bad_code)["details"][0]["field"] == "code"
    bad_recovery = await client.post(
        url, headers=account.headers, json={"password": PASSWORD, "recovery_code": "aaaa-bbbb-cc"}
    )
    assert bad_recovery.status_code == 422
    assert error(bad_recovery)["details"][0]["field"] == "recovery_code"
    assert (await status(client, account))["enabled"] is True

    ok = await client.post(
        url, headers=account.headers, json={"password": PASSWORD, "recovery_code": codes[3]}
    )
    assert ok.status_code == 204
    assert await status(client, account) == {
        "enabled": False,
        "confirmed_at": None,
        "recovery_codes_remaining": 0,
    }
    assert (await login(client, account)).status_code == 200  # no second factor any more
    again = await client.post(
        url, headers=account.headers, json={"password": PASSWORD, "code": code}
    )
    assert again.status_code == 409
    async with db.transaction() as session:
        left = (
            await session.execute(
                text("SELECT count(*) FROM recovery_codes WHERE user_id = :u"),
                {"u": account.user["id"]},
            )
        ).scalar_one()
    assert left == 0


async def test_mfa_operations_need_a_signed_in_user(client):
    response = await client.get("/v1/users/me/2fa")
    assert response.status_code == 401


# --- organizations that require MFA ------------------------------------------------------------


async def test_member_of_an_org_requiring_mfa_gets_a_reduced_token_until_enrolled(
    client, totp_clock
):
    account = await signed_in(client)
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE organizations SET require_mfa = true WHERE id = :o"),
            {"o": account.organization["id"]},
        )
    response = await login(client, account)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["mfa_enrollment_required"] is True
    assert data["user"]["roles"] == []
    claims = jwt.decode(data["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "" and claims["roles"] == []
    reduced = Account(
        data["user"],
        account.organization,
        account.email,
        PASSWORD,
        data["access_token"],
        data["refresh_token"],
    )
    denied = await client.get("/v1/events", headers=reduced.headers)
    assert denied.status_code == 403 and error(denied)["code"] == "PERMISSION_DENIED"
    assert (await client.get("/v1/users/me", headers=reduced.headers)).status_code == 200

    # Refreshing does not restore the permissions while MFA is missing.
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": reduced.refresh_token})
    assert refreshed.status_code == 200
    still = refreshed.json()["data"]
    assert (
        await client.get("/v1/events", headers={"Authorization": f"Bearer {still['access_token']}"})
    ).status_code == 403

    # The reduced token can enroll; a refresh then carries the member's full access.
    reduced.access_token = still["access_token"]
    secret, _ = await enable_and_confirm(client, reduced, totp_clock)
    full = await client.post("/v1/auth/refresh", json={"refresh_token": still["refresh_token"]})
    assert full.status_code == 200
    full_headers = {"Authorization": f"Bearer {full.json()['data']['access_token']}"}
    assert (await client.get("/v1/events", headers=full_headers)).status_code == 200

    # From now on sign-in needs the code, and then grants full access at once.
    assert (await login(client, account)).status_code == 401
    signed = await login(client, account, mfa_code=code_at(secret, totp_clock.now))
    assert signed.status_code == 200
    assert signed.json()["data"]["mfa_enrollment_required"] is False
    assert signed.json()["data"]["user"]["roles"] == ["owner"]


async def test_an_admin_requires_mfa_and_members_without_it_are_told_at_login(client, totp_clock):
    owner = await signed_in(client)
    org_url = f"/v1/organizations/{owner.organization['id']}"
    secret, _ = await enable_and_confirm(client, owner, totp_clock)
    required = await client.patch(org_url, json={"require_mfa": True}, headers=owner.headers)
    assert required.status_code == 200, required.text
    assert required.json()["data"]["require_mfa"] is True

    email = await new_member(client, owner, role="admin")
    told = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert told.status_code == 200, told.text
    data = told.json()["data"]
    assert (
        data["mfa_enrollment_required"] is True
        and data["user"]["org_id"] == owner.organization["id"]
    )
    held = {"Authorization": f"Bearer {data['access_token']}"}
    assert (await client.get("/v1/events", headers=held)).status_code == 403
    assert (await client.post("/v1/users/me/2fa/enable", headers=held)).status_code == 200

    # The owner, who has MFA, is not told, and keeps full access.
    signed = await login(client, owner, mfa_code=code_at(secret, totp_clock.now))
    assert signed.status_code == 200
    assert signed.json()["data"]["mfa_enrollment_required"] is False
    owner_headers = {"Authorization": f"Bearer {signed.json()['data']['access_token']}"}
    assert (await client.get("/v1/events", headers=owner_headers)).status_code == 200
