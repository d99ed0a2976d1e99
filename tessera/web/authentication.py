"""Who is calling, and may they call this operation?

`Authenticate` replaces Connexion's security middleware: after routing, it reads the operation's
`security` and `x-permission` from the contract, resolves the caller from an access JWT or an API
key, enforces the permission (403 PERMISSION_DENIED), and exposes the caller to handlers through
`tessera.core.caller.principal()`. One place decides; handlers never re-implement the check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from models.oauth import grants as oauth
from models.platform import keys
from models.signin import login
from tessera.core import tokens
from tessera.core.caller import AUTHENTICATED, Principal, acting_as, unauthorized
from tessera.core.errors import ApiError, PermissionDenied
from tessera.core.permissions import grants
from tessera.web.contract import get_contract

API_KEY_PREFIXES = ("sk_live_", "sk_test_")


async def from_access_token(token: str) -> Principal:
    try:
        claims = tokens.verify_access_token(token)
    except tokens.InvalidToken:
        unauthorized()
    permissions = frozenset(str(claims.get("scope", "")).split())
    client_id = claims.get("client_id")
    if client_id:
        client_scopes = await oauth.client_scopes(claims)
        if client_scopes is None:
            unauthorized("The token was revoked.")
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
    if not sid or not await login.session_active(sid):
        unauthorized("The session has ended; sign in again.")
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


async def authenticate(headers: Headers, client_ip: str) -> Principal:
    api_key = headers.get("x-api-key")
    if api_key:
        return await keys.caller_for(api_key, client_ip)
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        unauthorized()
    if credentials.startswith(API_KEY_PREFIXES):
        return await keys.caller_for(credentials, client_ip)
    return await from_access_token(credentials)


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
                caller = await login.acting_in(caller, path_params["org_id"])
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
        with acting_as(caller):
            await self.app(scope, receive, send)
