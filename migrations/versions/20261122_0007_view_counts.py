"""conversation counters: conversation_counts (base) + conversation_count_deltas (appended by triggers on
conversations), backfilled from the existing conversations; the inbox's view counters read them

Revision ID: 0007_view_counts
Revises: 0006_search_indexes
Create Date: 2026-11-22 22:05:00

The trigger text is a frozen copy of inbox/models/view_count.py as of this revision (a later change to the
triggers needs its own migration); tests/integration/test_view_counts.py checks the two agree.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = "0007_view_counts"
down_revision = "0006_search_indexes"
branch_labels = None
depends_on = None

POSTGRESQL_TRIGGERS = (
    """CREATE FUNCTION conversation_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conversation_count_deltas (status, brand_id, channel_id, team_id, assignee_id, kind, n)
    SELECT status, brand_id, channel_id, coalesce(team_id, 0), coalesce(assignee_id, 0), kind, count(*)
    FROM new_rows GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION conversation_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conversation_count_deltas (status, brand_id, channel_id, team_id, assignee_id, kind, n)
    SELECT status, brand_id, channel_id, coalesce(team_id, 0), coalesce(assignee_id, 0), kind, -count(*)
    FROM old_rows GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION conversation_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conversation_count_deltas (status, brand_id, channel_id, team_id, assignee_id, kind, n)
    VALUES (OLD.status, OLD.brand_id, OLD.channel_id, coalesce(OLD.team_id, 0), coalesce(OLD.assignee_id, 0), OLD.kind, -1), (NEW.status, NEW.brand_id, NEW.channel_id, coalesce(NEW.team_id, 0), coalesce(NEW.assignee_id, 0), NEW.kind, 1);
    RETURN NULL;
END $$""",
    """CREATE FUNCTION conversation_counts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM conversation_count_deltas;
    DELETE FROM conversation_counts;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER conversation_counts_insert AFTER INSERT ON conversations REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION conversation_counts_insert()""",
    """CREATE TRIGGER conversation_counts_delete AFTER DELETE ON conversations REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION conversation_counts_delete()""",
    """CREATE TRIGGER conversation_counts_update AFTER UPDATE ON conversations FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.brand_id IS DISTINCT FROM NEW.brand_id OR OLD.channel_id IS DISTINCT FROM NEW.channel_id OR OLD.team_id IS DISTINCT FROM NEW.team_id OR OLD.assignee_id IS DISTINCT FROM NEW.assignee_id OR OLD.kind IS DISTINCT FROM NEW.kind) EXECUTE FUNCTION conversation_counts_update()""",
    """CREATE TRIGGER conversation_counts_truncate AFTER TRUNCATE ON conversations FOR EACH STATEMENT EXECUTE FUNCTION conversation_counts_truncate()""",
)
POSTGRESQL_DROP = (
    """DROP FUNCTION IF EXISTS conversation_counts_insert() CASCADE""",
    """DROP FUNCTION IF EXISTS conversation_counts_delete() CASCADE""",
    """DROP FUNCTION IF EXISTS conversation_counts_update() CASCADE""",
    """DROP FUNCTION IF EXISTS conversation_counts_truncate() CASCADE""",
)
SQLITE_TRIGGERS = (
    """CREATE TRIGGER conversation_counts_insert AFTER INSERT ON conversations BEGIN INSERT INTO conversation_count_deltas (status, brand_id, channel_id, team_id, assignee_id, kind, n) VALUES (NEW.status, NEW.brand_id, NEW.channel_id, coalesce(NEW.team_id, 0), coalesce(NEW.assignee_id, 0), NEW.kind, 1); END""",
    """CREATE TRIGGER conversation_counts_delete AFTER DELETE ON conversations BEGIN INSERT INTO conversation_count_deltas (status, brand_id, channel_id, team_id, assignee_id, kind, n) VALUES (OLD.status, OLD.brand_id, OLD.channel_id, coalesce(OLD.team_id, 0), coalesce(OLD.assignee_id, 0), OLD.kind, -1); END""",
    """CREATE TRIGGER conversation_counts_update AFTER UPDATE ON conversations WHEN OLD.status IS NOT NEW.status OR OLD.brand_id IS NOT NEW.brand_id OR OLD.channel_id IS NOT NEW.channel_id OR OLD.team_id IS NOT NEW.team_id OR OLD.assignee_id IS NOT NEW.assignee_id OR OLD.kind IS NOT NEW.kind BEGIN INSERT INTO conversation_count_deltas (status, brand_id, channel_id, team_id, assignee_id, kind, n) VALUES (OLD.status, OLD.brand_id, OLD.channel_id, coalesce(OLD.team_id, 0), coalesce(OLD.assignee_id, 0), OLD.kind, -1); INSERT INTO conversation_count_deltas (status, brand_id, channel_id, team_id, assignee_id, kind, n) VALUES (NEW.status, NEW.brand_id, NEW.channel_id, coalesce(NEW.team_id, 0), coalesce(NEW.assignee_id, 0), NEW.kind, 1); END""",
)
SQLITE_DROP = (
    """DROP TRIGGER IF EXISTS conversation_counts_insert""",
    """DROP TRIGGER IF EXISTS conversation_counts_delete""",
    """DROP TRIGGER IF EXISTS conversation_counts_update""",
)
BACKFILL = """INSERT INTO conversation_counts (status, brand_id, channel_id, team_id, assignee_id, kind, n)
SELECT status, brand_id, channel_id, coalesce(team_id, 0), coalesce(assignee_id, 0), kind, count(*)
FROM conversations GROUP BY 1, 2, 3, 4, 5, 6"""


def upgrade() -> None:
    op.create_table(
        "conversation_counts",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("channel_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("team_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("assignee_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("status", "brand_id", "channel_id", "team_id", "assignee_id", "kind",
                                name=op.f("pk_conversation_counts")),
    )
    op.create_table(
        "conversation_count_deltas",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("assignee_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_count_deltas")),
    )
    # triggers first, then the backfill: on PostgreSQL CREATE TRIGGER locks conversations against writes until
    # this migration commits, so no change can fall between the count and the triggers
    for statement in (POSTGRESQL_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS):
        op.execute(statement)
    op.execute(BACKFILL)


def downgrade() -> None:
    for statement in (POSTGRESQL_DROP if op.get_bind().dialect.name == "postgresql" else SQLITE_DROP):
        op.execute(statement)
    op.drop_table("conversation_count_deltas")
    op.drop_table("conversation_counts")
