"""The signed-in user's own profile and preferences."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import utcnow
from models.identity import users
from models.identity.tables import User
from tessera.core.errors import Detail, PermissionDenied, ValidationFailed


def apply_profile(user: User, changes: dict) -> None:
    """`display_name` and `department` from `changes`, trimmed (an empty department is none)."""
    if "display_name" in changes:
        user.display_name = changes["display_name"].strip()
    if "department" in changes:
        department = changes["department"]
        user.department = department.strip() if department else None


async def update_self(
    *,
    session: AsyncSession,
    org_id: str | None,
    user: User,
    changes: dict,
    may_set_department: bool,
) -> dict:
    """The signed-in user's own profile. The department decides which department-limited role
    grants apply, so choosing it is for those who may set anyone's (`users:write`)."""
    changes_department = "department" in changes and changes["department"] != user.department
    if changes_department and not may_set_department:
        raise PermissionDenied("Your department is managed by your organization's administrators.")
    apply_profile(user, changes)
    return await users.updated(session, org_id, user, sorted(changes))


# --- preferences ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def preferences_of(user: User) -> dict[str, Any]:
    """The stored preferences over the defaults, so settings added later have a value."""
    defaults = users.DEFAULT_PREFERENCES
    stored = user.preferences or {}
    merged = {key: stored.get(key, default) for key, default in defaults.items()}
    merged["notifications"] = {
        **defaults["notifications"],
        **(stored.get("notifications") or {}),
    }
    return merged


def replace_preferences(*, user: User, preferences: dict) -> dict[str, Any]:
    zones = _time_zones()
    # Without a time zone database on the host (no tzdata) any well-formed name is kept.
    if zones and preferences["timezone"] not in zones:
        raise ValidationFailed(
            "The time zone is unknown.",
            [Detail("timezone", "INVALID_VALUE", "Use an IANA name such as Europe/London.")],
        )
    user.preferences = {**preferences, "notifications": dict(preferences["notifications"])}
    user.updated_at = utcnow()
    return preferences_of(user)
