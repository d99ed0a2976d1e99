"""Webhook fan-out and delivery.

`fan_out(*event_ids)` creates one delivery per subscribed endpoint; `deliver(delivery_id)` POSTs the
signed event and, on failure, asks dramatiq to retry it after an exponential, jittered backoff
(30 s doubling to 6 h, 14 retries: about a day of attempts by default). After the last attempt
the delivery is `failed`; an endpoint whose deliveries keep failing is disabled and a
`webhook.disabled` event is recorded.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import timedelta

import dramatiq
import httpx
import orjson

from models.common.base import utcnow
from models.platform import webhooks
from models.records import activity, events
from tessera.core import db, metrics, ssrf, webhook_signing
from tessera.core.settings import get_settings

_settings = get_settings()
USER_AGENT = "Tessera-Webhooks/1"
# One client per event loop: building an httpx client costs ~40 ms of CPU (TLS context), which
# capped a worker at ~15 deliveries/s; a shared one also keeps connections to receivers alive.
_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def _http() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # Redirects are not followed: a receiver could point them inside our network (SSRF).
        client = _clients[loop] = httpx.AsyncClient(follow_redirects=False)
    return client


@dramatiq.actor(queue_name="webhooks", max_retries=5, min_backoff=1000, max_backoff=60_000)
async def fan_out(*event_ids: str) -> None:
    """The events of one relay pass (one job for the batch: a send per event cost the relay more
    than the rest of its pass). A retry runs them all again, which `create_deliveries` allows."""
    for event_id in event_ids:
        async with db.transaction() as session:
            event = await session.get(events.Event, event_id)
            if event is None:
                continue
            delivery_ids = await webhooks.create_deliveries(session=session, event=event)
        for delivery_id in delivery_ids:
            deliver.send(delivery_id)


# An attempt ends within the request timeout, or dramatiq's time limit stops it: it holds its
# delivery that long at most.
_LEASE = timedelta(seconds=_settings.webhook_timeout_s + 20)


@dramatiq.actor(
    queue_name="webhooks",
    # The delivery log counts attempts and stops retrying; this only bounds crashed workers.
    max_retries=_settings.webhook_max_retries + 1,
    time_limit=int(_LEASE.total_seconds() * 1000),
)
async def deliver(delivery_id: str) -> None:
    settings = get_settings()
    try:
        async with db.transaction() as session:
            delivery = await webhooks.start_attempt(
                session=session, delivery_id=delivery_id, lease=_LEASE
            )
            if delivery is None:
                return
            endpoint = await session.get(webhooks.WebhookEndpoint, delivery.endpoint_id)
            event = await session.get(events.Event, delivery.event_id)
            if endpoint is None or event is None or not endpoint.active:
                delivery.status, delivery.last_error = "failed", "endpoint disabled or deleted"
                return
            url, secrets = endpoint.url, webhooks.signing_secrets(endpoint)
    except webhooks.AttemptInProgress as busy:
        # A duplicate job: look again once the lease ends (its holder may have died meanwhile).
        delay = (busy.until - utcnow()).total_seconds() * 1000
        raise dramatiq.Retry(str(busy), delay=max(int(delay), 0) + 1000) from None
    payload = orjson.dumps(events.public(event))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        webhook_signing.HEADER: webhook_signing.sign(payload, secrets),
        "Tessera-Event-Id": event.id,
        "Tessera-Event-Type": event.type,
        "Tessera-Delivery-Id": delivery_id,
    }
    started = time.perf_counter()
    status, error = None, None
    try:
        await ssrf.check_target(url, allow_private=settings.allow_private_webhooks)
        response = await _http().post(
            url, content=payload, headers=headers, timeout=settings.webhook_timeout_s
        )
        status = response.status_code
        if not 200 <= status < 300:
            error = f"receiver answered {status}"
    except ssrf.UnsafeTarget as exc:
        error = str(exc)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}"
    latency = round((time.perf_counter() - started) * 1000, 3)
    succeeded = error is None
    retry_in_ms = await _record_attempt(delivery_id, status, latency, error)
    metrics.JOBS.labels("webhook_delivery", "succeeded" if succeeded else "failed").inc()
    if retry_in_ms is not None:
        # dramatiq.Retry re-enqueues without logging an error traceback for an expected failure.
        raise dramatiq.Retry(error or "", delay=retry_in_ms)


async def _record_attempt(
    delivery_id: str, status: int | None, latency_ms: float, error: str | None
) -> int | None:
    """Store the attempt; returns the delay before the next one, or None when none follows."""
    settings = get_settings()
    async with db.transaction() as session:
        delivery = await session.get(webhooks.WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None:  # its endpoint was deleted meanwhile
            return None
        delivery.attempts += 1
        delivery.leased_until = None
        delivery.response_status, delivery.latency_ms = status, latency_ms
        delivery.updated_at = utcnow()
        if error is None:
            delivery.status, delivery.delivered_at, delivery.last_error = (
                "succeeded",
                utcnow(),
                None,
            )
            delivery.next_attempt_at = None
            await webhooks.reset_failures(session=session, endpoint_id=delivery.endpoint_id)
            return None
        delivery.last_error = error[:500]
        if delivery.attempts <= settings.webhook_max_retries:
            # Exponential backoff with +-20% jitter, so retries from one outage spread out.
            backoff_ms = min(
                settings.webhook_min_backoff_ms * 2 ** (delivery.attempts - 1),
                settings.webhook_max_backoff_ms,
            )
            backoff_ms = int(backoff_ms * random.uniform(0.8, 1.2))
            delivery.next_attempt_at = utcnow() + timedelta(milliseconds=backoff_ms)
            return backoff_ms
        delivery.status, delivery.next_attempt_at = "failed", None
        # Locked: concurrent final failures all count towards disabling it.
        endpoint = await session.get(
            webhooks.WebhookEndpoint, delivery.endpoint_id, with_for_update=True
        )
        if endpoint is None:
            return None
        endpoint.consecutive_failures += 1
        if (
            endpoint.active
            and endpoint.consecutive_failures >= settings.webhook_disable_after_failures
        ):
            endpoint.active, endpoint.disabled_at = False, utcnow()
            await activity.record(
                session=session,
                action="webhook.disabled",
                org_id=endpoint.org_id,
                resource_type="webhook",
                resource_id=endpoint.id,
                data={"consecutive_failures": endpoint.consecutive_failures},
            )
        return None
