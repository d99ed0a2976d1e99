"""The rate limit of every `/v1` operation: which bucket a request counts against and how many
requests a minute it allows (`rule`), charged by the `RateLimit` middleware, whose answers carry
the X-RateLimit-* headers. The limiter itself (GCRA, in Redis or in memory) is
`tessera.core.ratelimit`'s.
"""

from __future__ import annotations

import math
from functools import cache

from starlette.types import ASGIApp, Receive, Scope, Send

from tessera.core import caller as auth
from tessera.core.ratelimit import limiter
from tessera.core.settings import get_settings
from tessera.web.contract import get_contract

__all__ = ["RateLimit", "limiter", "rate_limit_headers", "refused", "rule"]


_KIND = {"get": "read", "head": "read", "delete": "delete"}


def rule(
    caller: auth.Principal | None, operation_id: str, method: str, client_ip: str
) -> tuple[str, int]:
    """(bucket key, requests per minute) for a request by `caller` (None: anonymous)."""
    settings = get_settings()
    if caller is None:  # public operations: per client IP, sign-in and sign-up more tightly
        if operation_id == "login":
            return f"ip:{client_ip}:login", settings.rate_limit_login_per_ip
        if operation_id == "register":
            return f"ip:{client_ip}:register", settings.rate_limit_register_per_ip
        return f"ip:{client_ip}", settings.rate_limit_anonymous_per_ip
    kind = _KIND.get(method, "write")
    tier = caller.claims.get("tier") or settings.rate_limit_default_tier
    per_minute = settings.rate_limit_tiers.get(tier, settings.rate_limit_tiers["free"])
    multiplier = settings.rate_limit_multipliers.get(kind, 1.0)
    return f"{caller.kind}:{caller.actor_id}:{kind}", math.floor(per_minute * multiplier)


# Where a request's allowance is kept for the answer (the extensions dict is shared by every
# copy of the scope, so `rate_limit_headers` reads it back at the response, whatever the status).
_HEADERS = "tessera.rate_limit_headers"


async def _charge(scope: Scope, caller: auth.Principal | None, operation_id: str) -> None:
    """Counts the request against its bucket and keeps the allowance for the answer; raises
    RateLimited (429) past the limit."""
    client_ip = (scope.get("client") or ("", 0))[0]
    bucket, per_minute = rule(caller, operation_id, scope["method"].lower(), client_ip)
    decision = await limiter().enforce(bucket, per_minute)
    if decision is not None:
        extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()]
        scope.setdefault("extensions", {})[_HEADERS] = extra


def rate_limit_headers(scope: Scope, headers) -> None:
    """Adds the request's X-RateLimit-* headers to its answer, a success or an error alike."""
    extra = scope.get("extensions", {}).get(_HEADERS)
    if extra:
        present = {key for key, _ in headers.raw}
        headers.raw.extend(h for h in extra if h[0] not in present)


class RateLimit:
    """Limits every `/v1` operation; answers carry the X-RateLimit-* headers. A request refused
    before it is limited (credentials that do not authenticate, a missing permission) is counted
    too, through `refused`, and its error carries the headers as well."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.limited = _limited_operations()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation_id = _operation_id(scope)
        if scope["type"] == "http" and operation_id in self.limited and _enabled():
            await _charge(scope, auth.current_principal(), operation_id)
        await self.app(scope, receive, send)


def _operation_id(scope: Scope) -> str | None:
    return scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")


def _enabled() -> bool:
    return get_settings().rate_limit_enabled


@cache
def _limited_operations() -> frozenset[str]:
    operations = get_contract().operations.items()
    return frozenset(op_id for op_id, op in operations if op.path.startswith("/v1/"))


async def refused(scope: Scope, caller: auth.Principal | None) -> None:
    """Counts a `/v1` request that authentication refused against the caller's bucket (the
    client address's when the credentials named nobody)."""
    operation_id = _operation_id(scope)
    if operation_id in _limited_operations() and _enabled():
        await _charge(scope, caller, operation_id)
