"""Who is calling, and may they call this operation?

`Authenticate` replaces Connexion's security middleware: after routing, it reads the operation's
`security` and `x-permission` from the contract, resolves the caller from an access JWT or an API
key, enforces the permission (403 PERMISSION_DENIED), and exposes the caller to handlers through
`principal()`. One place decides; handlers never re-implement the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

from sqlalchemy import text
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from models.access import grants
from tessera import db, tokens
from tessera.contract import get_contract
from tessera.errors import ApiError, AuthenticationFailed, PermissionDenied
from tessera.settings import get_settings

API_KEY_PREFIXES = ("sk_live_", "sk_test_")


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" (access JWT) or "api_key" (also OAuth client-credentials tokens)
    org_id: str | None
    permissions: frozenset[str]
    roles: tuple[str, ...] = ()
    user_id: str | None = None
    session_id: str | None = None
    key_id: str | None = None
    client_id: str | None = None  # the OAuth client a token was issued to
    claims: dict = field(default_factory=dict, compare=False)

    def can(self, permission: str) -> bool:
        return grants(set(self.permissions), permission)

    @property
    def actor_id(self) -> str:
        return self.user_id or self.key_id or self.client_id or "anonymous"


_principal: ContextVar[Principal | None] = ContextVar("principal", default=None)


def principal() -> Principal:
    current = _principal.get()
    if current is None:  # only reachable if an operation forgot its `security`
        raise AuthenticationFailed("Authentication credentials are missing or invalid.")
    return current


def current_principal() -> Principal | None:
    """The caller of a secured operation; None on public operations."""
    return _principal.get()


def require_user() -> Principal:
    """For operations that act as a signed-in person (their sessions, their password)."""
    current = principal()
    if current.user_id is None:
        raise PermissionDenied("This operation needs a user's access token, not an API key.")
    return current


def require_org() -> Principal:
    current = principal()
    if current.org_id is None:
        raise PermissionDenied("Join or create an organization first.")
    return current


class _TTLCache:
    """Answers for a few seconds: revocation reaches every instance within that time."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, object]] = {}
        self._loading: dict[str, asyncio.Future] = {}

    async def fetch(self, key: str, load: Callable[[], Awaitable[object]]):
        """The cached answer, else what `load()` answers (never None), cached. Concurrent misses
        for one key share one load: when a hot session's entry expired, every request in flight
        for it waited on the same row's lock, one after the other (`make bench`: the p99 of
        reads)."""
        value = self.get(key)
        if value is not None:
            return value
        pending = self._loading.get(key)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = self._loading[key] = asyncio.ensure_future(self._load(key, load))
        # Shielded: a caller that goes away does not cancel the others' answer.
        return await asyncio.shield(pending)

    async def _load(self, key: str, load: Callable[[], Awaitable[object]]):
        try:
            value = await load()
            self.put(key, value)
            return value
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]

    def get(self, key: str):
        entry = self._entries.get(key)
        if entry and entry[0] > time.monotonic():
            return entry[1]
        return None

    def put(self, key: str, value: object) -> None:
        if len(self._entries) > 50_000:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + get_settings().session_cache_s, value)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)


sessions_cache = _TTLCache()
keys_cache = _TTLCache()
# OAuth tokens by jti: (revoked?, current scopes of the client or None when it is gone).
revoked_cache = _TTLCache()

_TOUCH_SESSION = text(
    "UPDATE sessions SET last_seen_at = now() "
    "WHERE id = :sid AND revoked_at IS NULL AND expires_at > now() RETURNING id"
)
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


def _unauthorized(reason: str = "Authentication credentials are missing or invalid.") -> None:
    raise AuthenticationFailed(
        reason, headers={"WWW-Authenticate": 'Bearer realm="tessera", error="invalid_token"'}
    )


async def _session_active(session_id: str) -> bool:
    async def touch() -> bool:
        return await db.fetch_one(_TOUCH_SESSION, {"sid": session_id}) is not None

    return bool(await sessions_cache.fetch(session_id, touch))


_OAUTH_TOKEN = text(
    "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = :jti) AS revoked, "
    "(SELECT scopes FROM oauth_clients WHERE id = :cid AND org_id = :org) AS scopes"
)


async def _oauth_client_scopes(claims: dict) -> frozenset[str] | None:
    """For a token issued to an OAuth client: the client's current scopes, or None when the
    token was revoked (RFC 7009) or the client no longer exists."""
    params = {"jti": claims["jti"], "cid": claims["client_id"], "org": claims.get("org")}

    async def look_up() -> tuple[bool, frozenset[str] | None]:
        row = await db.fetch_one(_OAUTH_TOKEN, params)
        return row.revoked, None if row.scopes is None else frozenset(row.scopes)

    revoked, scopes = await revoked_cache.fetch(claims["jti"], look_up)
    return None if revoked else scopes


async def from_access_token(token: str) -> Principal:
    try:
        claims = tokens.verify_access_token(token)
    except tokens.InvalidToken:
        _unauthorized()
    permissions = frozenset(str(claims.get("scope", "")).split())
    client_id = claims.get("client_id")
    if client_id:
        client_scopes = await _oauth_client_scopes(claims)
        if client_scopes is None:
            _unauthorized("The token was revoked.")
        # Never more than the client holds now (its scopes may have been narrowed since).
        permissions = frozenset(p for p in permissions if grants(set(client_scopes), p))
    sid = claims.get("sid")
    if not sid and client_id and claims["sub"] == client_id:
        # Client credentials (RFC 6749 §4.4): the client acting as its organization.
        return Principal(
            kind="api_key",
            org_id=claims.get("org"),
            permissions=permissions,
            client_id=client_id,
            claims=claims,
        )
    if not sid or not await _session_active(sid):
        _unauthorized("The session has ended; sign in again.")
    return Principal(
        kind="user",
        org_id=claims.get("org"),
        permissions=permissions,
        roles=tuple(claims.get("roles", [])),
        user_id=claims["sub"],
        session_id=sid,
        client_id=client_id,
        claims=claims,
    )


def _ip_allowed(client_ip: str, allowed: list[str]) -> bool:
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in allowed)


async def from_api_key(secret: str, client_ip: str) -> Principal:
    key_hash = tokens.digest(secret)

    async def find() -> object:
        params = {"h": key_hash, "every": KEY_TOUCH_INTERVAL_S}
        return await db.fetch_one(_FIND_KEY, params) or False

    row = await keys_cache.fetch(key_hash, find)
    if not row:
        _unauthorized()
    now = time.time()
    if row.revoked_at is not None or (row.expires_at and row.expires_at.timestamp() <= now):
        _unauthorized("The API key is revoked or expired.")
    if not _ip_allowed(client_ip, list(row.allowed_ips)):
        _unauthorized("The API key may not be used from this address.")
    return Principal(
        kind="api_key", org_id=row.org_id, permissions=frozenset(row.scopes), key_id=row.id
    )


async def authenticate(headers: Headers, client_ip: str) -> Principal:
    api_key = headers.get("x-api-key")
    if api_key:
        return await from_api_key(api_key, client_ip)
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        _unauthorized()
    if credentials.startswith(API_KEY_PREFIXES):
        return await from_api_key(credentials, client_ip)
    return await from_access_token(credentials)


async def acting_in(caller: Principal, org_id: str) -> Principal:
    """A person's access token acts in one organization (its `org`). On the operations of
    another organization they belong to (`/v1/organizations/{org_id}/…`) they act there, with
    the roles they hold in it, read now. Anyone else keeps their principal and the operation
    answers 404 for the foreign id, as for any other tenant's resource."""
    if caller.kind != "user" or caller.client_id is not None or org_id == caller.org_id:
        return caller
    from models import auth as sign_in  # models.auth -> tessera.activity -> this module
    from models import organizations
    from models.users import User

    async with db.reader() as session:
        user = await session.get(User, caller.user_id)
        if user is None or not await organizations.is_member(
            session=session, org_id=org_id, user_id=user.id
        ):
            return caller
        roles, permissions = await sign_in.org_access(session=session, user=user, org_id=org_id)
    return replace(caller, org_id=org_id, roles=tuple(roles), permissions=frozenset(permissions))


# `x-permission: authenticated`: any signed-in caller; the operation acts on their own account.
AUTHENTICATED = "authenticated"


def _needed(declared: str | None) -> str | None:
    return None if declared in (None, AUTHENTICATED) else declared


class Authenticate:
    """Who is calling, and whether they may call this operation. `on_refused(scope, caller)` is
    awaited before a refusal is raised (the rate limiter counts refused requests too)."""

    def __init__(self, app: ASGIApp, on_refused: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.on_refused = on_refused
        contract = get_contract()
        default = contract.document.get("security", [])
        # operationId -> (secured?, permission needed, path parameter naming a user who may
        # act without it: the caller's own sessions need no `sessions:manage`).
        self.requirements = {
            op_id: (
                bool(op.spec.get("security", default)),
                _needed(op.spec.get("x-permission")),
                op.spec.get("x-permission-self"),
            )
            for op_id, op in contract.operations.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        operation_id = scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")
        secured, permission, self_param = self.requirements.get(operation_id, (False, None, None))
        if not secured:
            await self.app(scope, receive, send)
            return
        client_ip = (scope.get("client") or ("", 0))[0]
        caller = None
        try:
            caller = await authenticate(Headers(scope=scope), client_ip)
            path_params = scope.get("path_params", {})
            if path_params.get("org_id"):
                caller = await acting_in(caller, path_params["org_id"])
            if (
                self_param
                and caller.user_id is not None
                and path_params.get(self_param) == caller.user_id
            ):
                permission = None
            if permission and not caller.can(permission):
                raise PermissionDenied(f"This operation requires the '{permission}' permission.")
        except ApiError:
            await self.on_refused(scope, caller)
            raise
        token = _principal.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            _principal.reset(token)
