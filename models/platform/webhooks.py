"""Webhook endpoints and the log of deliveries to them."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import Index, or_, update
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
from models.records.events import Event
from tessera.core import secrets_box


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoints"

    id: str = id_field("whk")
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

    id: str = id_field("dlv")
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
    # Set while a worker is attempting it: a duplicate job for the delivery must not POST too.
    leased_until: datetime | None = timestamp_field(default=None)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)
    delivered_at: datetime | None = timestamp_field(default=None)


SECRET_GRACE = timedelta(hours=24)


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


async def create(
    *,
    session: AsyncSession,
    org_id: str,
    url: str,
    description: str = "",
    event_types: list[str] | None = None,
    active: bool = True,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once, stored encrypted)."""
    secret = _new_secret()
    endpoint = WebhookEndpoint(
        org_id=org_id,
        url=url,
        description=description,
        event_types=sorted(set(event_types or [])),
        active=active,
        secret_encrypted=secrets_box.seal(secret),
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def get(*, session: AsyncSession, org_id: str, endpoint_id: str) -> WebhookEndpoint:
    return await get_in_org(
        session,
        WebhookEndpoint,
        endpoint_id,
        org_id=org_id,
        missing="No webhook endpoint with this id.",
    )


def list_query(*, org_id: str):
    return select(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id)


def apply_changes(endpoint: WebhookEndpoint, changes: dict) -> None:
    for field in ("url", "description", "active"):
        if field in changes:
            setattr(endpoint, field, changes[field])
    if "event_types" in changes:
        endpoint.event_types = sorted(set(changes["event_types"]))
    if changes.get("active"):
        endpoint.disabled_at, endpoint.consecutive_failures = None, 0
    endpoint.updated_at = utcnow()


def rotate_secret(endpoint: WebhookEndpoint) -> str:
    """A new secret; the old one keeps signing alongside it for 24 hours."""
    secret = _new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = utcnow() + SECRET_GRACE
    endpoint.secret_encrypted = secrets_box.seal(secret)
    endpoint.updated_at = utcnow()
    return secret


class AttemptInProgress(Exception):
    """Another worker holds the delivery's lease: this job is a duplicate, for now."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"an attempt is in progress until {until.isoformat()}")
        self.until = until


async def start_attempt(
    *, session: AsyncSession, delivery_id: str, lease: timedelta
) -> WebhookDelivery | None:
    """Lease a pending delivery for one attempt, or None when there is nothing left to attempt.

    Jobs reach the queue at least once (the outbox relay may send one twice), so two workers can
    hold a job for the same delivery; the conditional update lets only one of them POST at a
    time, and once it succeeded the others find nothing to do: one successful request per
    delivery id. One statement (not a locked read, then a flush): it is on every delivery's path.
    """
    now = utcnow()
    taken = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until <= now),
        )
        .values(leased_until=now + lease)
        .returning(WebhookDelivery)
    )
    delivery = taken.scalars().first()
    if delivery is not None:
        return delivery
    current = await session.get(WebhookDelivery, delivery_id)
    if current is not None and current.status == "pending" and current.leased_until is not None:
        raise AttemptInProgress(current.leased_until)
    return None


async def reset_failures(*, session: AsyncSession, endpoint_id: str) -> None:
    """A success clears the failure streak. Conditional, so the common case (no streak) neither
    writes nor locks the endpoint row that every delivery to it would otherwise queue on."""
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.consecutive_failures != 0)
        .values(consecutive_failures=0)
    )


def signing_secrets(endpoint: WebhookEndpoint) -> list[str]:
    active = [secrets_box.unseal(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > utcnow()
    ):
        active.append(secrets_box.unseal(endpoint.previous_secret_encrypted))
    return active


def subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return endpoint.active and (not endpoint.event_types or event_type in endpoint.event_types)


async def create_deliveries(*, session: AsyncSession, event: Event) -> list[str]:
    """One pending delivery per subscribed endpoint (idempotent for a re-run fan-out)."""
    if event.org_id is None:
        return []
    endpoints = (
        await session.exec(
            select(WebhookEndpoint).where(
                WebhookEndpoint.org_id == event.org_id, WebhookEndpoint.active.is_(True)
            )
        )
    ).all()
    existing = {
        d.endpoint_id: d.id
        for d in (
            await session.exec(select(WebhookDelivery).where(WebhookDelivery.event_id == event.id))
        ).all()
    }
    ids = []
    for endpoint in endpoints:
        # Endpoints hear about events that happen after they are registered.
        if not subscribed(endpoint, event.type) or endpoint.created_at > event.created_at:
            continue
        if endpoint.id in existing:
            ids.append(existing[endpoint.id])
            continue
        delivery = WebhookDelivery(
            endpoint_id=endpoint.id, org_id=event.org_id, event_id=event.id, event_type=event.type
        )
        session.add(delivery)
        await session.flush()
        ids.append(delivery.id)
    return ids


def public(endpoint: WebhookEndpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "active": endpoint.active,
        "disabled_at": rfc3339(endpoint.disabled_at),
        "secret_rotated_until": rfc3339(endpoint.previous_secret_expires_at),
        "created_at": rfc3339(endpoint.created_at),
        "updated_at": rfc3339(endpoint.updated_at),
    }


def public_delivery(delivery: WebhookDelivery) -> dict:
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_status": delivery.response_status,
        "latency_ms": delivery.latency_ms,
        "last_error": delivery.last_error,
        "next_attempt_at": rfc3339(delivery.next_attempt_at),
        "created_at": rfc3339(delivery.created_at),
        "delivered_at": rfc3339(delivery.delivered_at),
    }
