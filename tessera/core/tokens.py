"""Access tokens (JWTs with `kid`), the signing keyring and its JWKS, and opaque secrets.

Keys are PEM files named `<kid>.pem`: the newest file signs, every file verifies, so rotating is
"add a key, later delete the old one once its tokens have expired". The algorithm belongs to the
key: an EC P-256 key signs ES256 (what `generate_pem` makes; signing costs a tenth of RSA's, and
login and refresh sign a token each), an RSA key RS256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm
from jwt.utils import der_to_raw_signature

from tessera.core.ids import new_id
from tessera.core.settings import Settings, get_settings

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class _DeterministicECAlgorithm(ECAlgorithm):
    """ECDSA with RFC 6979 nonces: the same claims give the same token, which a retried refresh
    relies on (see `issue_access_token`). PyJWT's own signs with random nonces."""

    def sign(self, msg: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
        der = key.sign(msg, ec.ECDSA(self.hash_alg(), deterministic_signing=True))
        return der_to_raw_signature(der, key.curve)


_jws = jwt.PyJWS(algorithms=["RS256", "ES256"])
_jws.unregister_algorithm("ES256")
_jws.register_algorithm("ES256", _DeterministicECAlgorithm(hashes.SHA256, ec.SECP256R1))


def _algorithm(key: object, kid: str) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        kind = f"EC curve {key.curve.name}"
    else:
        kind = type(key).__name__
    raise ValueError(
        f"signing key {kid}: {kind} is not supported; "
        "use an EC P-256 key (ES256) or an RSA key (RS256)"
    )


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: PrivateKey
    algorithm: str = field(init=False)
    public: PublicKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", _algorithm(self.private, self.kid))
        object.__setattr__(self, "public", self.private.public_key())


def _load_pem(data: bytes, kid: str) -> SigningKey:
    return SigningKey(kid, serialization.load_pem_private_key(data, password=None))


def generate_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Keyring:
    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise ValueError("no signing keys")
        self.keys = keys
        self.current = keys[-1]
        self._by_kid = {k.kid: k for k in keys}
        self.jwks = {"keys": [_jwk(k) for k in keys]}

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        if settings.signing_key:
            pem = settings.signing_key.encode()
            kid = "k" + hashlib.sha256(pem).hexdigest()[:12]
            return cls([_load_pem(pem, kid)])
        directory = settings.signing_keys_dir or settings.data_dir / "keys"
        if settings.signing_keys_dir is None and not any(directory.glob("*.pem")):
            directory.mkdir(
                parents=True, exist_ok=True
            )  # development only: settings refuse this in production
            path = directory / f"{time.strftime('%Y%m%d%H%M%S')}.pem"
            path.write_bytes(generate_pem())
            path.chmod(0o600)
        files = sorted(Path(directory).glob("*.pem"), key=lambda p: (p.stat().st_mtime, p.name))
        return cls([_load_pem(f.read_bytes(), f.stem) for f in files])

    def key(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)


def _jwk(key: SigningKey) -> dict:
    """RFC 7518 §6.2 (EC: crv, x, y) or §6.3 (RSA: n, e), with use, alg and kid."""
    public = _jws.get_algorithm_by_name(key.algorithm).to_jwk(key.public, as_dict=True)
    public.pop("key_ops", None)  # RFC 7517 §4.3: not together with `use`
    return {**public, "use": "sig", "alg": key.algorithm, "kid": key.kid}


@lru_cache(maxsize=1)
def keyring() -> Keyring:
    return Keyring.from_settings(get_settings())


def issue_access_token(
    claims: dict,
    *,
    ttl_s: int | None = None,
    issued_at: int | None = None,
    jti: str | None = None,
) -> tuple[str, int]:
    """Sign `claims` (sub, org, roles, scope, sid, …) with the current key; returns (jwt, ttl).
    Signatures are deterministic (RS256, and ES256 with RFC 6979 nonces), so the same `issued_at`
    and `jti` (and claims) give the same token again: a refresh retried within the overlap window
    answers the same pair."""
    settings = get_settings()
    ttl = ttl_s or settings.access_token_ttl_s
    now = int(time.time()) if issued_at is None else issued_at
    payload = {
        **claims,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": jti or new_id("jti"),
    }
    key = keyring().current
    # The claims serialised as jwt.encode does; `_jws` rather than jwt.encode for RFC 6979 ES256.
    token = _jws.encode(
        json.dumps(payload, separators=(",", ":")).encode(),
        key.private,
        algorithm=key.algorithm,
        headers={"kid": key.kid},
    )
    return token, ttl


class InvalidToken(Exception):
    pass


# Tokens already verified, by their exact text: a client sends the same token on every request,
# and re-checking a signature it already passed costs more than the rest of a typical read.
# Expiry is still checked on every hit; revocation is checked by the caller (sessions, jti).
_verified: dict[str, tuple[str, dict]] = {}
_VERIFIED_MAX = 20_000


def verify_access_token(token: str) -> dict:
    """Verify signature (key chosen by `kid`, with that key's algorithm only), iss, aud, exp, nbf;
    returns claims."""
    hit = _verified.get(token)
    if hit is not None:
        kid, claims = hit
        # Still unexpired, and its key still in the keyring (a removed key ends its tokens).
        if claims["exp"] > time.time() and keyring().key(kid) is not None:
            return claims
        _verified.pop(token, None)
    claims = _verify(token)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[token] = (jwt.get_unverified_header(token)["kid"], claims)
    return claims


def _verify(token: str) -> dict:
    settings = get_settings()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed token") from exc
    key = keyring().key(str(header.get("kid", "")))
    if key is None:
        raise InvalidToken("unknown key id")
    # The key decides the algorithm, never the token: no RS256 under an EC kid, no HS256 keyed
    # with a public key, no `none`.
    if header.get("alg") != key.algorithm:
        raise InvalidToken("unexpected algorithm")
    try:
        return jwt.decode(
            token,
            key.public,
            algorithms=[key.algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc


def opaque(prefix: str, nbytes: int = 32) -> str:
    """A random bearer secret such as a refresh token or invitation token."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def digest(secret: str) -> str:
    """What is stored for a bearer secret: its SHA-256 (the secret has 256 bits of entropy, so a
    fast hash is enough; passwords, which people choose, use argon2id instead)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def server_secret() -> bytes:
    settings = get_settings()
    if settings.secret_key:
        return settings.secret_key.encode()
    # Development: derive from the signing key so restarts keep working without configuration.
    pem = keyring().current.private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return hashlib.sha256(b"tessera-secret:" + pem).digest()


def derive(prefix: str, secret: str, purpose: str) -> str:
    """A deterministic secret derived from another one (the successor of a refresh token), so the
    same successor can be answered again without ever storing it."""
    mac = hmac.new(server_secret(), f"{purpose}:{secret}".encode(), hashlib.sha256).digest()
    return f"{prefix}_{jwt.utils.base64url_encode(mac).decode()}"
