"""Webhook endpoints and the log of deliveries to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from models.base import text_array_field, timestamp_field, utcnow
from tessera.ids import new_id


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoints"

    id: str = Field(default_factory=lambda: new_id("whk"), primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True, ondelete="CASCADE")
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    # Empty means every event type.
    event_types: list[str] = text_array_field()
    active: bool = True
    # Signing secrets are needed in clear to sign, so they are encrypted at rest.
    secret_encrypted: str = Field(max_length=500)
    previous_secret_encrypted: str | None = Field(default=None, max_length=500)
    previous_secret_expires_at: datetime | None = timestamp_field(default=None)
    consecutive_failures: int = 0
    disabled_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_deliveries_endpoint_created", "endpoint_id", "created_at"),)

    id: str = Field(default_factory=lambda: new_id("dlv"), primary_key=True)
    endpoint_id: str = Field(foreign_key="webhook_endpoints.id", ondelete="CASCADE")
    org_id: str = Field(max_length=40)
    event_id: str = Field(max_length=40, index=True)
    event_type: str = Field(max_length=100)
    status: str = Field(default="pending", max_length=20)  # pending | succeeded | failed
    attempts: int = 0
    response_status: int | None = None
    latency_ms: float | None = None
    last_error: str | None = Field(default=None, max_length=500)
    next_attempt_at: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)
    delivered_at: datetime | None = timestamp_field(default=None)
