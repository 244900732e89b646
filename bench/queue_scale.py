"""Figure 5: the queue at scale. `python -m bench.queue_scale [--conversations 10000,1000000] [--no-fixes]`

For each size (10k first, then 1M; ~10 messages per conversation, COPY-loaded by bench.scale_data into a fresh
migrated database of a `Stack`), in a separate measuring process (`--measure`, the app's own services and
schemas, one SQLAlchemy session, as the API handlers call them, agent 3 = a plain agent of team 1 / brand 1):
  * first page and deep page (cursor after up to 50 pages of 50) of each main view, status=open:
    mine (assignee=me), unassigned (assignee=none), team (team_id=1), brand (brand_id=1), SLA due (sort=sla_due);
    each = `list_conversations(counts=False)` + ConversationPageSchema dump;
  * the view counters (`view_counts`, status=open, from the trigger-kept counter tables; the same counts by COUNT
    for comparison; again with thousands of trigger deltas not yet compacted, then one compaction), the text search `q`
    (status=open; a word in 0.05% of the messages, searched again and as a text searched for the first time in the
    process, a contact surname, a common word, an order number in 3 messages), and opening the conversation with
    5,000 messages (get + dump, first page of messages + dump);
p50/p99 per query, the ratio to a bare indexed primary-key SELECT through the same session (same run), and
EXPLAIN (ANALYZE, BUFFERS) of every statement each query sends (bench/out/queue_scale-<size>/<query>.txt).
At the largest size, unless --no-fixes: candidate fixes created in the bench database only, re-measured.
Results per size are kept in bench/out/queue_scale-<size>.json; the RESULTS section shows every size on file.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import OUT, PY, ROOT, Stack, log, machine_info, machine_line, pct, save_json, write_section

NAME = "queue_scale"
AGENT_ID = 3            # tests.factories world.agent: role agent, team 1 -> brand 1
VIEWS = {
    "mine": {"status": "open", "assignee": "me"},
    "unassigned": {"status": "open", "assignee": "none"},
    "team": {"status": "open", "team_id": 1},
    "brand": {"status": "open", "brand_id": 1},
    "sla_due": {"status": "open", "sort": "sla_due"},
}
TARGET_P99 = 0.025


# ---------------------------------------------------------------- the measuring process
def measure(out_dir: Path, size: int, max_seconds: float, max_iter: int, fixes: bool) -> dict[str, Any]:
    from sqlalchemy import event, text

    from bench.scale_data import COMMON_WORD, ORDER_NUMBER, RARE_WORD
    from inbox import create_app
    from inbox.api.conversations import ConversationPageSchema, MessagePageSchema
    from inbox.db import db
    from inbox.models import Agent
    from inbox.services import conversations

    app = create_app(role="worker")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"queries": {}}
    with app.app_context():
        session = db.session
        engine = db.engine
        captured: list[tuple[str, Any]] = []
        capturing = [False]

        @event.listens_for(engine, "before_cursor_execute")
        def _capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
            if capturing[0]:
                captured.append((statement, parameters))

        agent = session.get(Agent, AGENT_ID)
        page_schema, msg_schema = ConversationPageSchema(), MessagePageSchema()
        max_id = session.execute(text("SELECT max(id) FROM conversations")).scalar()
        rng = random.Random(1)

        def run_page(params: dict[str, Any]) -> Any:
            page = conversations.list_conversations(session, agent, {**params, "counts": False, "limit": 50})
            return page_schema.dump(page), page

        def timed(name: str, fn: Callable[[], Any], explain: bool = True, note: str = "") -> dict[str, Any]:
            for _ in range(2):          # warm: plan cache, buffers
                fn()
                session.rollback()
            lat: list[float] = []
            started = time.perf_counter()
            while len(lat) < max_iter and (time.perf_counter() - started < max_seconds or len(lat) < 5):
                t = time.perf_counter()
                fn()
                lat.append(time.perf_counter() - t)
                session.rollback()      # end the read transaction, as a request does
            row = {"n": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat), "note": note}
            if explain:
                captured.clear()
                capturing[0] = True
                try:
                    fn()
                finally:
                    capturing[0] = False
                session.rollback()
                row["statements"] = sum(1 for st, _ in captured if _reads(st))
                row["explain"] = explain_all(name, list(captured))
            results["queries"][name] = row
            log(f"  {name}: p50 {row['p50'] * 1000:.2f} ms p99 {row['p99'] * 1000:.2f} ms (n={row['n']})")
            return row

        def explain_all(name: str, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
            summaries, chunks = [], []
            conn = session.connection()
            for statement, parameters in statements:
                if not _reads(statement):
                    continue
                if "set_config(" in statement:  # the search probe's SET LOCAL statement_timeout: not replayed, so
                    continue                    # the probe's plan shows what it costs without the service's cap
                try:
                    with conn.begin_nested():
                        plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).fetchall()
                except Exception as exc:  # noqa: BLE001  (a plan that cannot be taken must not end the figure)
                    chunks.append(f"-- {statement}\n-- params: {parameters}\n-- EXPLAIN failed: {exc}")
                    continue
                lines = [r[0] for r in plan]
                chunks.append(f"-- {statement}\n-- params: {parameters}\n" + "\n".join(lines))
                summaries.append(summarise_plan(statement, lines))
            session.rollback()
            (out_dir / f"{name}.txt").write_text("\n\n".join(chunks) + "\n")
            return summaries

        # reference: a bare indexed primary-key SELECT through the same session
        timed("ref_pk_select", lambda: session.execute(text("SELECT * FROM conversations WHERE id = :id"),
                                                       {"id": rng.randint(1, max_id)}).one(), explain=True)
        deep_keys: dict[str, Any] = {}
        for view, params in VIEWS.items():
            timed(f"{view}_first", lambda p=params: run_page(p))
            cursor, depth = None, 0
            for _ in range(50):
                _, page = run_page({**params, **({"cursor": cursor} if cursor else {})})
                session.rollback()
                if page["next_cursor"] is None:
                    break
                cursor, depth = page["next_cursor"], depth + 1
            results.setdefault("depth", {})[view] = depth
            if cursor and view == "brand":
                from inbox.services.conversations import decode_cursor
                phase, at, last_id = decode_cursor(cursor, 3)
                if phase == "w":
                    deep_keys["brand"] = (at, last_id)
            deep = {**params, **({"cursor": cursor} if cursor else {})}
            timed(f"{view}_deep", lambda p=deep: run_page(p), note=f"after {depth} pages of 50")
        timed("view_counts", lambda: conversations.view_counts(session, agent, {"status": "open"}),
              note="counter tables: base + pending deltas")
        timed("view_counts_team", lambda: conversations.view_counts(session, agent, {"status": "open", "team_id": 1}),
              note="counter tables, status=open team_id=1")
        timed("view_counts_by_count", lambda: count_views(session, agent, {"status": "open"}),
              note="the COUNT fallback, same filters")
        results["counters"] = measure_counter_deltas(session, timed, conversations, agent)
        timed("search_q", lambda: run_page({"status": "open", "q": RARE_WORD}),
              note=f"q={RARE_WORD!r}, in 0.05% of the messages, searched again")

        def first_search() -> Any:  # as if no search of this process had tried the probe of this text yet
            conversations._failed_probes.clear()
            return run_page({"status": "open", "q": RARE_WORD})
        timed("search_q_first", first_search, note=f"q={RARE_WORD!r} searched for the first time in the process: "
              f"probed first, cancelled after {conversations.SEARCH_PROBE_MS} ms if slower (its plan below runs "
              "uncapped)")
        timed("search_q_name", lambda: run_page({"status": "open", "q": "Dubois"}), note="q='Dubois' (a contact surname)")
        timed("search_q_common", lambda: run_page({"status": "open", "q": COMMON_WORD}),
              note=f"q={COMMON_WORD!r}, in 13% of the messages")
        timed("search_q_rare", lambda: run_page({"status": "open", "q": ORDER_NUMBER}),
              note=f"q={ORDER_NUMBER!r}, in 3 messages")

        def open_conversation() -> Any:
            conversations.read_conversation(session, agent, 1)  # what GET /conversations/<id> answers
            page = conversations.list_messages(session, agent, 1, 50, None)
            return msg_schema.dump(page)
        timed("open_conversation", open_conversation, note="conversation with 5,000 messages: get + messages page 1")
        results["messages_in_big"] = session.execute(text("SELECT count(*) FROM messages WHERE conversation_id = 1")).scalar()
        session.rollback()

        if fixes:
            results["fixes"] = measure_fixes(session, timed, agent, deep_keys)
    return results


def _reads(statement: str) -> bool:
    """A statement that reads (SELECT, or WITH like the search probe): what a call's plans and counts show."""
    return statement.lstrip().upper().startswith(("SELECT", "WITH"))


def count_views(session: Any, agent: Any, params: dict[str, Any]) -> Any:
    """The view counts by COUNT over the conversations (what view_counts does for filters the counter tables do
    not cover, e.g. q or label), for the same filters."""
    from sqlalchemy import func, select

    from inbox.models import Conversation
    from inbox.services.conversations import _filters

    return session.execute(select(
        func.count(), func.count().filter(Conversation.assignee_id == agent.id),
        func.count().filter(Conversation.assignee_id.is_(None)),
    ).select_from(Conversation).where(*_filters(session, agent, params, include_assignee=False))).one()


def measure_counter_deltas(session: Any, timed: Callable, conversations: Any, agent: Any) -> dict[str, Any]:
    """The counters while trigger deltas wait for compaction (up to 2,000 open conversations of brand 1 set pending
    and back: 4 delta rows each), then one compaction. The data is as before afterwards."""
    from sqlalchemy import text

    from inbox.db import db
    from inbox.services import view_counts as counter_tables

    session.rollback()
    out: dict[str, Any] = {"base_rows": session.execute(text("SELECT count(*) FROM conversation_counts")).scalar()}
    ids = "SELECT id FROM conversations WHERE status = 'open' AND brand_id = 1 ORDER BY id LIMIT 2000"
    with db.transaction() as writer:
        chosen = list(writer.execute(text(ids)).scalars())
        writer.execute(text("UPDATE conversations SET status = 'pending' WHERE id = ANY(:ids)"), {"ids": chosen})
        writer.execute(text("UPDATE conversations SET status = 'open' WHERE id = ANY(:ids)"), {"ids": chosen})
    out["deltas"] = session.execute(text("SELECT count(*) FROM conversation_count_deltas")).scalar()
    session.rollback()
    timed("view_counts_with_deltas", lambda: conversations.view_counts(session, agent, {"status": "open"}),
          note=f"{out['deltas']:,} delta rows not yet compacted")
    t = time.perf_counter()
    with db.transaction() as writer:
        out["compacted_keys"] = counter_tables.compact(writer)
    out["compaction_ms"] = round((time.perf_counter() - t) * 1000, 1)
    out["deltas_after"] = session.execute(text("SELECT count(*) FROM conversation_count_deltas")).scalar()
    session.rollback()
    log(f"  counters: {out}")
    return out


def measure_fixes(session: Any, timed: Callable, agent: Any, fixes_cursor: dict[str, Any]) -> dict[str, Any]:
    """Candidate fixes, created in this bench database only, then the same queries again. (The search's trigram
    indexes, once a fix measured here, are migration 0006's: every bench database has them.)"""
    from sqlalchemy import text

    fixes: dict[str, Any] = {}
    import psycopg
    session.rollback()
    conn = psycopg.connect(os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://"),
                           autocommit=True)  # DDL outside the measured session

    def ddl(sql: str) -> float:
        t = time.monotonic()
        conn.execute(sql)
        return round(time.monotonic() - t, 1)

    ddl("SET maintenance_work_mem = '1GB'")
    log("fix 1: covering index for the counters: (status, brand_id) INCLUDE (assignee_id)")
    fixes["counts_index_build_s"] = ddl("CREATE INDEX fix_conv_status_brand_assignee ON conversations "
                                        "(status, brand_id) INCLUDE (assignee_id)")
    ddl("VACUUM (ANALYZE) conversations")
    timed("fix_view_counts_covering_index", lambda: count_views(session, agent, {"status": "open"}),
          note="the COUNT fallback with this index: index-only scan, still O(rows)")
    deep_cursor = fixes_cursor.get("brand")
    if deep_cursor:
        at, last_id = deep_cursor
        params = {"at": at, "id": last_id}
        or_form = text("SELECT c.* FROM conversations c WHERE c.brand_id IN (1) AND c.status = 'open' AND c.brand_id = 1 "
                       "AND c.waiting_since IS NOT NULL AND (c.waiting_since > :at OR (c.waiting_since = :at AND "
                       "c.id > :id)) ORDER BY c.waiting_since, c.id LIMIT 51")
        row_form = text("SELECT c.* FROM conversations c WHERE c.brand_id IN (1) AND c.status = 'open' AND c.brand_id = 1 "
                        "AND c.waiting_since IS NOT NULL AND (c.waiting_since, c.id) > (:at, :id) "
                        "ORDER BY c.waiting_since, c.id LIMIT 51")
        timed("fix_brand_deep_sql_as_is", lambda: session.execute(or_form, params).all(),
              note="the deep page's main statement alone, keyset as OR (today)")
        timed("fix_brand_deep_sql_row_value", lambda: session.execute(row_form, params).all(),
              note="same, keyset as a row comparison (waiting_since, id) > (:at, :id): an index condition")
    conn.execute("DROP INDEX IF EXISTS fix_conv_status_brand_assignee")
    conn.close()
    return fixes


_NODE = re.compile(r"^\s*(?:->\s*)?([A-Z][A-Za-z ]+?)(?: using (\S+))?(?: on (\S+))?(?:\s+\w+)?\s+\(cost")


def summarise_plan(statement: str, lines: list[str]) -> dict[str, Any]:
    """Top-level facts of one EXPLAIN (ANALYZE, BUFFERS): execution time, shared buffers, main scan nodes."""
    text_ = "\n".join(lines)
    exec_ms = re.search(r"Execution Time: ([\d.]+) ms", text_)
    hit = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", text_)
    nodes = []
    for line in lines:
        m = _NODE.match(line)
        if m and ("Scan" in m.group(1) or "Join" in m.group(1) or "Aggregate" in m.group(1) or "Sort" in m.group(1)):
            rows = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+) loops=(\d+)", line)
            nodes.append(f"{m.group(1).strip()}{' ' + m.group(2) if m.group(2) else ''}"
                         f"{' on ' + m.group(3) if m.group(3) and not m.group(2) else ''}"
                         f"{f' rows={rows.group(1)}x{rows.group(2)}' if rows else ''}")
    table = re.search(r"FROM (\w+)", statement)
    return {"table": table.group(1) if table else "?", "exec_ms": float(exec_ms.group(1)) if exec_ms else None,
            "shared_hit": int(hit.group(1)) if hit else 0, "shared_read": int(hit.group(2) or 0) if hit else 0,
            "nodes": nodes[:6]}


# ---------------------------------------------------------------- orchestration
def run_size(n: int, fixes: bool, info: dict[str, Any]) -> dict[str, Any]:
    from bench.scale_data import load_queue, setup_org

    result: dict[str, Any] = {"machine": info, "conversations": n}
    with Stack(workers=0, label=f"{NAME}-{n}") as stack:
        org = setup_org(stack.database_url)
        result["load"] = load_queue(stack.database_url, org, n)
        result["rows"] = {t: stack.sql(f"SELECT count(*) FROM {t}")[0][0]
                          for t in ("conversations", "messages", "contacts", "conversation_labels")}
        result["distribution"] = {
            "status": dict(stack.sql("SELECT status, count(*) FROM conversations GROUP BY 1")),
            "assigned": stack.sql("SELECT count(*) FROM conversations WHERE assignee_id IS NOT NULL")[0][0],
            "sla_state": {str(k): v for k, v in stack.sql("SELECT sla_state, count(*) FROM conversations GROUP BY 1")},
            "visible_open": stack.sql("SELECT count(*) FROM conversations WHERE brand_id = 1 AND status = 'open'")[0][0],
            "mine_open": stack.sql("SELECT count(*) FROM conversations WHERE assignee_id = 3 AND status = 'open'")[0][0],
        }
        tmp = OUT / f"{NAME}-{n}-measure.json"
        env = {**stack.env(), "REDIS_URL": ""}
        cmd = [PY, "-m", "bench.queue_scale", "--measure", "--size", str(n), "--out", str(tmp),
               "--max-seconds", "6" if n <= 100000 else "8"] + (["--fixes"] if fixes else [])
        log(f"measuring {n} conversations")
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, timeout=3000)
        result.update(json.loads(tmp.read_text()))
        tmp.unlink()
    save_json(f"{NAME}-{n}", result)
    return result


def run(sizes: list[int], fixes: bool = True) -> list[dict[str, Any]]:
    info = machine_info()
    results = []
    for i, n in enumerate(sizes):
        results.append(run_size(n, fixes and i == len(sizes) - 1 and n >= 100000, info))
    write_section(NAME, report())
    return results


def _ms(v: float | None) -> str:
    return "n/a" if v is None else (f"{v * 1000:.1f} ms" if v >= 0.001 else f"{v * 1000:.2f} ms")


def report() -> str:
    runs = []
    for path in sorted(OUT.glob(f"{NAME}-*.json"), key=lambda p: int(re.findall(r"\d+", p.stem)[0])):
        if re.fullmatch(rf"{NAME}-\d+", path.stem):
            runs.append(json.loads(path.read_text()))
    if not runs:
        return "## 5. Queue at scale\n\nNo run on file."
    small, big = runs[0], runs[-1]
    names = [k for k in small["queries"] if not k.startswith("fix_")]
    lines = ["## 5. Queue at scale (list views, counters, search, opening a long conversation)", ""]
    for r in runs:
        lines.append(f"- **{r['conversations']:,} conversations**: {machine_line(r['machine'])}. Data: "
                     f"{r['rows']['conversations']:,} conversations, {r['rows']['messages']:,} messages, "
                     f"{r['rows']['conversation_labels']:,} labels; statuses {r['distribution']['status']}; "
                     f"{r['distribution']['assigned']:,} assigned; SLA states {r['distribution']['sla_state']}; "
                     f"agent 3 sees {r['distribution']['visible_open']:,} open conversations (brand 1), "
                     f"{r['distribution']['mine_open']:,} of them assigned to them. Loaded with COPY in "
                     f"{r['load']['copy_seconds']} s + indexes {r['load']['index_seconds']} s + vacuum "
                     f"{r['load']['vacuum_seconds']} s ({r['load']['db_size']}).")
    for r in runs:
        c = r.get("counters")
        if c:
            lines.append(f"- View counters at {r['conversations']:,}: {c['base_rows']:,} counter rows (keys "
                         f"status x brand x channel x team x assignee x kind); with {c['deltas']:,} trigger deltas "
                         f"pending, one compaction folded them into {c['compacted_keys']} keys in "
                         f"{c['compaction_ms']} ms.")
    lines += ["", "Service level, in one process (`inbox.services.conversations` and the API's page dump, as a request runs them: "
              "items built from rows into JSON, "
              "one SQLAlchemy session, a rollback after each call as a request ends), agent 3 (plain agent, brand 1), "
              "status=open, 50 per page. Reference: a bare `SELECT * FROM conversations WHERE id = :id` through the "
              "same session, same run. Target p99 < 25 ms at both sizes.", ""]
    head = "| query | " + " | ".join(f"p50 / p99 at {r['conversations']:,}" for r in runs) + \
        f" | ratio to PK select p50 / p99 ({big['conversations']:,}) | p99 {big['conversations']:,} / {small['conversations']:,} | target p99 < 25 ms |"
    lines += [head, "|" + "---|" * (4 + len(runs))]
    for name in names:
        cells = []
        for r in runs:
            q = r["queries"].get(name)
            cells.append("n/a" if q is None else f"{_ms(q['p50'])} / {_ms(q['p99'])}")
        qb, qs = big["queries"].get(name), small["queries"].get(name)
        ref = big["queries"]["ref_pk_select"]["p99"]
        ref50 = big["queries"]["ref_pk_select"]["p50"]
        ratio_ref = f"{qb['p50'] / ref50:.0f}x / {qb['p99'] / ref:.0f}x" if qb else "n/a"
        growth = f"{qb['p99'] / qs['p99']:.1f}x" if qb and qs else "n/a"
        verdict = "ref" if name == "ref_pk_select" else ("n/a" if qb is None else "met" if qb["p99"] < TARGET_P99
                                                         else f"**missed by {qb['p99'] / TARGET_P99:.1f}x**")
        note = (qb or qs or {}).get("note") or ""
        lines.append(f"| {name}{' (' + note + ')' if note else ''} | " + " | ".join(cells) +
                     f" | {ratio_ref} | {growth} | {verdict} |")
    fix_rows = [(k, v) for k, v in big["queries"].items() if k.startswith("fix_")]
    if fix_rows:
        f = big.get("fixes", {})
        lines += ["", f"Candidate fixes, created in the {big['conversations']:,} bench database only and measured "
                  f"in the same run (index build: counters {f.get('counts_index_build_s')} s):", "",
                  "| fix | p50 | p99 | p99 ratio to PK select | vs the unfixed query, same run |", "|---|---|---|---|---|"]
        ref = big["queries"]["ref_pk_select"]["p99"]
        for k, v in fix_rows:
            base = big["queries"].get("view_counts_by_count" if "counts" in k else "fix_brand_deep_sql_as_is")
            lines.append(f"| {k} ({v.get('note', '')}) | {_ms(v['p50'])} | {_ms(v['p99'])} | {v['p99'] / ref:.1f}x | "
                         f"{base['p99'] / v['p99']:.1f}x lower p99 |")
    lines += ["", f"Plans at {big['conversations']:,} (EXPLAIN (ANALYZE, BUFFERS) of every statement each call sends; "
              f"the slowest one is shown; full text of every statement in `bench/out/{NAME}-<size>/<query>.txt`):", "",
              "| query | SELECTs sent per call | sum of their execution times | main statement execution | shared hit / read | main nodes |",
              "|---|---|---|---|---|---|"]
    for name, q in big["queries"].items():
        for s in sorted(q.get("explain") or [], key=lambda x: -(x["exec_ms"] or 0))[:1]:
            if True:  # the slowest statement of the call
                total = sum(x["exec_ms"] or 0 for x in q["explain"])
                lines.append(f"| {name} | {q.get('statements', '?')} | {total:.1f} ms | {s['exec_ms']} ms | {s['shared_hit']} / {s['shared_read']} | "
                             f"{'; '.join(s['nodes'])} |")
                break
    lines += ["", "Deep pages reached (pages of 50 followed, at most 50): " + "; ".join(
        f"{r['conversations']:,}: {r['depth']}" for r in runs),
        "", f"Raw data: `bench/out/{NAME}-<size>.json`. Headline numbers come from "
        "`python -m bench.queue_scale --conversations 10000,1000000`; `make bench` runs 10,000 only unless "
        "`BENCH_QUEUE_1M=1`, and this section keeps showing every size on file with its own date."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", default="10000,1000000", help="comma-separated sizes, smallest first")
    parser.add_argument("--no-fixes", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fixes", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=6.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        res = measure(OUT / f"{NAME}-{args.size}", args.size, args.max_seconds, 300, args.fixes)
        Path(args.out).write_text(json.dumps(res, default=str))
        return
    if args.report_only:
        write_section(NAME, report())
        return
    run([int(x) for x in args.conversations.split(",")], fixes=not args.no_fixes)


if __name__ == "__main__":
    main()
