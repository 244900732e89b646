"""Conversation counts per (status, brand, channel, team, assignee, kind), kept by database triggers, so the
inbox's view counters read a handful of rows instead of counting the queue (see services/view_counts.py).

Two tables:
- `conversation_counts`: the base, one row per key (`n` conversations), written only by the compaction;
- `conversation_count_deltas`: append-only +n / -n rows written by triggers on `conversations` in the
  transaction that changes the conversation, whatever the code path (ORM, multi-row INSERT ... ON CONFLICT,
  conditional UPDATE, foreign-key SET NULL, raw SQL).

Why deltas rather than updating the base row in the trigger: every new conversation of a brand's open
unassigned queue would UPDATE the same row, so concurrent ingest transactions would queue on that row's lock
until each commits (and could deadlock when two transactions touch two keys in opposite orders). Appending rows
takes no row lock at all; a reader sums base + deltas in one statement (one snapshot, so always exact), and
`services.view_counts.compact` folds the deltas into the base from the reconciler loop.

"No team" and "no assignee" are stored as 0 (ids start at 1) so the key can be a primary key on both
databases (a NULL is never equal to another NULL in a unique key).

The trigger DDL below is attached to `conversations` for `metadata.create_all`; migration 0007 creates the
same triggers with a frozen copy of this text (tests/integration/test_view_counts.py checks they agree).
"""
from __future__ import annotations

from sqlalchemy import BigInteger, DDL, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column

from inbox.models.base import Base
from inbox.models.conversation import Conversation

KEY = ("status", "brand_id", "channel_id", "team_id", "assignee_id", "kind")


class ConversationCount(Base):
    """The base: `n` conversations with this key, as of the last compaction."""
    __tablename__ = "conversation_counts"
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    brand_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    team_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)      # 0 = no team
    assignee_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # 0 = unassigned
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class ConversationCountDelta(Base):
    """+n / -n for a key, appended by the triggers since the last compaction."""
    __tablename__ = "conversation_count_deltas"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    brand_id: Mapped[int]
    channel_id: Mapped[int]
    team_id: Mapped[int]
    assignee_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(BigInteger)


# Emptying every table child-first (tests, drop_all) must empty `conversations` before the counters, or the
# delete triggers would leave deltas behind: make `conversations` sort after them.
Conversation.__table__.add_is_dependent_on(ConversationCount.__table__)
Conversation.__table__.add_is_dependent_on(ConversationCountDelta.__table__)

_COLS = "status, brand_id, channel_id, team_id, assignee_id, kind, n"
_CHANGED = " OR ".join(f"OLD.{c} IS {{ne}} NEW.{c}" for c in KEY)


def _row(ref: str, n: str) -> str:
    return (f"{ref}.status, {ref}.brand_id, {ref}.channel_id, coalesce({ref}.team_id, 0), "
            f"coalesce({ref}.assignee_id, 0), {ref}.kind, {n}")


# PostgreSQL: inserts and deletes are counted per statement from the transition table (a 100-row ingest
# INSERT appends one row per key, not 100); updates per row, only when a counted column really changed (the
# WHEN clause is evaluated without calling the function, so the many updates of last_message_at cost ~nothing).
POSTGRESQL_TRIGGERS: tuple[str, ...] = (
    f"""CREATE FUNCTION conversation_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conversation_count_deltas ({_COLS})
    SELECT status, brand_id, channel_id, coalesce(team_id, 0), coalesce(assignee_id, 0), kind, count(*)
    FROM new_rows GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$""",
    f"""CREATE FUNCTION conversation_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conversation_count_deltas ({_COLS})
    SELECT status, brand_id, channel_id, coalesce(team_id, 0), coalesce(assignee_id, 0), kind, -count(*)
    FROM old_rows GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$""",
    f"""CREATE FUNCTION conversation_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conversation_count_deltas ({_COLS})
    VALUES ({_row("OLD", "-1")}), ({_row("NEW", "1")});
    RETURN NULL;
END $$""",
    """CREATE FUNCTION conversation_counts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM conversation_count_deltas;
    DELETE FROM conversation_counts;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER conversation_counts_insert AFTER INSERT ON conversations REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION conversation_counts_insert()",
    "CREATE TRIGGER conversation_counts_delete AFTER DELETE ON conversations REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION conversation_counts_delete()",
    f"CREATE TRIGGER conversation_counts_update AFTER UPDATE ON conversations FOR EACH ROW "
    f"WHEN ({_CHANGED.format(ne='DISTINCT FROM')}) EXECUTE FUNCTION conversation_counts_update()",
    "CREATE TRIGGER conversation_counts_truncate AFTER TRUNCATE ON conversations "
    "FOR EACH STATEMENT EXECUTE FUNCTION conversation_counts_truncate()",
)
POSTGRESQL_DROP: tuple[str, ...] = tuple(
    f"DROP FUNCTION IF EXISTS conversation_counts_{op}() CASCADE" for op in ("insert", "delete", "update", "truncate"))

# SQLite: row triggers only (no statement triggers there); one writer at a time, so no contention either way.
SQLITE_TRIGGERS: tuple[str, ...] = (
    f"CREATE TRIGGER conversation_counts_insert AFTER INSERT ON conversations BEGIN "
    f"INSERT INTO conversation_count_deltas ({_COLS}) VALUES ({_row('NEW', '1')}); END",
    f"CREATE TRIGGER conversation_counts_delete AFTER DELETE ON conversations BEGIN "
    f"INSERT INTO conversation_count_deltas ({_COLS}) VALUES ({_row('OLD', '-1')}); END",
    f"CREATE TRIGGER conversation_counts_update AFTER UPDATE ON conversations "
    f"WHEN {_CHANGED.format(ne='NOT')} BEGIN "
    f"INSERT INTO conversation_count_deltas ({_COLS}) VALUES ({_row('OLD', '-1')}); "
    f"INSERT INTO conversation_count_deltas ({_COLS}) VALUES ({_row('NEW', '1')}); END",
)
SQLITE_DROP: tuple[str, ...] = tuple(
    f"DROP TRIGGER IF EXISTS conversation_counts_{op}" for op in ("insert", "delete", "update"))

for _statement in POSTGRESQL_TRIGGERS:
    event.listen(Conversation.__table__, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
for _statement in SQLITE_TRIGGERS:
    event.listen(Conversation.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in POSTGRESQL_DROP:
    event.listen(Conversation.__table__, "after_drop", DDL(_statement).execute_if(dialect="postgresql"))
