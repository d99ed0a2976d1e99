"""SQLModel tables per domain, with the keyword-only service functions handlers and workers call.

Importing this package registers every table on `SQLModel.metadata` (for Alembic).
"""

from models import access, auth, keys, organizations, projects, system, users  # noqa: F401
