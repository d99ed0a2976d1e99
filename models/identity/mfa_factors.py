"""The tables of two-step sign-in: a user's TOTP factor and their single-use recovery codes.

`models.signin.mfa` checks codes against them and runs the sign-in challenge;
`models.signin.mfa_enrollment` sets a factor up, shows its recovery codes and turns it off.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, timestamp_field, utcnow


class MfaFactor(SQLModel, table=True):
    __tablename__ = "mfa_factors"

    user_id: str = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    # The shared secret, encrypted at rest (tessera.core.secrets_box).
    secret_encrypted: str = Field(max_length=500)
    confirmed_at: datetime | None = timestamp_field(default=None)
    # The last accepted 30-second step: a code is accepted once per step (no replay).
    last_used_step: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = timestamp_field(default_factory=utcnow)


class RecoveryCode(SQLModel, table=True):
    __tablename__ = "recovery_codes"

    id: str = id_field("rcv")
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    code_hash: str = Field(max_length=64)
    used_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)


async def get_factor(*, session: AsyncSession, user_id: str) -> MfaFactor | None:
    """The user's active (confirmed) factor."""
    factor = await session.get(MfaFactor, user_id)
    return factor if factor is not None and factor.confirmed_at is not None else None
