"""Who is calling: the `Principal` the authentication middleware (tessera.web.authentication)
resolves for a secured operation, and the `require_*` checks handlers start with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from tessera.core.errors import AuthenticationFailed, PermissionDenied
from tessera.core.permissions import grants

# `x-permission: authenticated`: any signed-in caller; the operation acts on their own account.
AUTHENTICATED = "authenticated"


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


@contextmanager
def acting_as(caller: Principal) -> Iterator[None]:
    """`caller` is the principal of everything that runs inside (one request)."""
    token = _principal.set(caller)
    try:
        yield
    finally:
        _principal.reset(token)


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


def unauthorized(reason: str = "Authentication credentials are missing or invalid.") -> None:
    """401 with the RFC 6750 challenge."""
    raise AuthenticationFailed(
        reason, headers={"WWW-Authenticate": 'Bearer realm="tessera", error="invalid_token"'}
    )
