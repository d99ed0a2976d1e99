"""TOTP second factors (RFC 6238) and single-use recovery codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from models.base import timestamp_field, utcnow
from tessera.ids import new_id


class MfaFactor(SQLModel, table=True):
    __tablename__ = "mfa_factors"

    user_id: str = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    # The shared secret, encrypted at rest (tessera.secrets_box).
    secret_encrypted: str = Field(max_length=500)
    confirmed_at: datetime | None = timestamp_field(default=None)
    # The last accepted 30-second step: a code is accepted once per step (no replay).
    last_used_step: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = timestamp_field(default_factory=utcnow)


class RecoveryCode(SQLModel, table=True):
    __tablename__ = "recovery_codes"

    id: str = Field(default_factory=lambda: new_id("rcv"), primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    code_hash: str = Field(max_length=64)
    used_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)
