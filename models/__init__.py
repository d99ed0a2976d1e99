"""SQLModel tables per domain, with the keyword-only service functions handlers and workers call.

Importing this package registers every table on `SQLModel.metadata` (for Alembic).
"""

from models.files import records as files
from models.identity import organizations, roles, users
from models.oauth import grants
from models.platform import idempotency, jobs, keys, projects, system, webhooks
from models.records import audit, events, outbox
from models.signin import account, login, mfa

__all__ = [
    "account",
    "audit",
    "events",
    "files",
    "grants",
    "idempotency",
    "jobs",
    "keys",
    "login",
    "mfa",
    "organizations",
    "outbox",
    "projects",
    "roles",
    "system",
    "users",
    "webhooks",
]
