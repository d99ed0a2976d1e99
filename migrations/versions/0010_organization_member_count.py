"""each organization's count of members who are not deleted, kept by triggers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 08:30:00.000000

`GET /v1/users` answers an exact `total`. Counted on every page from the memberships less the
deleted users among them (0008), it still read every membership of the organization: 3.5 ms of
PostgreSQL time per page for 10,000 members, thirty times the page itself. The count is now a
column of the organization that triggers keep: memberships added or removed (counted once per
statement, so a bulk insert updates the organization once), a user deleted or brought back, a
user erased. Membership changes already lock the organization row, so the count adds no lock
that was not taken. A membership is never moved to another user or organization; a trigger
refuses that, which the count could not follow.

A membership removed together with its user (the erasure's cascade) is counted off by the user's
own trigger, before the cascade: by then the cascade cannot see the user any more. 0008's index of
deleted users served only the old count and goes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTIONS = """
-- Memberships are counted per statement, from its transition table `changed`: a bulk insert (a
-- COPY of many members) updates each organization once, not once per row. TG_ARGV[0]: +1 or -1.
CREATE FUNCTION tessera_memberships_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A user counts while visible and not deleted.
    UPDATE organizations o SET member_count = o.member_count + TG_ARGV[0]::integer * c.members
    FROM (SELECT m.org_id, count(*) AS members FROM changed m
          JOIN users u ON u.id = m.user_id AND u.status <> 'deleted'
          GROUP BY m.org_id) c
    WHERE o.id = c.org_id;
    RETURN NULL;
END $$;

-- Members join and leave; a membership is never moved to another user or organization.
CREATE FUNCTION tessera_memberships_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a membership is removed and added, not moved';
END $$;

CREATE FUNCTION tessera_users_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        delta := CASE WHEN OLD.status <> 'deleted' THEN -1 ELSE 0 END;
    ELSE
        delta := (NEW.status <> 'deleted')::integer - (OLD.status <> 'deleted')::integer;
    END IF;
    IF delta <> 0 THEN
        UPDATE organizations o SET member_count = o.member_count + delta
        FROM memberships m WHERE m.user_id = OLD.id AND o.id = m.org_id;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NULL END;
END $$;

CREATE TRIGGER memberships_added AFTER INSERT ON memberships REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tessera_memberships_count('1');
CREATE TRIGGER memberships_removed AFTER DELETE ON memberships REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tessera_memberships_count('-1');
CREATE TRIGGER memberships_fixed BEFORE UPDATE OF org_id, user_id ON memberships
    FOR EACH ROW EXECUTE FUNCTION tessera_memberships_fixed();
CREATE TRIGGER users_status_count AFTER UPDATE OF status ON users
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tessera_users_count();
CREATE TRIGGER users_erased_count BEFORE DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION tessera_users_count();
"""

_BACKFILL = """
UPDATE organizations o SET member_count = (
    SELECT count(*) FROM memberships m JOIN users u ON u.id = m.user_id
    WHERE m.org_id = o.id AND u.status <> 'deleted')
"""


def upgrade() -> None:
    op.add_column(
        "organizations",
        sa.Column("member_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(_FUNCTIONS)
    op.execute(_BACKFILL)
    op.drop_index("ix_users_deleted", table_name="users")


def downgrade() -> None:
    op.create_index(
        "ix_users_deleted", "users", ["id"], postgresql_where=sa.text("status = 'deleted'")
    )
    for trigger, table in (
        ("users_erased_count", "users"),
        ("users_status_count", "users"),
        ("memberships_fixed", "memberships"),
        ("memberships_removed", "memberships"),
        ("memberships_added", "memberships"),
    ):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for function in ("users_count", "memberships_fixed", "memberships_count"):
        op.execute(f"DROP FUNCTION tessera_{function}()")
    op.drop_column("organizations", "member_count")
