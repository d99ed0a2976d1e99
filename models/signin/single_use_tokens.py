"""Single-use, expiring secrets stored by digest: the links account mail carries (password
reset, email verification and change: `models.signin.account`) and the sign-in challenges of
two-step sign-in (`models.signin.mfa`). The table keeps its first name, `email_tokens`.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.common.base import id_field, timestamp_field, utcnow


class SingleUseToken(SQLModel, table=True):
    __tablename__ = "email_tokens"

    id: str = id_field("etk")
    user_id: str = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    purpose: str = Field(max_length=20)  # account.PURPOSES, or mfa.CHALLENGE_PURPOSE
    token_hash: str = Field(unique=True, max_length=64)
    # The address a mailed token was sent to (`models.signin.account` says why it is kept).
    new_email: str | None = Field(default=None, max_length=320)
    expires_at: datetime = timestamp_field()
    used_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)
