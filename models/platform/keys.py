"""API keys: shown once, stored as a hash, scoped to an organization and a set of permissions.

A secret is `sk_<environment>_<43 url-safe characters>` (256 random bits). Only its SHA-256
(`tessera.core.tokens.digest`) and a short display prefix are stored; `tessera.auth` finds a key by
that digest. A key never holds a permission its creator does not hold (unless the creator is an
admin), and rotation, which hands out a new secret with the old key's scopes, follows the same rule.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from datetime import UTC, datetime

from sqlalchemy import text
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, rfc3339, text_array_field, timestamp_field, utcnow
from models.identity.roles import PERMISSIONS, grants
from tessera.core import db, tokens
from tessera.core.cache import TTLCache
from tessera.core.caller import Principal, unauthorized
from tessera.core.errors import Conflict, Detail, NotFound, PermissionDenied, ValidationFailed

ENVIRONMENTS = ("live", "test")
PREFIX_LENGTH = 12  # `sk_live_AbCd`: enough to tell keys apart in a list, useless to an attacker


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = id_field("key")
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=200)
    environment: str = Field(default="live", max_length=10)
    prefix: str = Field(max_length=32)
    key_hash: str = Field(unique=True, max_length=64)
    scopes: list[str] = text_array_field()
    allowed_ips: list[str] = text_array_field()
    expires_at: datetime | None = timestamp_field(default=None)
    last_used_at: datetime | None = timestamp_field(default=None)
    created_by: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_field(default_factory=utcnow)
    revoked_at: datetime | None = timestamp_field(default=None)


def public(key: ApiKey) -> dict:
    """What the API shows of a key: never the secret, never its hash."""
    return {
        "id": key.id,
        "name": key.name,
        "environment": key.environment,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "allowed_ips": list(key.allowed_ips),
        "expires_at": rfc3339(key.expires_at),
        "last_used_at": rfc3339(key.last_used_at),
        "created_by": key.created_by,
        "created_at": rfc3339(key.created_at),
        "revoked_at": rfc3339(key.revoked_at),
    }


def new_secret(environment: str) -> str:
    return f"sk_{environment}_{secrets.token_urlsafe(32)}"


# Rules a JSON Schema cannot state; each raises with one detail per offending entry.


def check_scopes(scopes: list[str], *, held: set[str]) -> list[str]:
    """Known permissions only (422), and only ones the caller holds itself (403)."""
    unknown = [
        Detail(f"scopes.{i}", "INVALID_VALUE", f"'{s}' is not a permission.")
        for i, s in enumerate(scopes)
        if s not in PERMISSIONS
    ]
    if unknown:
        raise ValidationFailed("The key's scopes are invalid.", unknown)
    not_held = [
        Detail(f"scopes.{i}", "NOT_HELD", f"You do not hold '{s}' yourself.")
        for i, s in enumerate(scopes)
        if not grants(held, s)
    ]
    if not_held:
        raise PermissionDenied("A key cannot carry a permission its creator lacks.", not_held)
    return sorted(set(scopes))


def check_allowed_ips(allowed_ips: list[str]) -> list[str]:
    """CIDR blocks (a bare address means just that address), normalised: `10.1.2.3/8` is
    stored as `10.0.0.0/8`."""
    networks, bad = [], []
    for i, entry in enumerate(allowed_ips):
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            bad.append(
                Detail(
                    f"allowed_ips.{i}",
                    "INVALID_FORMAT",
                    f"'{entry}' is not an IP address or CIDR block (e.g. 203.0.113.0/24).",
                )
            )
    if bad:
        raise ValidationFailed("The key's IP allowlist is invalid.", bad)
    return list(dict.fromkeys(networks))


def check_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    try:
        expires_at = expires_at.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:00
        expires_at = None
    if expires_at is None or expires_at <= utcnow():
        raise ValidationFailed(
            "The expiry must be in the future.",
            [Detail("expires_at", "NOT_IN_FUTURE", "Use a date-time after the current time.")],
        )
    return expires_at


def _expired(key: ApiKey) -> bool:
    return key.expires_at is not None and key.expires_at <= utcnow()


# Services.


def list_query(*, org_id: str, revoked: bool | None = None):
    stmt = select(ApiKey).where(ApiKey.org_id == org_id)
    if revoked is True:
        stmt = stmt.where(ApiKey.revoked_at.is_not(None))
    elif revoked is False:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return stmt


async def get(
    *, session: AsyncSession, org_id: str, key_id: str, for_update: bool = False
) -> ApiKey:
    """The organization's key; another organization's id is not found."""
    stmt = select(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == org_id)
    if for_update:
        stmt = stmt.with_for_update()
    key = (await session.exec(stmt)).first()
    if key is None:
        raise NotFound("No API key with this id.")
    return key


async def create(
    *,
    session: AsyncSession,
    org_id: str,
    name: str,
    scopes: list[str],
    held: set[str],
    environment: str = "live",
    allowed_ips: list[str] | None = None,
    expires_at: datetime | None = None,
    created_by: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret (returned once; only its digest is stored)."""
    scopes = check_scopes(scopes, held=held)
    networks = check_allowed_ips(allowed_ips or [])
    expires_at = check_expiry(expires_at)
    if environment not in ENVIRONMENTS:
        raise ValidationFailed(
            "Unknown environment.",
            [Detail("environment", "INVALID_VALUE", "Use 'live' or 'test'.")],
        )
    secret = new_secret(environment)
    key = ApiKey(
        org_id=org_id,
        name=name,
        environment=environment,
        prefix=secret[:PREFIX_LENGTH],
        key_hash=tokens.digest(secret),
        scopes=scopes,
        allowed_ips=networks,
        expires_at=expires_at,
        created_by=created_by,
    )
    session.add(key)
    await session.flush()
    return key, secret


def revoke(key: ApiKey) -> bool:
    """Revoke the key; False when it already was (revoking is idempotent)."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    return True


async def rotate(
    *, session: AsyncSession, key: ApiKey, held: set[str], created_by: str | None = None
) -> tuple[ApiKey, str]:
    """Revoke `key` (loaded `for_update`) and create its successor with the same name, scopes,
    allowlist and expiry. A revoked or expired key has no successor."""
    if key.revoked_at is not None:
        raise Conflict("This API key is revoked; create a new key instead.")
    if _expired(key):
        raise Conflict("This API key has expired; create a new key instead.")
    successor, secret = await create(
        session=session,
        org_id=key.org_id,
        name=key.name,
        scopes=list(key.scopes),
        held=held,
        environment=key.environment,
        allowed_ips=list(key.allowed_ips),
        expires_at=key.expires_at,
        created_by=created_by,
    )
    revoke(key)
    return successor, secret


# Keys by the digest of their secret, for a few seconds: revoking or rotating drops the entry.
keys_cache = TTLCache()
# `last_used_at` answers "is this key still in use?": a minute's precision is plenty, and writing
# it on every lookup made each read with a key a write (WAL, row versions, vacuum). One statement
# in autocommit (a data-modifying CTE is atomic): the key's row, and the touch when it is due.
KEY_TOUCH_INTERVAL_S = 60
_FIND_KEY = text(
    "WITH key AS (SELECT id, org_id, scopes, allowed_ips, expires_at, revoked_at, last_used_at "
    "FROM api_keys WHERE key_hash = :h), "
    "touched AS (UPDATE api_keys SET last_used_at = now() FROM key "
    "WHERE api_keys.id = key.id AND (key.last_used_at IS NULL "
    "OR key.last_used_at < now() - make_interval(secs => :every))) "
    "SELECT id, org_id, scopes, allowed_ips, expires_at, revoked_at FROM key"
)


def _ip_allowed(client_ip: str, allowed: list[str]) -> bool:
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in allowed)


async def caller_for(secret: str, client_ip: str) -> Principal:
    """The principal of an API key's secret, used from `client_ip`; 401 otherwise."""
    key_hash = tokens.digest(secret)

    async def find() -> object:
        params = {"h": key_hash, "every": KEY_TOUCH_INTERVAL_S}
        return await db.fetch_one(_FIND_KEY, params) or False

    row = await keys_cache.fetch(key_hash, find)
    if not row:
        unauthorized()
    now = time.time()
    if row.revoked_at is not None or (row.expires_at and row.expires_at.timestamp() <= now):
        unauthorized("The API key is revoked or expired.")
    if not _ip_allowed(client_ip, list(row.allowed_ips)):
        unauthorized("The API key may not be used from this address.")
    return Principal(
        kind="api_key", org_id=row.org_id, permissions=frozenset(row.scopes), key_id=row.id
    )
