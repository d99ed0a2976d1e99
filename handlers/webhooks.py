"""Webhook endpoints, their signing secrets and delivery logs."""

from __future__ import annotations

from sqlmodel import select

from models.platform import webhooks
from models.records import activity, events, outbox
from tessera.core import db, ssrf
from tessera.core.caller import require_org
from tessera.core.errors import Detail, NotFound, ValidationFailed
from tessera.core.settings import get_settings
from tessera.web.http import check_if_match, created, listing, one


async def _check_url(url: str) -> None:
    try:
        await ssrf.check_target(url, allow_private=get_settings().allow_private_webhooks)
    except ssrf.UnsafeTarget as exc:
        raise ValidationFailed(
            "The webhook URL is not allowed.", [Detail("url", "UNSAFE_URL", str(exc))]
        ) from None


async def list_webhooks(limit: int = 20, offset: int = 0, cursor: str | None = None):
    caller = require_org()
    async with db.transaction() as session:
        return await listing(
            session,
            webhooks.list_query(org_id=caller.org_id),
            model=webhooks.WebhookEndpoint,
            render=webhooks.public,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


async def create_webhook(body: dict):
    caller = require_org()
    await _check_url(body["url"])
    async with db.transaction() as session:
        endpoint, secret = await webhooks.create(
            session=session,
            org_id=caller.org_id,
            url=body["url"],
            description=body.get("description", ""),
            event_types=body.get("event_types"),
            active=body.get("active", True),
        )
        await activity.record(
            session=session,
            action="webhook.created",
            org_id=caller.org_id,
            resource_type="webhook",
            resource_id=endpoint.id,
            data={"url": endpoint.url},
        )
    return created({**webhooks.public(endpoint), "secret": secret}, f"/v1/webhooks/{endpoint.id}")


async def get_webhook(webhook_id: str):
    caller = require_org()
    async with db.transaction() as session:
        endpoint = await webhooks.get(session=session, org_id=caller.org_id, endpoint_id=webhook_id)
    return one(webhooks.public(endpoint))


async def _change(webhook_id: str, changes: dict):
    caller = require_org()
    if "url" in changes:
        await _check_url(changes["url"])
    async with db.transaction() as session:
        endpoint = await webhooks.get(session=session, org_id=caller.org_id, endpoint_id=webhook_id)
        check_if_match(webhooks.public(endpoint))
        webhooks.apply_changes(endpoint, changes)
        await activity.record(
            session=session,
            action="webhook.updated",
            org_id=caller.org_id,
            resource_type="webhook",
            resource_id=endpoint.id,
            data={"changes": sorted(changes)},
        )
    return one(webhooks.public(endpoint))


async def replace_webhook(webhook_id: str, body: dict):
    return await _change(webhook_id, body)


async def update_webhook(webhook_id: str, body: dict):
    return await _change(webhook_id, body)


async def delete_webhook(webhook_id: str):
    caller = require_org()
    async with db.transaction() as session:
        endpoint = await webhooks.get(session=session, org_id=caller.org_id, endpoint_id=webhook_id)
        check_if_match(webhooks.public(endpoint))
        await session.delete(endpoint)
        await activity.record(
            session=session,
            action="webhook.deleted",
            org_id=caller.org_id,
            resource_type="webhook",
            resource_id=webhook_id,
        )
    return None, 204


async def rotate_webhook_secret(webhook_id: str):
    caller = require_org()
    async with db.transaction() as session:
        endpoint = await webhooks.get(session=session, org_id=caller.org_id, endpoint_id=webhook_id)
        secret = webhooks.rotate_secret(endpoint)
        await activity.record(
            session=session,
            action="webhook.secret_rotated",
            org_id=caller.org_id,
            resource_type="webhook",
            resource_id=endpoint.id,
        )
    return {"data": {**webhooks.public(endpoint), "secret": secret}}, 200


async def test_webhook(webhook_id: str):
    caller = require_org()
    async with db.transaction() as session:
        endpoint = await webhooks.get(session=session, org_id=caller.org_id, endpoint_id=webhook_id)
        event = await events.emit(
            session=session,
            type="webhook.test",
            org_id=caller.org_id,
            data={
                "object": {"type": "webhook", "id": endpoint.id},
                "message": "Hello from Tessera",
            },
            actor_type=caller.kind,
            actor_id=caller.actor_id,
        )
        # Delivered to this endpoint only, not fanned out to the organization's others.
        event.published_at = event.created_at
        record = webhooks.WebhookDelivery(
            endpoint_id=endpoint.id, org_id=caller.org_id, event_id=event.id, event_type=event.type
        )
        session.add(record)
        await outbox.enqueue(session=session, actor="deliver", args=[record.id])
    return _accepted(record)


async def list_webhook_deliveries(
    webhook_id: str,
    limit: int = 20,
    offset: int = 0,
    cursor: str | None = None,
    status: str | None = None,
):
    caller = require_org()
    async with db.transaction() as session:
        await webhooks.get(session=session, org_id=caller.org_id, endpoint_id=webhook_id)
        stmt = select(webhooks.WebhookDelivery).where(
            webhooks.WebhookDelivery.endpoint_id == webhook_id
        )
        if status:
            stmt = stmt.where(webhooks.WebhookDelivery.status == status)
        return await listing(
            session,
            stmt,
            model=webhooks.WebhookDelivery,
            render=webhooks.public_delivery,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


async def redeliver_webhook(webhook_id: str, delivery_id: str):
    caller = require_org()
    async with db.transaction() as session:
        await webhooks.get(session=session, org_id=caller.org_id, endpoint_id=webhook_id)
        original = await session.get(webhooks.WebhookDelivery, delivery_id)
        if original is None or original.endpoint_id != webhook_id:
            raise NotFound("No delivery with this id for this endpoint.")
        record = webhooks.WebhookDelivery(
            endpoint_id=webhook_id,
            org_id=caller.org_id,
            event_id=original.event_id,
            event_type=original.event_type,
        )
        session.add(record)
        await outbox.enqueue(session=session, actor="deliver", args=[record.id])
    return _accepted(record)


def _accepted(record: webhooks.WebhookDelivery):
    location = f"/v1/webhooks/{record.endpoint_id}/deliveries?status=pending"
    return {"data": webhooks.public_delivery(record)}, 202, {"Location": location}
