"""SQLModel tables per domain, with the keyword-only service functions handlers and workers call.

Importing this package registers every table on `SQLModel.metadata` (for Alembic).
"""

from models import (  # noqa: F401
    access,
    audit,
    auth,
    events,
    idempotency,
    jobs,
    keys,
    mfa,
    oauth,
    organizations,
    outbox,
    projects,
    system,
    users,
    verification,
    webhooks,
)
