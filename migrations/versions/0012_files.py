"""files: the rows that describe stored bytes, and the trigger that queues the bytes' removal

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06 19:30:00.000000

A file's bytes live outside the database (the local data directory or an S3 bucket), so deleting
its row must also remove them, whichever way the row goes: `DELETE /v1/files/{id}`, or the
cascade of its owner's erasure or its organization's deletion. An AFTER DELETE trigger writes one
outbox message per row (`delete_file_bytes`, the storage key) in the deleting transaction: if it
rolls back, the bytes stay with their row; once it commits, the relay hands the job to a worker,
which retries until storage confirms. The outbox's own trigger (0005) wakes the relay.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUE_BYTES_REMOVAL = """
CREATE FUNCTION files_queue_bytes_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO outbox_messages (id, actor_name, args, created_at)
  VALUES ('msg_' || upper(substr(replace(gen_random_uuid()::text, '-', ''), 1, 26)),
          'delete_file_bytes', jsonb_build_array(OLD.storage_key), now());
  RETURN NULL;
END $$;
CREATE TRIGGER files_queue_bytes_removal AFTER DELETE ON files
  FOR EACH ROW EXECUTE FUNCTION files_queue_bytes_removal();
"""


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("owner_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("storage_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_files_org_created", "files", ["org_id", "created_at"], unique=False)
    op.create_index("ix_files_owner", "files", ["owner_id"], unique=False)
    op.execute(_QUEUE_BYTES_REMOVAL)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS files_queue_bytes_removal ON files")
    op.execute("DROP FUNCTION IF EXISTS files_queue_bytes_removal()")
    op.drop_index("ix_files_owner", table_name="files")
    op.drop_index("ix_files_org_created", table_name="files")
    op.drop_table("files")
