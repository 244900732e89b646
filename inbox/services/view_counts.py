"""The inbox's view counters (all / mine / unassigned) from the trigger-maintained counter tables.

`conversation_counts` (base) + `conversation_count_deltas` (appended by triggers; see models/view_count.py)
hold the number of conversations per (status, brand, channel, team, assignee, kind). `counts_for` answers
the views when every filter is one of those dimensions (status, brand_id, channel_id, channel_kind, team_id,
kind, and the agent's visible brands): one SELECT over base + deltas, so one snapshot, exact at all times, and
its cost depends on the number of keys, not on the number of conversations. Other filters (q, label, priority,
sla, contact_id) return None and the caller counts the conversations.

`compact` folds the deltas into the base (the reconciler calls it every RECONCILE_INTERVAL_SECONDS, so a read
sums a few hundred base rows plus the deltas of the last seconds; if no reconciler ran for a long time the
reads would slow down with the pending deltas, never become wrong); `rebuild` recounts from scratch (bulk
loads that bypass triggers, or a repair).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text, union_all
from sqlalchemy.orm import Session

from inbox.models import Agent, Channel
from inbox.models.view_count import KEY, ConversationCount, ConversationCountDelta
from inbox.services import access

# filters the counter tables answer, and parameters that do not filter the counts at all
COVERED = frozenset({"status", "brand_id", "channel_id", "channel_kind", "team_id", "kind"})
NOT_FILTERS = frozenset({"assignee", "sort", "limit", "cursor", "counts"})
_TRUTHY_FILTERS = frozenset({"status", "channel_kind", "priority", "label", "q", "sla"})  # _filters skips falsy ones
_ID_FILTERS = ("brand_id", "channel_id", "team_id")
_LOCK_KEY = 0x7265_6C61_6973_0007  # pg advisory lock: one compaction / rebuild at a time


def covered(params: dict[str, Any]) -> bool:
    """Whether the counter tables can answer these filters exactly as `conversations._filters` applies them
    (anything unusual, e.g. a non-positive id, is left to the COUNT, which is always right)."""
    for key, value in params.items():
        if key in NOT_FILTERS or value is None or (key in _TRUTHY_FILTERS and not value):
            continue
        if key not in COVERED:
            return False
        if key in _ID_FILTERS and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            return False  # 0 is the stored "no team"; a non-positive id matches no conversation anyway
        if key in ("status", "kind", "channel_kind") and not (isinstance(value, str) and value):
            return False
    return True


def counts_for(session: Session, agent: Agent, params: dict[str, Any]) -> dict[str, int] | None:
    """{"all", "mine", "unassigned"} from the counter tables, or None when the filters are not covered."""
    if not covered(params):
        return None
    allowed = access.brand_ids_for(session, agent)
    parts = []
    for table in (ConversationCount, ConversationCountDelta):
        conditions = []
        if allowed is not None:
            conditions.append(table.brand_id.in_(sorted(allowed) or [-1]))
        if params.get("status"):
            conditions.append(table.status == params["status"])
        for key in ("team_id", "brand_id", "channel_id", "kind"):
            if params.get(key) is not None:
                conditions.append(getattr(table, key) == params[key])
        if params.get("channel_kind"):
            conditions.append(table.channel_id.in_(select(Channel.id).where(Channel.kind == params["channel_kind"])))
        parts.append(select(table.assignee_id, table.n).where(*conditions))
    rows = union_all(*parts).subquery()
    total = func.coalesce(func.sum(rows.c.n), 0)
    row = session.execute(select(
        total,
        func.coalesce(func.sum(rows.c.n).filter(rows.c.assignee_id == agent.id), 0),
        func.coalesce(func.sum(rows.c.n).filter(rows.c.assignee_id == 0), 0),
    )).one()
    return {"all": int(row[0]), "mine": int(row[1]), "unassigned": int(row[2])}


_KEY_SQL = ", ".join(KEY)
_PG_COMPACT = f"""
WITH moved AS (DELETE FROM conversation_count_deltas RETURNING {_KEY_SQL}, n),
     sums AS (SELECT {_KEY_SQL}, sum(n) AS n FROM moved GROUP BY {_KEY_SQL})
INSERT INTO conversation_counts ({_KEY_SQL}, n) SELECT {_KEY_SQL}, n FROM sums
ON CONFLICT ({_KEY_SQL}) DO UPDATE SET n = conversation_counts.n + excluded.n
"""
_SQLITE_COMPACT = f"""
INSERT INTO conversation_counts ({_KEY_SQL}, n)
SELECT {_KEY_SQL}, sum(n) FROM conversation_count_deltas WHERE id <= :upto GROUP BY {_KEY_SQL}
ON CONFLICT ({_KEY_SQL}) DO UPDATE SET n = conversation_counts.n + excluded.n
"""


def compact(session: Session) -> int:
    """Fold the deltas into the base rows; returns how many base rows it changed. Call in a transaction.

    PostgreSQL: one statement deletes the deltas its snapshot sees and adds their sums to the base (RETURNING
    gives exactly the rows it deleted, so deltas committed meanwhile stay for the next round and nothing is
    counted twice); readers see the old base + those deltas or the new base, never a mix. Writers are never
    blocked (they only append deltas); an advisory lock keeps concurrent compactions (several workers'
    reconcilers) from waiting on each other: the one that does not get it skips its turn.
    SQLite: the transaction holds the write lock, so the three statements are atomic for readers."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}).scalar():
            return 0
        folded = session.execute(text(_PG_COMPACT)).rowcount
    else:
        upto = session.execute(select(func.max(ConversationCountDelta.id))).scalar()
        if upto is None:
            return 0
        folded = session.execute(text(_SQLITE_COMPACT), {"upto": upto}).rowcount
        session.execute(text("DELETE FROM conversation_count_deltas WHERE id <= :upto"), {"upto": upto})
    session.execute(text("DELETE FROM conversation_counts WHERE n = 0"))
    return folded


_REBUILD = f"""
INSERT INTO conversation_counts ({_KEY_SQL}, n)
SELECT status, brand_id, channel_id, coalesce(team_id, 0), coalesce(assignee_id, 0), kind, count(*)
FROM conversations GROUP BY 1, 2, 3, 4, 5, 6
"""


# the recount, as plain SQL statements (bench.scale_data runs them over psycopg after its COPY)
REBUILD_STATEMENTS = ("DELETE FROM conversation_count_deltas", "DELETE FROM conversation_counts", _REBUILD.strip())


def rebuild(session: Session) -> None:
    """Recount the base from the conversations and drop the deltas (after a load that bypassed the triggers,
    e.g. COPY with session_replication_role = replica). Blocks conversation writes until the transaction ends
    on PostgreSQL (SHARE lock), so no change falls between the recount and the commit."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        session.execute(text("LOCK TABLE conversations IN SHARE MODE"))
    for statement in REBUILD_STATEMENTS:
        session.execute(text(statement))
