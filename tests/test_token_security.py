"""Adversarial access tokens: every forgery, stale or misdirected token is refused with 401, and
signing-key rotation keeps old tokens valid exactly as long as their key is in the keyring."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tessera import tokens
from tests.support.factories import signed_in


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: dict) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict, *, key=None, kid: str | None = None, algorithm: str = "RS256") -> str:
    """A token signed with the real current key (by default) over `claims`."""
    ring = tokens.keyring()
    return jwt.encode(
        claims,
        key or ring.current.private,
        algorithm=algorithm,
        headers={"kid": kid if kid is not None else ring.current.kid},
    )


def fresh(claims: dict, **changes) -> dict:
    now = int(time.time())
    out = {**claims, "iat": now, "nbf": now, "exp": now + 600, **changes}
    return {k: v for k, v in out.items() if v is not None}


def alg_none(claims: dict) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": tokens.keyring().current.kid}
    return f"{segment(header)}.{segment(fresh(claims))}."


def other_rsa_key(claims: dict) -> str:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return sign(fresh(claims), key=impostor)


def hs256_with_public_pem(claims: dict) -> str:
    """Algorithm confusion: an HMAC keyed with the (public) verification key."""
    ring = tokens.keyring()
    pem = ring.current.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": ring.current.kid}
    signing_input = f"{segment(header)}.{segment(fresh(claims))}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def rs512_with_real_key(claims: dict) -> str:
    return sign(fresh(claims), algorithm="RS512")


def expired(claims: dict) -> str:
    now = int(time.time())
    return sign(fresh(claims, iat=now - 1200, nbf=now - 1200, exp=now - 300))


def wrong_audience(claims: dict) -> str:
    return sign(fresh(claims, aud="someone-else"))


def wrong_issuer(claims: dict) -> str:
    return sign(fresh(claims, iss="https://evil.example.com"))


def not_yet_valid(claims: dict) -> str:
    return sign(fresh(claims, nbf=int(time.time()) + 600))


def missing_sid(claims: dict) -> str:
    return sign(fresh(claims, sid=None))


def missing_exp(claims: dict) -> str:
    return sign(fresh(claims, exp=None))


def unknown_kid(claims: dict) -> str:
    return sign(fresh(claims), kid="k-unknown")


def path_like_kid(claims: dict) -> str:
    return sign(fresh(claims), kid="../../../../dev/null")


def tampered_payload(claims: dict) -> str:
    header, _, signature = sign(fresh(claims)).split(".")
    return f"{header}.{segment(fresh(claims, sub='usr_00000000000000000000000000'))}.{signature}"


FORGERIES = [
    alg_none,
    other_rsa_key,
    hs256_with_public_pem,
    rs512_with_real_key,
    expired,
    wrong_audience,
    wrong_issuer,
    not_yet_valid,
    missing_sid,
    missing_exp,
    unknown_kid,
    path_like_kid,
    tampered_payload,
]


def assert_refused(response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_correctly_made_token_is_accepted(client):
    """The control for every case below: the forging helpers themselves produce good tokens."""
    account = await signed_in(client)
    token = sign(fresh(claims_of(account.access_token)))
    response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("forge", FORGERIES, ids=[f.__name__ for f in FORGERIES])
async def test_forged_or_invalid_token_is_refused(client, forge):
    account = await signed_in(client)
    token = forge(claims_of(account.access_token))
    assert_refused(await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"}))
    # The real token of the same session still works: only the forgery was refused.
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Bearer not.a.jwt",
        "Bearer eyJhbGciOiJSUzI1NiJ9.e30.",
        "Bearer ",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "sk_live_AbCd9kQmZ7pL2sT8wY4bN6cR1dF5gH0jKaBcDeFgHiJ",
        "Bearer sk_live_AbCd9kQmZ7pL2sT8wY4bN6cR1dF5gH0jKaBcDeFgHiJ",
    ],
)
async def test_malformed_credentials_are_refused(client, authorization):
    assert_refused(await client.get("/v1/users/me", headers={"Authorization": authorization}))


async def test_no_credentials_are_refused(client):
    assert_refused(await client.get("/v1/users/me"))


async def test_a_valid_token_under_another_scheme_is_refused(client):
    account = await signed_in(client)
    for scheme in ("Token", "Basic", "JWT"):
        headers = {"Authorization": f"{scheme} {account.access_token}"}
        assert_refused(await client.get("/v1/users/me", headers=headers))


async def test_token_of_a_revoked_session_is_refused(client):
    account = await signed_in(client)
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 200
    assert (await client.post("/v1/auth/logout", headers=account.headers)).status_code == 204
    assert_refused(await client.get("/v1/users/me", headers=account.headers))
    # A fresh token for the same (ended) session is refused too: the session decides.
    reissued = sign(fresh(claims_of(account.access_token)))
    assert_refused(
        await client.get("/v1/users/me", headers={"Authorization": f"Bearer {reissued}"})
    )


def _signing_key(kid: str) -> tokens.SigningKey:
    return tokens.SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


async def test_tokens_of_an_older_key_verify_while_it_stays_in_the_keyring(client, monkeypatch):
    account = await signed_in(client)
    claims = claims_of(account.access_token)
    old, new = _signing_key("k-old"), _signing_key("k-new")
    monkeypatch.setattr(tokens, "keyring", lambda: tokens.Keyring([old, new]))

    old_token = sign(fresh(claims), key=old.private, kid=old.kid)
    new_token, _ = tokens.issue_access_token(
        {k: claims[k] for k in ("sub", "org", "roles", "scope", "sid")}
    )
    assert jwt.get_unverified_header(new_token)["kid"] == "k-new"  # the newest key signs
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert [k["kid"] for k in jwks["keys"]] == ["k-old", "k-new"]
    for token in (old_token, new_token):
        response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text

    # Retire the old key. The keyring is read once per process, so retiring a key means a
    # restart, which also starts with an empty cache of verified tokens.
    monkeypatch.setattr(tokens, "keyring", lambda: tokens.Keyring([new]))
    monkeypatch.setattr(tokens, "_verified", {}, raising=False)
    assert_refused(
        await client.get("/v1/users/me", headers={"Authorization": f"Bearer {old_token}"})
    )
    response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {new_token}"})
    assert response.status_code == 200
