"""OAuth 2.0 clients, authorization codes and revoked access tokens.

Delegated (authorization-code) grants reuse the session and refresh-token chain of models/auth.py:
such a session carries the client id and the granted scope.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import text_array_field, timestamp_field, utcnow
from tessera.ids import new_id


class OAuthClient(SQLModel, table=True):
    __tablename__ = "oauth_clients"

    id: str = Field(default_factory=lambda: new_id("cli"), primary_key=True)
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
