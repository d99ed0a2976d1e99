"""Record what happened: an audit entry and its domain event, in the caller's transaction.

Services call `record(...)` inside the unit of work that makes the change (an ORM session), so
the change, its audit entry and its event commit together or not at all. A change that is one
statement goes with them in that statement (`record_change`): one round trip.
The actor is the current caller (or the system outside a request).
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from models.records import audit, events
from tessera.core import caller as auth
from tessera.core import request_context as http

# Event types subscribers can filter on; audit actions outside this set emit `audit.logged`.
EVENT_TYPES = (
    "user.created",
    "user.updated",
    "user.deleted",
    "user.login",
    "user.logout",
    "user.locked",
    "user.password_changed",
    "mfa.enabled",
    "mfa.disabled",
    "organization.created",
    "organization.updated",
    "organization.deleted",
    "member.added",
    "member.updated",
    "member.removed",
    "invitation.created",
    "invitation.accepted",
    "project.created",
    "project.updated",
    "project.deleted",
    "file.created",
    "file.deleted",
    "key.created",
    "key.revoked",
    "role.created",
    "role.updated",
    "role.deleted",
    "role.granted",
    "role.revoked",
    "webhook.disabled",
    "audit.logged",
)


def _actor(user_id: str | None = None) -> audit.Actor:
    caller = auth.current_principal()
    try:
        ip, agent = http.client_ip() or None, http.user_agent()
    except RuntimeError:  # outside a request (workers, CLI)
        ip = agent = None
    if caller is not None:
        return audit.Actor(caller.kind, caller.actor_id, ip, agent)
    if user_id is not None:  # public operations that identify a user (login, register)
        return audit.Actor("user", user_id, ip, agent)
    return audit.Actor("system", None, ip, agent)


def entry_and_event(
    *,
    action: str,
    org_id: str | None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    data: dict[str, Any] | None = None,
    actor_user_id: str | None = None,
) -> tuple[audit.PendingEntry, tuple[str, dict[str, Any]]]:
    actor = _actor(actor_user_id)
    entry = audit.new_entry(
        actor=actor,
        action=action,
        org_id=org_id,
        resource_type=resource_type,
        resource_id=resource_id,
        meta=data,
    )
    event_type = action if action in EVENT_TYPES else "audit.logged"
    payload = dict(data or {})
    if resource_type:
        payload.setdefault("object", {"type": resource_type, "id": resource_id})
    if event_type == "audit.logged":
        payload = {"audit_id": entry.id, "action": action, **payload}
    event = events.insert(
        type=event_type, org_id=org_id, data=payload, actor_type=actor.type, actor_id=actor.id
    )
    return entry, event


async def record(*, session: AsyncSession, **what: Any) -> None:
    """The audit entry and event of `what` (`entry_and_event`'s arguments) in the caller's unit
    of work."""
    entry, event = entry_and_event(**what)
    await audit.append(session=session, entry=entry, alongside=event)


async def record_change(*, change: tuple[str, dict[str, Any]], **what: Any) -> bool:
    """`change` (a data-modifying statement and its parameters, returning the `id` of the row it
    wrote, `what`'s `resource_id`) with its audit entry and event, as one statement committed
    on its own (`audit.append_with_change`). False, and nothing written, when the change wrote
    no row."""
    entry, event = entry_and_event(**what)
    return await audit.append_with_change(change=change, entry=entry, alongside=event)
