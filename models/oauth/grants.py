"""OAuth 2.0 clients, authorization codes and revoked access tokens, and the authorization
server's rules: RFC 6749 (grants, errors), RFC 7636 (PKCE), RFC 7009 (revocation) and RFC 7662
(introspection).

Delegated (authorization-code) grants reuse the session and refresh-token chain of
models/signin/login.py: such a session carries the client id and the granted scope, its access
tokens carry the granted scopes the user holds (and a `client_id` claim), and its refresh tokens
rotate with the same reuse detection as first-party ones. Client-credentials tokens have no session:
`sub` and `client_id` are the client, `org` its organization, `scope` exactly the granted scopes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import jwt
from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import (
    get_in_org,
    id_field,
    rfc3339,
    text_array_field,
    timestamp_field,
    utcnow,
)
from models.identity import organizations
from models.identity.roles import PERMISSIONS, grants
from models.identity.users import User
from models.records import activity
from models.signin import login as auth
from tessera.core import db, tokens
from tessera.core.cache import TTLCache
from tessera.core.errors import ApiError, Detail, ValidationFailed
from tessera.core.ids import ulid
from tessera.core.settings import get_settings


class OAuthClient(SQLModel, table=True):
    __tablename__ = "oauth_clients"

    id: str = id_field("cli")
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=200)
    client_type: str = Field(default="confidential", max_length=20)  # confidential | public
    secret_hash: str | None = Field(default=None, max_length=64)
    redirect_uris: list[str] = text_array_field()
    grant_types: list[str] = text_array_field()
    scopes: list[str] = text_array_field()
    created_by: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


class AuthorizationCode(SQLModel, table=True):
    __tablename__ = "oauth_codes"

    code_hash: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(foreign_key="oauth_clients.id", ondelete="CASCADE")
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE")
    org_id: str = Field(max_length=40)
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(max_length=2000)
    code_challenge: str | None = Field(default=None, max_length=200)
    code_challenge_method: str | None = Field(default=None, max_length=10)
    expires_at: datetime = timestamp_field()
    used_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)


class RevokedToken(SQLModel, table=True):
    """Access tokens revoked before expiry (RFC 7009); rows expire with the token."""

    __tablename__ = "revoked_tokens"

    jti: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = timestamp_field(index=True)


CLIENT_TYPES = ("confidential", "public")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
CODE_TTL = timedelta(seconds=60)
# Spent codes stay this long so that a replay is recognised (and its tokens revoked).
CODE_RETENTION = timedelta(days=1)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # BASE64URL(SHA256(verifier)), no padding
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 §3.3
_CLIENT_ID = re.compile(r"^cli_[0-9A-Z]{26}$")


# --- errors ----------------------------------------------------------------------------------


class OAuthError(Exception):
    """An error in the shape of RFC 6749 §5.2 (`{"error", "error_description"}`): answered as
    JSON by the token, revocation and introspection endpoints, and as `error=` query parameters
    of a redirect by the authorization endpoint (§4.1.2.1)."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description)


def unauthorized_client(description: str) -> OAuthError:
    return OAuthError("unauthorized_client", description)


def invalid_client(description: str) -> OAuthError:
    return OAuthError(
        "invalid_client",
        description,
        status=401,
        headers={"WWW-Authenticate": 'Basic realm="tessera", charset="UTF-8"'},
    )


# --- scopes ----------------------------------------------------------------------------------


def parse_scope(value: str | None) -> list[str] | None:
    """Space-delimited, case-sensitive scope tokens (RFC 6749 §3.3); None when absent."""
    if value is None or not value.strip():
        return None
    items = [item for item in value.split(" ") if item]
    if not all(_SCOPE_TOKEN.fullmatch(item) for item in items):
        raise invalid_scope("The scope is malformed.")
    return sorted(set(items))


def check_scope(requested: list[str] | None, allowed: list[str]) -> list[str]:
    """The requested scopes (all of `allowed` when none are requested); invalid_scope unless
    every one is a known permission the client was registered with."""
    if requested is None:
        return sorted(allowed)
    unknown = [s for s in requested if s not in PERMISSIONS]
    if unknown:
        raise invalid_scope(f"Unknown scope: {' '.join(unknown)}.")
    extra = [s for s in requested if s not in allowed]
    if extra:
        raise invalid_scope(f"The client may not request: {' '.join(extra)}.")
    return requested


def effective_scope(granted: str | list[str], held: set[str]) -> list[str]:
    """What a delegated token carries: the granted scopes the user holds (`admin` holds all)."""
    items = granted.split() if isinstance(granted, str) else granted
    return sorted(s for s in set(items) if grants(held, s))


# --- clients ---------------------------------------------------------------------------------


def public_client(client: OAuthClient) -> dict[str, Any]:
    return {
        "id": client.id,
        "name": client.name,
        "client_type": client.client_type,
        "redirect_uris": list(client.redirect_uris),
        "grant_types": list(client.grant_types),
        "scopes": list(client.scopes),
        "created_by": client.created_by,
        "created_at": rfc3339(client.created_at),
        "updated_at": rfc3339(client.updated_at),
    }


def redirect_uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be registered: absolute https, or http on a loopback host for
    development (RFC 8252 §7.3), no fragment (RFC 6749 §3.1.2), no credentials."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return "Not a valid URL."
    if parts.scheme not in ("https", "http") or not host:
        return "Use an absolute https URL (http only on 127.0.0.1 or localhost)."
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return "Plain http is allowed only on 127.0.0.1, [::1] or localhost."
    if parts.fragment or "#" in uri:
        return "A redirect URI must not contain a fragment."
    if parts.username is not None or parts.password is not None:
        return "A redirect URI must not contain credentials."
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in uri):
        return "A redirect URI must not contain spaces or control characters."
    return None


def check_client(
    *, client_type: str, redirect_uris: list[str], grant_types: list[str], scopes: list[str]
) -> None:
    """The rules a JSON Schema cannot state, one detail per offending entry (422)."""
    details = [
        Detail(f"redirect_uris.{i}", "INVALID_VALUE", problem)
        for i, uri in enumerate(redirect_uris)
        if (problem := redirect_uri_problem(uri))
    ]
    details += [
        Detail(f"scopes.{i}", "INVALID_VALUE", f"'{s}' is not a permission.")
        for i, s in enumerate(scopes)
        if s not in PERMISSIONS
    ]
    details += [
        Detail(f"grant_types.{i}", "INVALID_VALUE", f"'{g}' is not a supported grant type.")
        for i, g in enumerate(grant_types)
        if g not in GRANT_TYPES
    ]
    if client_type == "public" and "client_credentials" in grant_types:
        details.append(
            Detail(
                "grant_types",
                "NOT_ALLOWED",
                "client_credentials needs a confidential client (it has a secret).",
            )
        )
    if "authorization_code" in grant_types and not redirect_uris:
        details.append(
            Detail("redirect_uris", "REQUIRED", "authorization_code needs a redirect URI.")
        )
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        details.append(
            Detail(
                "grant_types",
                "NOT_ALLOWED",
                "refresh_token is issued with authorization_code only.",
            )
        )
    if details:
        raise ValidationFailed("The client registration is invalid.", details)


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


async def create_client(
    *,
    session: AsyncSession,
    org_id: str,
    created_by: str | None,
    name: str,
    client_type: str,
    redirect_uris: list[str],
    grant_types: list[str],
    scopes: list[str],
) -> tuple[OAuthClient, str | None]:
    """Register a client; returns it with its secret (confidential clients), shown only once."""
    redirect_uris, grant_types = _dedupe(redirect_uris), _dedupe(grant_types)
    scopes = sorted(set(scopes))
    check_client(
        client_type=client_type, redirect_uris=redirect_uris, grant_types=grant_types, scopes=scopes
    )
    secret = tokens.opaque("cs") if client_type == "confidential" else None
    client = OAuthClient(
        org_id=org_id,
        name=name.strip(),
        client_type=client_type,
        secret_hash=tokens.digest(secret) if secret else None,
        redirect_uris=redirect_uris,
        grant_types=grant_types,
        scopes=scopes,
        created_by=created_by,
    )
    session.add(client)
    await session.flush()
    return client, secret


async def get_client(*, session: AsyncSession, org_id: str, client_id: str) -> OAuthClient:
    return await get_in_org(
        session, OAuthClient, client_id, org_id=org_id, missing="No OAuth client with this id."
    )


def clients_query(*, org_id: str):
    return select(OAuthClient).where(OAuthClient.org_id == org_id)


def apply_client_changes(client: OAuthClient, changes: dict) -> None:
    if "name" in changes:
        client.name = changes["name"].strip()
    if "redirect_uris" in changes:
        client.redirect_uris = _dedupe(changes["redirect_uris"])
    if "grant_types" in changes:
        client.grant_types = _dedupe(changes["grant_types"])
    if "scopes" in changes:
        client.scopes = sorted(set(changes["scopes"]))
    check_client(
        client_type=client.client_type,
        redirect_uris=list(client.redirect_uris),
        grant_types=list(client.grant_types),
        scopes=list(client.scopes),
    )
    client.updated_at = utcnow()


# --- client authentication (RFC 6749 §2.3) ---------------------------------------------------


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str | None
    secret: str | None
    via_header: bool


def client_credentials(authorization: str | None, form: dict[str, str]) -> ClientCredentials:
    """Who the client says it is: HTTP Basic (each part form-encoded, §2.3.1) or `client_id`
    and `client_secret` in the body, never both."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return ClientCredentials(form.get("client_id"), form.get("client_secret"), False)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise ValueError("no colon")
    except ValueError:
        raise invalid_client("The Basic credentials are malformed.") from None
    client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    if "client_secret" in form:
        raise invalid_request("Use one client authentication method, not two.")
    if form.get("client_id", client_id) != client_id:
        raise invalid_request("client_id differs from the authenticated client.")
    return ClientCredentials(client_id, secret, True)


async def authenticate_client(
    *, session: AsyncSession, credentials: ClientCredentials
) -> OAuthClient:
    """The client, when its credentials hold: confidential clients prove their secret, public
    clients identify themselves with `client_id` alone (and may not send a secret)."""
    if not credentials.client_id:
        raise invalid_client("Client authentication is required.")
    client = None
    if _CLIENT_ID.fullmatch(credentials.client_id):
        client = await session.get(OAuthClient, credentials.client_id)
    if client is None:
        raise invalid_client("Unknown client or wrong credentials.")
    if client.client_type == "confidential":
        presented = tokens.digest(credentials.secret or "")
        if not credentials.secret or not hmac.compare_digest(presented, client.secret_hash or ""):
            raise invalid_client("Unknown client or wrong credentials.")
    elif credentials.secret:
        raise invalid_client("A public client has no secret.")
    return client


def require_grant(client: OAuthClient, grant_type: str) -> None:
    if grant_type not in client.grant_types:
        raise unauthorized_client(f"The client may not use the {grant_type} grant.")


# --- authorization endpoint (RFC 6749 §4.1.1, RFC 7636 §4.3) ---------------------------------


class AuthorizePageError(Exception):
    """A request whose client or redirect URI cannot be trusted: shown to the user on an error
    page, never sent back by redirect (§4.1.2.1)."""


@dataclass(frozen=True)
class AuthorizationRequest:
    client: OAuthClient
    redirect_to: str  # where the user agent goes back to
    redirect_uri: str  # as sent, "" when omitted: the token request must repeat it (§4.1.3)
    scope: list[str]
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None

    def canonical(self) -> str:
        """The parameters the pages sign, unambiguously encoded."""
        fields = [
            self.client.id,
            self.redirect_uri,
            " ".join(self.scope),
            self.state,
            self.code_challenge,
            self.code_challenge_method,
        ]
        return json.dumps(fields, separators=(",", ":"))


async def resolve_client(
    *, session: AsyncSession, client_id: str | None, redirect_uri: str | None
) -> tuple[OAuthClient, str]:
    """The client and the registered redirect URI to answer to (exact match; may be omitted
    when the client has exactly one)."""
    if not client_id:
        raise AuthorizePageError("The request names no client (client_id is missing).")
    client = await session.get(OAuthClient, client_id) if _CLIENT_ID.fullmatch(client_id) else None
    if client is None:
        raise AuthorizePageError("The application is not registered (unknown client_id).")
    if redirect_uri:
        if redirect_uri not in client.redirect_uris:
            raise AuthorizePageError(
                "The redirect URI is not registered for this application (it must match exactly)."
            )
        return client, redirect_uri
    if len(client.redirect_uris) != 1:
        raise AuthorizePageError("The request must name one of the registered redirect URIs.")
    return client, client.redirect_uris[0]


def check_authorization_request(
    client: OAuthClient, redirect_to: str, params: dict[str, str]
) -> AuthorizationRequest:
    """Everything after the client and redirect URI; failures are redirected as `error=`."""
    if params.get("response_type") != "code":
        raise OAuthError(
            "unsupported_response_type" if params.get("response_type") else "invalid_request",
            "Only response_type=code is supported.",
        )
    require_grant(client, "authorization_code")
    scope = check_scope(parse_scope(params.get("scope")), list(client.scopes))
    if not scope:
        raise invalid_scope("The client has no scopes to request.")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        if client.client_type == "public":
            raise invalid_request("Public clients must use PKCE (code_challenge, S256).")
        if method is not None:
            raise invalid_request("code_challenge_method without code_challenge.")
    else:
        if (method or "plain") != "S256":
            raise invalid_request("code_challenge_method must be S256 (plain is not supported).")
        if not _CHALLENGE.fullmatch(challenge):
            raise invalid_request("code_challenge must be BASE64URL(SHA256(code_verifier)).")
    state = params.get("state")
    if state is not None and len(state) > 500:
        raise invalid_request("state is longer than 500 characters.")
    return AuthorizationRequest(
        client=client,
        redirect_to=redirect_to,
        redirect_uri=params.get("redirect_uri", ""),
        scope=scope,
        state=state,
        code_challenge=challenge,
        code_challenge_method="S256" if challenge else None,
    )


async def resource_owner_problem(
    *, session: AsyncSession, user: User, client: OAuthClient
) -> str | None:
    """Why this user cannot authorize this client, if they cannot: a client acts inside its
    own organization, so only that organization's active members can authorize it."""
    if user.status != "active":
        return f"This account is {user.status}."
    if not await organizations.is_member(session=session, org_id=client.org_id, user_id=user.id):
        return "Only members of the application's organization can authorize it."
    return None


async def issue_code(*, session: AsyncSession, request: AuthorizationRequest, user_id: str) -> str:
    """A single-use code, valid for 60 s, bound to the client, the redirect URI, the scope and
    the PKCE challenge; only its SHA-256 is stored."""
    now = utcnow()
    await session.exec(
        delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - CODE_RETENTION)
    )
    code = tokens.opaque("ac")
    session.add(
        AuthorizationCode(
            code_hash=tokens.digest(code),
            client_id=request.client.id,
            user_id=user_id,
            org_id=request.client.org_id,
            redirect_uri=request.redirect_uri,
            scope=" ".join(request.scope),
            code_challenge=request.code_challenge,
            code_challenge_method=request.code_challenge_method,
            expires_at=now + CODE_TTL,
        )
    )
    await activity.record(
        session=session,
        action="oauth.authorized",
        org_id=request.client.org_id,
        resource_type="oauth_client",
        resource_id=request.client.id,
        data={"scope": " ".join(request.scope)},
        actor_user_id=user_id,
    )
    return code


# --- token endpoint (RFC 6749 §4.1.3, §4.4, §6) ----------------------------------------------

_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def code_session_id(code_hash: str, used_at: datetime) -> str:
    """The id of the session a code was exchanged for: a ULID whose time is the exchange and
    whose random part derives from the code, so a replayed code finds (and revokes) the
    tokens issued from it without storing the link."""
    mac = hmac.new(tokens.server_secret(), f"oauth-code:{code_hash}".encode(), hashlib.sha256)
    tail = base64.b32encode(mac.digest()[:10]).decode().translate(_CROCKFORD)
    return f"ses_{ulid(int(used_at.timestamp() * 1000))[:10]}{tail}"


def pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return hmac.compare_digest(computed, challenge)


def token_response(
    access_token: str, expires_in: int, scope: str, refresh_token: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    }
    if refresh_token:
        body["refresh_token"] = refresh_token
    return body


def _claims_scope(access_token: str) -> str:
    # Our own, freshly signed token: its claims need no second verification.
    return str(jwt.decode(access_token, options={"verify_signature": False}).get("scope", ""))


async def exchange_code(
    *,
    client: OAuthClient,
    code: str,
    redirect_uri: str | None,
    code_verifier: str | None,
    ip: str | None,
    user_agent: str | None,
) -> dict[str, Any]:
    code_hash = tokens.digest(code)
    rejected: OAuthError | None = None
    async with db.transaction() as session:
        row = await session.get(AuthorizationCode, code_hash, with_for_update=True)
        now = utcnow()
        if row is None or row.client_id != client.id:
            raise invalid_grant("The authorization code is invalid.")
        if row.used_at is not None:
            # §4.1.2: a code used twice revokes what the first use issued.
            sid = code_session_id(row.code_hash, row.used_at)
            await auth.revoke_session(session=session, session_id=sid, reason="code_reuse")
            await activity.record(
                session=session,
                action="oauth.code_reused",
                org_id=row.org_id,
                resource_type="session",
                resource_id=sid,
                data={"client_id": client.id},
                actor_user_id=row.user_id,
            )
            rejected = invalid_grant(
                "The authorization code was already used; the tokens issued from it are revoked."
            )
        elif row.expires_at <= now:
            raise invalid_grant("The authorization code has expired.")
        elif row.redirect_uri != (redirect_uri or ""):
            raise invalid_grant("redirect_uri differs from the authorization request.")
        elif row.code_challenge is not None:
            if code_verifier is None:
                raise invalid_grant("code_verifier is required (PKCE).")
            if not (
                _VERIFIER.fullmatch(code_verifier)
                and pkce_matches(code_verifier, row.code_challenge)
            ):
                raise invalid_grant("code_verifier does not match the code_challenge.")
        elif code_verifier is not None:
            raise invalid_grant("code_verifier sent, but the authorization used no PKCE.")
        if rejected is None:
            user = await session.get(User, row.user_id)
            if user is None or user.status != "active":
                raise invalid_grant("The user can no longer authorize this client.")
            row.used_at = now
            refresh = "refresh_token" in client.grant_types
            settings = get_settings()
            lifetime = settings.refresh_token_ttl_s if refresh else settings.access_token_ttl_s
            access_token, ttl, refresh_token = await auth.start_oauth_session(
                session=session,
                session_id=code_session_id(row.code_hash, now),
                user=user,
                org_id=row.org_id,
                client_id=client.id,
                scope=row.scope,
                refresh=refresh,
                lifetime_s=lifetime,
                ip=ip,
                user_agent=user_agent,
            )
    if rejected is not None:
        raise rejected
    return token_response(access_token, ttl, _claims_scope(access_token), refresh_token)


async def refresh_grant(
    *,
    client: OAuthClient,
    refresh_token: str,
    scope: list[str] | None,
    ip: str | None,
    user_agent: str | None,
) -> dict[str, Any]:
    """Rotate through models.signin.login.refresh (overlap window, reuse revokes the session),
    bound to the client; a narrower `scope` narrows the new access token only (§6)."""
    if scope is not None:
        async with db.transaction() as session:
            granted = (
                await session.exec(
                    select(auth.Session.scope)
                    .join(auth.RefreshToken, auth.RefreshToken.session_id == auth.Session.id)
                    .where(
                        auth.RefreshToken.token_hash == tokens.digest(refresh_token),
                        auth.Session.client_id == client.id,
                    )
                )
            ).first()
        if granted is None:
            raise invalid_grant("The refresh token is invalid, expired or already used.")
        if not set(scope) <= set((granted or "").split()):
            raise invalid_scope("The scope exceeds what was granted.")
    pair = await auth.refresh(
        refresh_token=refresh_token, ip=ip, user_agent=user_agent, client_id=client.id
    )
    if pair is None:
        raise invalid_grant("The refresh token is invalid, expired or already used.")
    access_token, ttl = pair.access_token, pair.expires_in
    carried = _claims_scope(access_token)
    if scope is not None and set(scope) != set(carried.split()):
        claims = jwt.decode(access_token, options={"verify_signature": False})
        narrowed = " ".join(sorted(set(scope) & set(carried.split())))
        reserved = ("iss", "aud", "iat", "nbf", "exp", "jti")
        access_token, ttl = tokens.issue_access_token(
            {k: v for k, v in claims.items() if k not in reserved} | {"scope": narrowed}
        )
        carried = narrowed
    return token_response(access_token, ttl, carried, pair.refresh_token)


def client_credentials_grant(*, client: OAuthClient, scope: list[str] | None) -> dict[str, Any]:
    """A token acting as the client's organization with exactly the granted scopes (§4.4); no
    refresh token (§4.4.3)."""
    if client.client_type != "confidential":
        raise unauthorized_client("client_credentials needs a confidential client.")
    require_grant(client, "client_credentials")
    granted = check_scope(scope, list(client.scopes))
    claims = {
        "sub": client.id,
        "org": client.org_id,
        "roles": [],
        "scope": " ".join(granted),
        "client_id": client.id,
    }
    access_token, ttl = tokens.issue_access_token(claims)
    return token_response(access_token, ttl, claims["scope"])


# --- revocation (RFC 7009) and introspection (RFC 7662) --------------------------------------


def _access_claims(token: str) -> dict | None:
    try:
        return tokens.verify_access_token(token)
    except tokens.InvalidToken:
        return None


async def _refresh_link(session: AsyncSession, token: str):
    stmt = (
        select(auth.RefreshToken, auth.Session)
        .join(auth.Session, auth.Session.id == auth.RefreshToken.session_id)
        .where(auth.RefreshToken.token_hash == tokens.digest(token))
    )
    return (await session.exec(stmt)).first()


async def revoke(*, session: AsyncSession, client: OAuthClient, token: str) -> None:
    """Revoke a token issued to this client; anything else (unknown, expired, another client's)
    is silently ignored (§2.2). A refresh token ends its whole session; an access token is
    denied by its `jti` until it expires."""
    claims = _access_claims(token)
    if claims is not None:
        if claims.get("client_id") != client.id:
            return
        await session.exec(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
        await session.exec(
            insert(RevokedToken)
            .values(jti=claims["jti"], expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC))
            .on_conflict_do_nothing()
        )
        revoked_cache.drop(claims["jti"])
        return
    row = await _refresh_link(session, token)
    if row is None:
        return
    _link, sess = row
    if sess.client_id != client.id:
        return
    await auth.revoke_session(session=session, session_id=sess.id, reason="oauth_revoked")


_INACTIVE: dict[str, Any] = {"active": False}

_SESSION_ACTIVE = text(
    "SELECT 1 FROM sessions WHERE id = :sid AND revoked_at IS NULL AND expires_at > now()"
)
_JTI_REVOKED = text("SELECT 1 FROM revoked_tokens WHERE jti = :jti")


async def introspect(*, session: AsyncSession, client: OAuthClient, token: str) -> dict[str, Any]:
    """The state of an access or refresh token of the client's organization (§2.2); anything
    invalid, expired, revoked or of another organization is just `{"active": false}`."""
    settings = get_settings()
    claims = _access_claims(token)
    if claims is not None:
        if claims.get("org") != client.org_id:
            return _INACTIVE
        if (await session.execute(_JTI_REVOKED, {"jti": claims["jti"]})).first():
            return _INACTIVE
        sid = claims.get("sid")
        if sid:
            if not (await session.execute(_SESSION_ACTIVE, {"sid": sid})).first():
                return _INACTIVE
        elif (
            not claims.get("client_id")
            or await session.get(OAuthClient, claims["client_id"]) is None
        ):
            return _INACTIVE
        answer = {
            "active": True,
            "scope": claims.get("scope", ""),
            "sub": claims["sub"],
            "exp": claims["exp"],
            "iat": claims["iat"],
            "nbf": claims["nbf"],
            "token_type": "Bearer",
            "iss": claims["iss"],
            "aud": claims["aud"],
            "jti": claims["jti"],
        }
        if claims.get("client_id"):
            answer["client_id"] = claims["client_id"]
        return answer
    row = await _refresh_link(session, token)
    if row is None:
        return _INACTIVE
    link, sess = row
    now = utcnow()
    if (
        sess.org_id != client.org_id
        or sess.revoked_at is not None
        or sess.expires_at <= now
        or link.expires_at <= now
        or link.used_at is not None
    ):
        return _INACTIVE
    answer = {
        "active": True,
        "scope": sess.scope or "",
        "sub": sess.user_id,
        "exp": int(link.expires_at.timestamp()),
        "iat": int(link.created_at.timestamp()),
        "token_type": "refresh_token",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    if sess.client_id:
        answer["client_id"] = sess.client_id
    return answer


# --- authorization server metadata (RFC 8414) ------------------------------------------------


def server_metadata() -> dict[str, Any]:
    issuer = get_settings().jwt_issuer.rstrip("/")
    auth_methods = ["client_secret_basic", "client_secret_post", "none"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods[:2],
        "scopes_supported": sorted(PERMISSIONS),
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": f"{issuer}/docs",
    }


# --- resource owner sign-in on the authorization page ----------------------------------------


class SignInRefused(Exception):
    """A sign-in on the authorization page that did not succeed; the message is shown there.
    `needs_code`: the account has two-step sign-in, ask for a code."""

    def __init__(self, message: str, *, needs_code: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.needs_code = needs_code


async def sign_in(*, email: str, password: str, code: str | None, ip: str) -> User:
    """The password step of `models.signin.login.login` (same lockout per email and address, same
    timing for unknown accounts, same audit entries) and its second factor, without starting a
    first-party session: the authorization page only needs to know who approves."""
    from models.identity import users
    from models.signin import mfa

    email = users.normalize_email(email)
    if not email or "\x00" in email:
        raise SignInRefused("Invalid email or password.")
    async with db.transaction() as session:
        wait = await auth.locked_for(session=session, email=email, ip=ip)
    if wait:
        raise SignInRefused("Too many failed sign-in attempts; try again later.")
    async with db.transaction() as session:
        user = await users.get_by_email(session=session, email=email)
    known = user if user is not None and user.status != "deleted" else None
    if not await auth.check_password(known, password):
        locked = await auth.count_failure(
            email=email,
            ip=ip,
            user=known,
            action="auth.login_failed",
            data={"ip": ip, "via": "oauth"},
        )
        if locked:
            raise SignInRefused("Too many failed sign-in attempts; try again later.")
        raise SignInRefused("Invalid email or password.")
    assert known is not None
    if known.status != "active":
        raise SignInRefused(f"This account is {known.status}.")
    if get_settings().require_email_verification and not known.email_verified:
        raise SignInRefused("Verify your email address before signing in.")
    digits = bool(code) and code.isdigit()
    try:
        await mfa.second_factor(
            user=known,
            ip=ip,
            code=code if digits else None,
            recovery_code=code if code and not digits else None,
        )
    except ApiError as exc:
        raise SignInRefused(exc.message, needs_code=True) from None
    async with db.transaction() as session:
        await auth.clear_failures(session=session, email=email, ip=ip)
    return known


# OAuth tokens by jti, for a few seconds: (revoked?, the client's current scopes or None when it
# is gone). `revoke` drops the entry.
revoked_cache = TTLCache()
_OAUTH_TOKEN = text(
    "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = :jti) AS revoked, "
    "(SELECT scopes FROM oauth_clients WHERE id = :cid AND org_id = :org) AS scopes"
)


async def client_scopes(claims: dict) -> frozenset[str] | None:
    """For a token issued to an OAuth client: the client's current scopes, or None when the
    token was revoked (RFC 7009) or the client no longer exists."""
    params = {"jti": claims["jti"], "cid": claims["client_id"], "org": claims.get("org")}

    async def look_up() -> tuple[bool, frozenset[str] | None]:
        row = await db.fetch_one(_OAUTH_TOKEN, params)
        return row.revoked, None if row.scopes is None else frozenset(row.scopes)

    revoked, scopes = await revoked_cache.fetch(claims["jti"], look_up)
    return None if revoked else scopes
