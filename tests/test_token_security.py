"""Adversarial access tokens: every forgery, stale or misdirected token is refused with 401,
whichever kind of key signs (EC P-256: ES256, RSA: RS256); a token is checked only with the
algorithm of the key its `kid` names; signing-key rotation keeps old tokens valid exactly as long
as their key is in the keyring; and a key of any other kind is refused when it is loaded."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm

from tessera.core import tokens
from tessera.core.settings import Settings
from tests.support.factories import signed_in

ALGORITHM = {"EC": "ES256", "RSA": "RS256"}


def new_key(kind: str) -> tokens.PrivateKey:
    if kind == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def key_of(kind: str) -> tokens.PrivateKey:
    """One key per kind for the whole run (an RSA key takes a while to generate)."""
    return new_key(kind)


def kind_of(key: tokens.SigningKey) -> str:
    return next(kind for kind, algorithm in ALGORITHM.items() if algorithm == key.algorithm)


@pytest.fixture(params=list(ALGORITHM))
def ring(request, monkeypatch) -> tokens.Keyring:
    """The keyring signs and verifies with one key of each kind in turn."""
    keyring = tokens.Keyring([tokens.SigningKey(f"k-{request.param}", key_of(request.param))])
    monkeypatch.setattr(tokens, "keyring", lambda: keyring)
    return keyring


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: dict) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict, *, key=None, kid: str | None = None, algorithm: str | None = None) -> str:
    """A token signed with the real current key and its algorithm (by default) over `claims`."""
    current = tokens.keyring().current
    return jwt.encode(
        claims,
        key or current.private,
        algorithm=algorithm or current.algorithm,
        headers={"kid": kid if kid is not None else current.kid},
    )


def fresh(claims: dict, **changes) -> dict:
    now = int(time.time())
    out = {**claims, "iat": now, "nbf": now, "exp": now + 600, **changes}
    return {k: v for k, v in out.items() if v is not None}


def alg_none(claims: dict) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": tokens.keyring().current.kid}
    return f"{segment(header)}.{segment(fresh(claims))}."


def other_key_of_the_same_kind(claims: dict) -> str:
    """The right `kid` and algorithm, signed by someone else's key."""
    return sign(fresh(claims), key=new_key(kind_of(tokens.keyring().current)))


def other_kind_of_key_under_this_kid(claims: dict) -> str:
    """Confusion between key types: ES256 under an RSA key's `kid`, RS256 under an EC key's."""
    other = next(kind for kind in ALGORITHM if kind != kind_of(tokens.keyring().current))
    return sign(fresh(claims), key=key_of(other), algorithm=ALGORITHM[other])


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


def other_hash_with_real_key(claims: dict) -> str:
    """The real key with another hash: RS512, or ES384 (SHA-384 over the P-256 key)."""
    current = tokens.keyring().current
    if current.algorithm == "RS256":
        return sign(fresh(claims), algorithm="RS512")
    header = {"alg": "ES384", "typ": "JWT", "kid": current.kid}
    signing_input = f"{segment(header)}.{segment(fresh(claims))}"
    signature = ECAlgorithm(ECAlgorithm.SHA384).sign(signing_input.encode(), current.private)
    return f"{signing_input}.{b64(signature)}"


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
    other_key_of_the_same_kind,
    other_kind_of_key_under_this_kid,
    hs256_with_public_pem,
    other_hash_with_real_key,
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


async def test_a_correctly_made_token_is_accepted(client, ring):
    """The control for every case below: the forging helpers themselves produce good tokens."""
    account = await signed_in(client)
    token = sign(fresh(claims_of(account.access_token)))
    response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("forge", FORGERIES, ids=[f.__name__ for f in FORGERIES])
async def test_forged_or_invalid_token_is_refused(client, ring, forge):
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


async def test_token_of_a_revoked_session_is_refused(client, ring):
    account = await signed_in(client)
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 200
    assert (await client.post("/v1/auth/logout", headers=account.headers)).status_code == 204
    assert_refused(await client.get("/v1/users/me", headers=account.headers))
    # A fresh token for the same (ended) session is refused too: the session decides.
    reissued = sign(fresh(claims_of(account.access_token)))
    assert_refused(
        await client.get("/v1/users/me", headers={"Authorization": f"Bearer {reissued}"})
    )


@pytest.mark.parametrize(("old_kind", "new_kind"), [("RSA", "EC"), ("EC", "EC"), ("RSA", "RSA")])
async def test_tokens_of_an_older_key_verify_while_it_stays_in_the_keyring(
    client, monkeypatch, old_kind, new_kind
):
    account = await signed_in(client)
    claims = claims_of(account.access_token)
    old = tokens.SigningKey("k-old", new_key(old_kind))
    new = tokens.SigningKey("k-new", new_key(new_kind))
    monkeypatch.setattr(tokens, "keyring", lambda: tokens.Keyring([old, new]))

    old_token = sign(fresh(claims), key=old.private, kid=old.kid, algorithm=old.algorithm)
    new_token, _ = tokens.issue_access_token(
        {k: claims[k] for k in ("sub", "org", "roles", "scope", "sid")}
    )
    header = jwt.get_unverified_header(new_token)
    assert (header["kid"], header["alg"]) == ("k-new", ALGORITHM[new_kind])  # the newest signs
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert [(k["kid"], k["alg"]) for k in jwks["keys"]] == [
        ("k-old", ALGORITHM[old_kind]),
        ("k-new", ALGORITHM[new_kind]),
    ]
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


async def test_a_token_verifies_only_with_the_algorithm_of_the_key_it_names(client, monkeypatch):
    """With an RSA and an EC key both in the keyring, a token signed by one real key but naming
    the other is refused."""
    account = await signed_in(client)
    claims = fresh(claims_of(account.access_token))
    rsa_key = tokens.SigningKey("k-rsa", key_of("RSA"))
    ec_key = tokens.SigningKey("k-ec", key_of("EC"))
    monkeypatch.setattr(tokens, "keyring", lambda: tokens.Keyring([rsa_key, ec_key]))
    for signer, named in ((rsa_key, ec_key), (ec_key, rsa_key)):
        token = sign(claims, key=signer.private, kid=named.kid, algorithm=signer.algorithm)
        assert_refused(
            await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        )
        proper = sign(claims, key=signer.private, kid=signer.kid, algorithm=signer.algorithm)
        response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {proper}"})
        assert response.status_code == 200, response.text


async def test_an_issued_token_verifies_offline_with_the_published_key_set(client, ring):
    """What a resource server does: find the key set in the spec, pick the key by `kid`, verify
    with PyJWT alone (the key's `alg` decides the algorithm)."""
    spec = (await client.get("/openapi.json")).json()
    (jwks_path,) = (
        path
        for path, item in spec["paths"].items()
        if item.get("get", {}).get("operationId") == "get_jwks"
    )
    account = await signed_in(client)
    key_set = jwt.PyJWKSet.from_dict((await client.get(jwks_path)).json())
    header = jwt.get_unverified_header(account.access_token)
    key = key_set[header["kid"]]
    assert header["alg"] == key.algorithm_name == ring.current.algorithm
    claims = jwt.decode(
        account.access_token,
        key,
        audience="tessera-api",
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
    )
    assert claims["sub"] == account.user["id"]
    header_b64, _, signature = account.access_token.split(".")
    tampered = f"{header_b64}.{segment(fresh(claims, sub='usr_00000000000000000000000000'))}"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{tampered}.{signature}", key, audience="tessera-api")


def test_the_same_claims_issued_twice_give_the_same_token(ring):
    """A refresh retried within the overlap window answers the identical pair, so signing must be
    deterministic: RS256 is, and ES256 uses RFC 6979 nonces."""
    claims = {"sub": "usr_01JD3ZK8Q6V4W2X7Y9A1B3C5D7", "sid": "ses_01JD3ZK8Q6V4W2X7Y9A1B3C5D7"}
    now = int(time.time())
    first, _ = tokens.issue_access_token(claims, issued_at=now, jti="jti_retried")
    again, _ = tokens.issue_access_token(claims, issued_at=now, jti="jti_retried")
    assert first == again
    assert tokens.verify_access_token(first)["jti"] == "jti_retried"
    other, _ = tokens.issue_access_token(claims, issued_at=now, jti="jti_other")
    assert other.split(".")[2] != first.split(".")[2]


# --- loading keys ---------------------------------------------------------------------------------


def pem(key, fmt=serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.fixture
def keys_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_SIGNING_KEY", raising=False)
    return tmp_path


def load(directory) -> tokens.Keyring:
    return tokens.Keyring.from_settings(Settings(TESSERA_SIGNING_KEYS_DIR=str(directory)))


# Both PEM encodings of a private key: BEGIN PRIVATE KEY, and BEGIN EC / RSA PRIVATE KEY.
each_pem_format = pytest.mark.parametrize(
    "fmt",
    [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
    ids=["pkcs8", "traditional"],
)


def only_key(keys_dir, kind: str, kid: str, fmt) -> tuple:
    """A keyring of one new `kind` key saved as `kid` in `fmt`: (the key, its signing
    algorithm, its JWK)."""
    key = key_of(kind)
    (keys_dir / f"{kid}.pem").write_bytes(pem(key, fmt))
    ring = load(keys_dir)
    assert ring.current.kid == kid
    (jwk,) = ring.jwks["keys"]
    return key, ring.current.algorithm, jwk


@each_pem_format
def test_an_ec_p256_key_signs_es256_and_is_published_as_an_ec_jwk(keys_dir, fmt):
    key, algorithm, jwk = only_key(keys_dir, "EC", "2026-ec", fmt)
    assert algorithm == "ES256"
    assert set(jwk) == {"kty", "crv", "x", "y", "use", "alg", "kid"}
    assert jwk | {"x": None, "y": None} == {
        "kty": "EC",
        "crv": "P-256",
        "x": None,
        "y": None,
        "use": "sig",
        "alg": "ES256",
        "kid": "2026-ec",
    }
    numbers = key.public_key().public_numbers()
    # RFC 7518 §6.2.1.2: the full 32-octet coordinates, leading zeros kept.
    assert jwt.utils.base64url_decode(jwk["x"]) == numbers.x.to_bytes(32, "big")
    assert jwt.utils.base64url_decode(jwk["y"]) == numbers.y.to_bytes(32, "big")


@each_pem_format
def test_an_rsa_key_keeps_signing_rs256_and_is_published_as_an_rsa_jwk(keys_dir, fmt):
    key, algorithm, jwk = only_key(keys_dir, "RSA", "2025-rsa", fmt)
    assert algorithm == "RS256"
    assert set(jwk) == {"kty", "n", "e", "use", "alg", "kid"}
    assert (jwk["kty"], jwk["use"], jwk["alg"], jwk["e"]) == ("RSA", "sig", "RS256", "AQAB")
    modulus = key.public_key().public_numbers().n
    assert int.from_bytes(jwt.utils.base64url_decode(jwk["n"]), "big") == modulus


def test_a_key_from_the_environment_may_be_ec(monkeypatch):
    monkeypatch.delenv("TESSERA_SIGNING_KEYS_DIR", raising=False)
    settings = Settings(TESSERA_SIGNING_KEY=pem(key_of("EC")).decode())
    assert tokens.Keyring.from_settings(settings).current.algorithm == "ES256"


def test_generated_keys_are_ec_p256(keys_dir):
    (keys_dir / "dev.pem").write_bytes(tokens.generate_pem())
    assert load(keys_dir).current.algorithm == "ES256"


@pytest.mark.parametrize(
    ("key", "named"),
    [
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519PrivateKey"),
        (ec.generate_private_key(ec.SECP384R1()), "EC curve secp384r1"),
        (ec.generate_private_key(ec.SECP256K1()), "EC curve secp256k1"),
    ],
    ids=["ed25519", "p384", "secp256k1"],
)
def test_other_kinds_of_key_are_refused_when_loaded(keys_dir, key, named):
    (keys_dir / "a.pem").write_bytes(pem(key_of("EC")))
    (keys_dir / "b.pem").write_bytes(pem(key))
    expected = (
        f"signing key b: {named} is not supported; "
        "use an EC P-256 key (ES256) or an RSA key (RS256)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        load(keys_dir)
