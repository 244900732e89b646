"""Bulk data for the scale figures (queue_scale, sla_timers): an organisation (brands, teams, agents) on top of
bench.seed's world, then conversations, contacts, labels, messages and SLA clocks loaded with COPY (psycopg
`cursor.copy`, text format, written in large chunks).

Secondary indexes and unique constraints of the loaded tables are dropped before the COPY and rebuilt after it
(what a bulk restore does), foreign-key triggers are off during the load (`session_replication_role =
replica`, which also silences the view-counter triggers, so the counter table is recounted after the load),
then `VACUUM (ANALYZE)` so plans and index-only scans see the real table. Deterministic (seeded).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import psycopg

from bench.common import log

STATUSES = (("resolved", 0.60), ("open", 0.25), ("pending", 0.10), ("snoozed", 0.05))
LABELS = ("vip", "refund", "shipping", "complaint", "lead", "wholesale")
RARE_WORD = "remboursement"           # in 0.05% of the message texts: thousands of matches at 1M conversations
ORDER_NUMBER = "CMD-7731942"          # in one message of 3 conversations (one is conversation 1): a rare text
COMMON_WORD = "commande"              # one of WORDS: in about 13% of the message texts
FIRST = ("Camille", "Louis", "Emma", "Hugo", "Chloé", "Lucas", "Léa", "Jules", "Manon", "Nathan", "Sarah", "Tom",
         "Inès", "Adam", "Jade", "Noah", "Alice", "Ethan", "Lina", "Paul", "Maria", "John", "Aisha", "Kenji")
LAST = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
        "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier",
        "Smith", "Nguyen", "Rossi", "Müller", "Kowalski", "Silva", "Okafor", "Tanaka")
WORDS = ("bonjour", "merci", "commande", "livraison", "colis", "taille", "couleur", "retour", "échange", "stock",
         "prix", "promo", "code", "magasin", "horaires", "disponible", "quand", "hello", "order", "delivery",
         "size", "please", "thanks", "question", "problem", "photo", "link", "cart", "payment", "card", "week",
         "today", "tomorrow", "store", "open", "closed", "reply", "urgent", "gift", "robe", "chaussures", "sac",
         "manteau", "pull", "jean", "t-shirt", "bleu", "rouge", "noir", "blanc", "vert", "S", "M", "L", "XL",
         "numéro", "suivi", "adresse", "facture", "reçu", "annuler", "modifier", "possible", "svp", "ok", "super")


@dataclass
class Org:
    brands: list[int]
    brand_weights: list[float]
    channels: dict[int, list[int]]          # brand -> channel ids
    teams: dict[int, list[int]]             # brand -> teams serving it
    agents: dict[int, list[int]]            # brand -> agents who can see it
    policy_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def setup_org(dsn: str, n_brands: int = 6, n_agents: int = 100) -> Org:
    """Brands 1-2 / teams 1-2 / channels 1-3 / agents 1-5 come from tests.factories.build_world (agent 3, the
    measured agent, is in team 1 serving brand 1). Adds brands up to `n_brands`, a Facebook page each, two
    teams per brand and `n_agents` agents spread over the teams."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for b in range(3, n_brands + 1):
            conn.execute("INSERT INTO brands (id, name, created_at, updated_at) VALUES (%s, %s, now(), now())",
                         (b, f"Bench brand {b}"))
            conn.execute("INSERT INTO channels (brand_id, kind, name, external_id, config, credentials_encrypted, "
                         "status, created_at, updated_at) SELECT %s, kind, %s, %s, config, credentials_encrypted, "
                         "status, now(), now() FROM channels WHERE id = 2", (b, f"Bench page {b}", f"9{b:09d}"))
        conn.execute("SELECT setval('brands_id_seq', (SELECT max(id) FROM brands))")
        n_teams = 2 * n_brands
        for t in range(3, n_teams + 1):
            conn.execute("INSERT INTO teams (id, name, created_at, updated_at) VALUES (%s, %s, now(), now())",
                         (t, f"Bench team {t}"))
            conn.execute("INSERT INTO team_brands (team_id, brand_id) VALUES (%s, %s)", (t, (t - 1) % n_brands + 1))
        conn.execute("SELECT setval('teams_id_seq', (SELECT max(id) FROM teams))")
        for i in range(n_agents):
            aid = conn.execute(
                "INSERT INTO agents (email, name, password_hash, role, availability, is_active, capacity, "
                "session_version, created_at, updated_at) VALUES (%s, %s, '!', 'agent', 'online', true, 20, 1, "
                "now(), now()) RETURNING id", (f"scale-{i}@relais.test", f"Scale agent {i}")).fetchone()[0]
            conn.execute("INSERT INTO team_members (team_id, agent_id) VALUES (%s, %s)", (i % n_teams + 1, aid))
        teams: dict[int, list[int]] = {}
        for team_id, brand_id in conn.execute("SELECT team_id, brand_id FROM team_brands ORDER BY 1"):
            teams.setdefault(brand_id, []).append(team_id)
        agents: dict[int, list[int]] = {}
        for brand_id, agent_id in conn.execute(
                "SELECT tb.brand_id, tm.agent_id FROM team_brands tb JOIN team_members tm USING (team_id) "
                "JOIN agents a ON a.id = tm.agent_id WHERE a.role <> 'admin' ORDER BY 1, 2"):
            agents.setdefault(brand_id, []).append(agent_id)
        channels: dict[int, list[int]] = {}
        for cid, brand_id in conn.execute("SELECT id, brand_id FROM channels ORDER BY id"):
            channels.setdefault(brand_id, []).append(cid)
    brands = list(range(1, n_brands + 1))
    weights = [0.30, 0.20] + [0.5 / (n_brands - 2)] * (n_brands - 2)
    return Org(brands=brands, brand_weights=weights, channels=channels, teams=teams, agents=agents)


# ---------------------------------------------------------------- index handling
LOADED_TABLES = ("contacts", "conversations", "conversation_labels", "messages", "sla_clocks")


def drop_secondary_indexes(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    """Drop unique constraints (not primary keys) and plain indexes; returns the statements that rebuild them."""
    rebuild: list[str] = []
    for table in tables:
        for name, definition in conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                "AND contype = 'u'", (table,)).fetchall():
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in conn.execute(
                "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON "
                "i.oid = x.indexrelid WHERE x.indrelid = %s::regclass AND NOT x.indisprimary AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)", (table,)).fetchall():
            conn.execute(f'DROP INDEX "{name}"')
            rebuild.append(definition)
    return rebuild


def _ts(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch))


def _copy(conn: psycopg.Connection, table: str, columns: str, lines: Iterator[str], chunk: int = 20000) -> int:
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buf: list[str] = []
        for line in lines:
            buf.append(line)
            if len(buf) >= chunk:
                copy.write("".join(buf))
                n += len(buf)
                buf = []
        if buf:
            copy.write("".join(buf))
            n += len(buf)
    return n


# ---------------------------------------------------------------- the queue data set
CONV_COLS = ("id, kind, status, snoozed_until, priority, brand_id, channel_id, contact_id, team_id, assignee_id, "
             "assigned_at, thread_key, first_inbound_at, last_inbound_at, last_outbound_at, last_message_at, "
             "waiting_since, last_message_preview, last_message_direction, resolved_at, extra, created_at, "
             "updated_at, sla_due_at, sla_state")
MSG_COLS = ("id, conversation_id, channel_id, direction, kind, external_id, author_type, author_contact_id, text, "
            "attachments, platform_time, received_at, delivery_status, delivery_attempts, edit_history, hidden, "
            "liked, extra")
CLOCK_COLS = ("conversation_id, policy_id, metric, cycle, turn, is_current, state, target_seconds, started_at, "
              "due_at, warning_at, elapsed_seconds, paused_seconds, paused_intervals, next_deadline_at, evaluated_at")


def load_queue(dsn: str, org: Org, n_conversations: int, *, msgs_per_conversation: float = 10.5,
               big_conversation_messages: int = 5000, sla_clocks: bool = False, seed: int = 7) -> dict[str, Any]:
    """COPY `n_conversations` conversations (+ contacts, labels) and about `msgs_per_conversation` messages each
    (conversation 1, in brand 1 and assigned to agent 3, gets `big_conversation_messages`). With `sla_clocks`,
    one running first_response clock per conversation, due 1 h .. 30 days ahead (policy org.policy_id)."""
    rng = random.Random(seed)
    now = time.time()
    t0 = time.monotonic()
    pool = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 16))) for _ in range(20000)]
    for i in range(10):  # 10 / 20,000 = 0.05% of the messages
        pool[i * 1999] = pool[i * 1999] + " " + RARE_WORD + " svp"
    status_names = [s for s, _ in STATUSES]
    status_weights = [w for _, w in STATUSES]
    stats: dict[str, int] = {"conversations": 0, "messages": 0, "labels": 0, "clocks": 0, "assigned": 0,
                             "sla_due": 0, "waiting": 0}
    msg_counts: list[int] = []
    convs: list[tuple] = []
    for cid in range(1, n_conversations + 1):
        brand = 1 if cid == 1 else rng.choices(org.brands, org.brand_weights)[0]
        status = "open" if cid == 1 else rng.choices(status_names, status_weights)[0]
        n_msgs = big_conversation_messages if cid == 1 else (
            1 + min(300, int(rng.expovariate(1.0 / max(0.01, msgs_per_conversation - 1)))) if msgs_per_conversation else 0)
        msg_counts.append(n_msgs)
        convs.append((cid, brand, status))
    log(f"data: generated {n_conversations} conversation shapes, {sum(msg_counts)} messages planned")

    def conv_lines() -> Iterator[str]:
        for (cid, brand, status), n_msgs in zip(convs, msg_counts):
            age = (3 * 86400 * rng.random() ** 2) if status in ("open", "pending") else (
                14 * 86400 * rng.random() if status == "snoozed" else 365 * 86400 * rng.random() ** 2)
            last = now - age - 60
            first = last - 300 * max(0, n_msgs - 1)
            waiting = status in ("open", "pending") and (cid == 1 or rng.random() < (0.7 if status == "open" else 0.3))
            assignee = 3 if cid == 1 else (rng.choice(org.agents[brand]) if rng.random() < 0.30 else None)
            team = rng.choice(org.teams[brand])
            channel = rng.choice(org.channels[brand])
            sla_due = sla_state = None
            if waiting and rng.random() < 0.8:
                due = last + 4 * 3600
                sla_due = _ts(due)
                sla_state = "breached" if due < now else ("warning" if due - now < 48 * 60 else "running")
                stats["sla_due"] += 1
            stats["waiting"] += waiting
            stats["assigned"] += assignee is not None
            n = r"\N"
            yield "\t".join((
                str(cid), "dm", status, _ts(now + 86400 * rng.random()) if status == "snoozed" else n,
                "1" if rng.random() < 0.9 else "2", str(brand), str(channel), str(cid), str(team),
                str(assignee) if assignee else n, _ts(first + 60) if assignee else n, f"psid-{cid}",
                _ts(first), _ts(last if waiting else last - 300), _ts(last) if not waiting else n, _ts(last),
                _ts(last) if waiting else n, pool[cid % 20000][:300], "in" if waiting else "out",
                _ts(last + 600) if status == "resolved" else n, "{}", _ts(first), _ts(last), sla_due or n,
                sla_state or n)) + "\n"

    def contact_lines() -> Iterator[str]:
        for cid in range(1, n_conversations + 1):
            yield f"{cid}\t{FIRST[cid % len(FIRST)]} {LAST[(cid // len(FIRST)) % len(LAST)]}\tuser{cid}\t{_ts(now)}\t{_ts(now)}\n"

    def label_lines() -> Iterator[str]:
        for cid in range(1, n_conversations + 1):
            if rng.random() < 0.10:
                for label in rng.sample(LABELS, rng.randint(1, 2)):
                    stats["labels"] += 1
                    yield f"{cid}\t{label}\n"

    ordered = {1, n_conversations // 2 + 1, n_conversations}  # their first message quotes ORDER_NUMBER

    def message_lines() -> Iterator[str]:
        mid = 0
        for (cid, brand, status), n_msgs in zip(convs, msg_counts):
            channel = org.channels[brand][0]
            last = now - 60 - (3 * 86400 if status in ("open", "pending") else 365 * 86400) * rng.random() ** 2
            for k in range(n_msgs):
                mid += 1
                inbound = k % 2 == 0 or k == n_msgs - 1
                t = _ts(last - 300 * (n_msgs - 1 - k))
                text = pool[rng.randrange(20000)] + (f" {ORDER_NUMBER}" if k == 0 and cid in ordered else "")
                yield (f"{mid}\t{cid}\t{channel}\t{'in' if inbound else 'out'}\tmessage\tm_{mid}\t"
                       f"{'contact' if inbound else 'agent'}\t{cid if inbound else chr(92) + 'N'}\t"
                       f"{text}\t[]\t{t}\t{t}\t{chr(92) + 'N' if inbound else 'sent'}\t0\t[]\t"
                       f"f\tf\t{{}}\n")

    def clock_lines() -> Iterator[str]:
        for cid in range(1, n_conversations + 1):
            due = now + 3600 + 30 * 86400 * rng.random()
            started = due - 4 * 3600
            yield (f"{cid}\t{org.policy_id}\tfirst_response\t1\t1\tt\trunning\t14400\t{_ts(started)}\t{_ts(due)}\t"
                   f"{_ts(started + 0.8 * 14400)}\t0\t0\t[]\t{_ts(min(due, started + 0.8 * 14400))}\t{_ts(now)}\n")

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")   # no FK triggers during the bulk load
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        rebuild = drop_secondary_indexes(conn, LOADED_TABLES)
        stats["contacts"] = _copy(conn, "contacts", "id, name, handle, created_at, updated_at", contact_lines())
        stats["conversations"] = _copy(conn, "conversations", CONV_COLS, conv_lines())
        _copy(conn, "conversation_labels", "conversation_id, label", label_lines())
        log(f"data: conversations, contacts, labels copied ({time.monotonic() - t0:.0f} s)")
        if any(msg_counts):
            stats["messages"] = _copy(conn, "messages", MSG_COLS, message_lines())
            log(f"data: {stats['messages']} messages copied ({time.monotonic() - t0:.0f} s)")
        if sla_clocks:
            stats["clocks"] = _copy(conn, "sla_clocks", CLOCK_COLS, clock_lines())
            log(f"data: {stats['clocks']} sla clocks copied ({time.monotonic() - t0:.0f} s)")
        stats["copy_seconds"] = round(time.monotonic() - t0, 1)
        t1 = time.monotonic()
        for statement in rebuild:
            conn.execute(statement)
        stats["index_seconds"] = round(time.monotonic() - t1, 1)
        for table, seq in (("contacts", "contacts_id_seq"), ("conversations", "conversations_id_seq"),
                           ("messages", "messages_id_seq"), ("sla_clocks", "sla_clocks_id_seq")):
            conn.execute(f"SELECT setval('{seq}', GREATEST(1, (SELECT coalesce(max(id), 1) FROM {table})))")
        t2 = time.monotonic()
        conn.execute("RESET session_replication_role")
        # the COPY ran with triggers off (replica role): recount the view counters the triggers keep
        from inbox.services.view_counts import REBUILD_STATEMENTS
        with conn.transaction():
            for statement in REBUILD_STATEMENTS:
                conn.execute(statement)
        stats["counter_rows"] = conn.execute("SELECT count(*) FROM conversation_counts").fetchone()[0]
        stats["counter_seconds"] = round(time.monotonic() - t2, 1)
        t3 = time.monotonic()
        conn.execute("VACUUM (ANALYZE) " + ", ".join(LOADED_TABLES + ("conversation_counts",)))
        stats["vacuum_seconds"] = round(time.monotonic() - t3, 1)
        stats["db_size"] = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    stats["total_seconds"] = round(time.monotonic() - t0, 1)
    log(f"data: loaded in {stats['total_seconds']} s (COPY {stats['copy_seconds']} s, indexes "
        f"{stats['index_seconds']} s, view counters {stats['counter_seconds']} s ({stats['counter_rows']} keys), "
        f"vacuum {stats['vacuum_seconds']} s), database {stats['db_size']}")
    return stats
