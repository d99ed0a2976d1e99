"""outbox messages for requested jobs, NOTIFY wake-up of the relays, delivery leases

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# models.outbox.CHANNEL; spelled out so that this migration means the same thing forever.
_NOTIFY_FUNCTION = """
CREATE FUNCTION tessera_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered when the inserting transaction commits, never if it rolls back; identical
    -- notifications of one transaction are folded into one.
    PERFORM pg_notify('tessera_outbox', '');
    RETURN NULL;
END $$
"""
_TABLES = ("events", "outbox_messages")


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("actor_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_outbox_messages_created_at"), "outbox_messages", ["created_at"], unique=False
    )
    op.add_column(
        "webhook_deliveries", sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(_NOTIFY_FUNCTION)
    for table in _TABLES:
        # Once per statement: a burst of inserts costs one notification, not one per row.
        op.execute(
            f"CREATE TRIGGER {table}_notify_outbox AFTER INSERT ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION tessera_outbox_notify()"
        )


def downgrade() -> None:
    for table in _TABLES:
        op.execute(f"DROP TRIGGER {table}_notify_outbox ON {table}")
    op.execute("DROP FUNCTION tessera_outbox_notify()")
    op.drop_column("webhook_deliveries", "leased_until")
    op.drop_index(op.f("ix_outbox_messages_created_at"), table_name="outbox_messages")
    op.drop_table("outbox_messages")
