"""a function that locks an audit chain and reads its last link in one round trip

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 05:00:00.000000

Appending to an organization's chain took two statements inside the transaction: the advisory
lock, then the read of the last entry. They cannot share one SQL statement, because a statement
reads the snapshot taken when it starts, before it waited for the lock, and would miss an entry
committed meanwhile. A VOLATILE PL/pgSQL function takes a new snapshot for each query inside it,
so its read sees everything committed before the lock was granted: one round trip less for every
audited write, and a shorter time holding the lock that all writers of an organization share.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE FUNCTION tessera_audit_chain_head(chain_name text)
RETURNS TABLE (seq bigint, hash varchar) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- Held until the calling transaction ends: appends to one chain are serialised.
    PERFORM pg_advisory_xact_lock(hashtext(chain_name));
    RETURN QUERY
        SELECT a.seq, a.hash FROM audit_log a
        WHERE a.chain = chain_name ORDER BY a.seq DESC LIMIT 1;
END $$
"""


def upgrade() -> None:
    op.execute(_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION tessera_audit_chain_head(text)")
