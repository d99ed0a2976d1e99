"""a function that links and inserts an audit entry in one round trip

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000

Appending took two round trips under the chain's lock: reading the last link (0007's function),
then inserting the entry whose hash the application computed from it. The entry's canonical
content depends on the chain only through its `seq`, so the application sends the content as the
bytes before and after the decimal `seq`, and this function completes it: it takes the lock, reads
the last link, and inserts the entry with
`hash = sha256(prev_hash || '\\n' || prefix || seq || suffix)`, the same bytes `models.audit`
hashes when it verifies a chain. Every audited write saves a round trip, and the organization-wide
lock is held for one statement less.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = r"""
CREATE FUNCTION tessera_audit_append(
    entry_id varchar, chain_name varchar, entry_org_id varchar, entry_actor_type varchar,
    entry_actor_id varchar, entry_action varchar, entry_resource_type varchar,
    entry_resource_id varchar, entry_ip varchar, entry_user_agent varchar,
    entry_request_id varchar, entry_meta jsonb, entry_created_at timestamptz,
    content_before_seq bytea, content_after_seq bytea)
RETURNS TABLE (seq bigint, prev_hash varchar, hash varchar) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    last_seq bigint;
    last_hash varchar;
BEGIN
    -- Locks the chain until the transaction ends and reads its last link (migration 0007).
    SELECT h.seq, h.hash INTO last_seq, last_hash FROM tessera_audit_chain_head(chain_name) h;
    seq := coalesce(last_seq, 0) + 1;
    prev_hash := coalesce(last_hash, repeat('0', 64));
    hash := encode(sha256(
        convert_to(prev_hash, 'UTF8') || '\x0a'::bytea || content_before_seq
        || convert_to(seq::text, 'UTF8') || content_after_seq), 'hex');
    INSERT INTO audit_log (
        id, chain, seq, org_id, actor_type, actor_id, action, resource_type, resource_id, ip,
        user_agent, request_id, meta, created_at, prev_hash, hash)
    VALUES (
        entry_id, chain_name, seq, entry_org_id, entry_actor_type, entry_actor_id, entry_action,
        entry_resource_type, entry_resource_id, entry_ip, entry_user_agent, entry_request_id,
        entry_meta, entry_created_at, prev_hash, hash);
    RETURN NEXT;
END $$
"""

_SIGNATURE = (
    "tessera_audit_append(varchar, varchar, varchar, varchar, varchar, varchar, varchar, "
    "varchar, varchar, varchar, varchar, jsonb, timestamptz, bytea, bytea)"
)


def upgrade() -> None:
    op.execute(_FUNCTION)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
