"""a partial index of deleted users, for counting an organization's members

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 07:20:00.000000

`GET /v1/users` answers an exact `total`. Counted as the page's own join (every member's user row,
to test its status), that cost 13.5 ms of PostgreSQL time per page for 10,000 members, a hundred
times the page itself. Counted from the memberships (index-only) less the deleted users among
them, found in this small index, it costs 2.6 ms.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_users_deleted", "users", ["id"], postgresql_where=sa.text("status = 'deleted'")
    )


def downgrade() -> None:
    op.drop_index("ix_users_deleted", table_name="users")
