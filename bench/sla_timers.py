"""Figure 6: SLA timers at scale. `python -m bench.sla_timers [--clocks 1000000] [--due 50] [--target 20]`

On a fresh stack (gunicorn + `BENCH_WORKERS` RQ workers, each running the SLA timer thread,
`inbox.services.sla_timer`) with an SLA policy (first response in `--target` s, calendar time, warning at 80%) and `--clocks` running clocks
(COPY via bench.scale_data: one first_response clock per conversation, next_deadline_at spread 1 h .. 30 days
ahead):
  * breach delay: `--due` customer messages (single-entry webhooks, one new conversation each, 10/s) whose
    first-response clock breaches `--target` s later; a connected Socket.IO client (agent of the brand) records
    `sla.breached`; delay = receive time - the breach time carried by the event (`due_at` = breached_at);
  * wake-up cost: the timer's two statements (fire_due's due-clock claim, earliest_deadline's MIN), p50/p99 and
    EXPLAIN (ANALYZE, BUFFERS), with 0 clocks due and with 1,000 clocks due (made due inside a transaction that
    is rolled back, so the running timers never see them).
References in the same run: bare Redis PUBLISH -> subscriber (delay), bare primary-key SELECT (wake-up cost).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.common import OUT, PY, ROOT, Stack, log, machine_info, machine_line, ms, pct, save_figure

NAME = "sla_timers"
# what inbox.services.sla_timer.fire_due / earliest_deadline send (SQLAlchemy-compiled, PostgreSQL)
DUE_SQL = ("SELECT conversations.* FROM conversations WHERE conversations.id IN (SELECT sla_clocks.conversation_id "
           "FROM sla_clocks WHERE sla_clocks.next_deadline_at <= %s) ORDER BY conversations.id LIMIT 100 "
           "FOR UPDATE OF conversations SKIP LOCKED")
MIN_SQL = "SELECT min(sla_clocks.next_deadline_at) AS min_1 FROM sla_clocks"
PK_SQL = "SELECT * FROM sla_clocks WHERE id = %s"


def _timed(conn: psycopg.Connection, sql: str, args: Any, n: int = 200) -> dict[str, Any]:
    lat = []
    for i in range(n):
        t = time.perf_counter()
        conn.execute(sql, args(i) if callable(args) else args).fetchall()
        lat.append(time.perf_counter() - t)
    return {"n": n, "p50": pct(lat, 50), "p99": pct(lat, 99)}


def _explain(conn: psycopg.Connection, sql: str, args: Any) -> tuple[str, float]:
    lines = [r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, args).fetchall()]
    exec_ms = next((float(x.split(":")[1].split()[0]) for x in lines if x.startswith("Execution Time")), 0.0)
    return "\n".join(lines), exec_ms


def wakeup_costs(dsn: str, n_clocks: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    plans = []
    with psycopg.connect(dsn) as conn:
        now = datetime.now(UTC)
        out["ref_pk"] = _timed(conn, PK_SQL, lambda i: ((i * 7919) % n_clocks + 1,))
        conn.rollback()
        for due in (0, 1000):
            if due:
                conn.execute("UPDATE sla_clocks SET next_deadline_at = now() - interval '1 minute' WHERE id IN "
                             "(SELECT id FROM sla_clocks ORDER BY id OFFSET 5000 LIMIT %s)", (due,))
            out[f"due_{due}"] = _timed(conn, DUE_SQL, (now,))
            out[f"min_{due}"] = _timed(conn, MIN_SQL, None)
            for label, sql, args in (("fire_due claim", DUE_SQL, (now,)), ("earliest_deadline", MIN_SQL, None)):
                text, exec_ms = _explain(conn, sql, args)
                out[f"{'due' if 'claim' in label else 'min'}_{due}"]["explain_ms"] = exec_ms
                plans.append(f"-- {label}, {due} clocks due, {n_clocks} clocks in total\n-- {sql}\n{text}")
            conn.rollback()  # the 1,000 due clocks never become visible to the running timers
    (OUT / f"{NAME}-explain.txt").write_text("\n\n".join(plans) + "\n")
    return out


def breach_delays(stack: Stack, n_due: int, target: float) -> dict[str, Any]:
    from bench.ingest import load

    listen_out = OUT / f"{NAME}-listen.json"
    listener = subprocess.Popen([PY, "-m", "bench.sio_listen", "--url", stack.base_url, "--tokens",
                                 stack.world["agent_token"], "--events", "sla.breached,sla.warning", "--keep-data",
                                 "--out", str(listen_out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        ready = listener.stdout.readline()
        log(f"listener: {ready.strip()}")
        sent = time.time()
        result = load(stack.base_url + "/webhooks/meta", prefix="sla", count=n_due, rate=10.0, procs=1, threads=8,
                      psids=n_due)
        deadline = sent + n_due / 10.0 + target + 15
        while time.time() < deadline:
            n = stack.sql("SELECT count(*) FROM sla_clocks WHERE breached_at IS NOT NULL")[0][0]
            if n >= n_due and time.time() > sent + n_due / 10.0 + target + 2:
                break
            time.sleep(0.5)
        time.sleep(2.0)
    finally:
        listener.send_signal(signal.SIGTERM)
        listener.wait(30)
    data = json.loads(listen_out.read_text())
    listen_out.unlink()
    delays: dict[str, list[float]] = {"sla.breached": [], "sla.warning": []}
    seen: set[tuple[str, int]] = set()
    for _client, name, _seq, _t, recv, payload in data["events"]:
        key = (name, payload.get("conversation_id"))
        if key in seen or not payload.get("due_at"):
            continue
        seen.add(key)
        due = datetime.fromisoformat(payload["due_at"]).timestamp()
        if name == "sla.breached":
            delays[name].append(recv - due)
    breaches = delays["sla.breached"]
    return {"sent": n_due, "acked": result["statuses"], "breached_events": len(breaches),
            "warning_events": sum(1 for k in seen if k[0] == "sla.warning"),
            "p50": pct(breaches, 50), "p99": pct(breaches, 99), "max": max(breaches) if breaches else None,
            "min": min(breaches) if breaches else None,
            "clocks_breached_in_db": stack.sql("SELECT count(*) FROM sla_clocks WHERE breached_at IS NOT NULL")[0][0]}


def run(n_clocks: int = 1_000_000, n_due: int = 50, target: float = 20.0) -> dict[str, Any]:
    from bench.live_latency import redis_reference
    from bench.scale_data import load_queue, setup_org

    info = machine_info()
    res: dict[str, Any] = {"machine": info, "clocks": n_clocks, "due": n_due, "target_s": target}
    with Stack(label=NAME) as stack:
        res["workers"] = stack.workers
        org = setup_org(stack.database_url, n_agents=10)
        org.policy_id = stack.sql(
            "INSERT INTO sla_policies (name, position, first_response_seconds, warning_ratio, pause_on, conditions, "
            "archived, created_at, updated_at) VALUES ('bench first response', 0, %s, 0.8, '[]', '{}', false, now(), "
            "now()) RETURNING id", int(target))[0][0]
        res["load"] = load_queue(stack.database_url, org, n_clocks, msgs_per_conversation=0,
                                 big_conversation_messages=0, sla_clocks=True)
        res["clock_rows"] = stack.sql("SELECT count(*) FROM sla_clocks")[0][0]
        time.sleep(6.0)  # the workers' policy cache (5 s) sees the new policy
        res["ref_redis"] = redis_reference(10.0, 50)
        res["wakeup"] = wakeup_costs(stack.database_url, n_clocks)
        w = res["wakeup"]
        log(f"wake-up: claim p99 {ms(w['due_0']['p99'])} (0 due) / {ms(w['due_1000']['p99'])} (1000 due); "
            f"min p99 {ms(w['min_0']['p99'])}; pk ref p99 {ms(w['ref_pk']['p99'])}")
        res["delay"] = breach_delays(stack, n_due, target)
        d = res["delay"]
        log(f"breach delay: {d['breached_events']}/{n_due} events, p50 {ms(d['p50'])} p99 {ms(d['p99'])}")
    return save_figure(NAME, res, report)


def report(res: dict[str, Any]) -> str:
    d, w, ref = res["delay"], res["wakeup"], res["ref_redis"]
    pk = w["ref_pk"]

    def row(label: str, key: str) -> str:
        r = w[key]
        return (f"| {label} | {ms(r['p50'])} | {ms(r['p99'])} | {r.get('explain_ms', '')} ms | "
                f"{r['p99'] / pk['p99']:.1f}x |")
    lines = [
        "## 6. SLA timers at scale", "", machine_line(res["machine"]), "",
        f"{res['clock_rows']:,} running SLA clocks (COPY, next_deadline_at spread 1 h .. 30 days ahead; loaded in "
        f"{res['load']['total_seconds']} s); policy: first response {res['target_s']:g} s, calendar time, warning "
        f"at 80%. Stack: gunicorn + {res.get('workers', 2)} RQ worker(s), each running the SLA timer thread "
        "(`SHARED_MAX_SLEEP` 1 s). "
        f"{res['due']} new conversations (single-entry webhooks, 10/s) breach {res['target_s']:g} s after their "
        "message; one Socket.IO client (agent of the brand) records `sla.breached`.", "",
        "| measure | p50 | p99 | max | events | ratio p50 / p99 to reference | verdict |", "|---|---|---|---|---|---|---|",
        f"| reference: bare Redis PUBLISH -> subscriber | {ms(ref['p50'])} | {ms(ref['p99'])} | {ms(ref['max'])} | "
        f"{ref['received']}/{ref['count']} | 1 / 1 | |",
        f"| **breach time -> `sla.breached` at the client** | **{ms(d['p50'])}** | **{ms(d['p99'])}** | {ms(d['max'])} | "
        f"{d['breached_events']}/{d['sent']} (clocks breached in the database: {d['clocks_breached_in_db']}) | "
        f"{(d['p50'] or 0) / ref['p50']:.0f}x / {(d['p99'] or 0) / ref['p99']:.0f}x | "
        f"{'all pushed' if d['breached_events'] >= d['sent'] else '**missing events**'} |", "",
        "Timer wake-up cost (the two statements the timer sends per wake-up, psycopg, 200 runs each; `explain` = "
        f"EXPLAIN ANALYZE execution time; full plans in `bench/out/{NAME}-explain.txt`):", "",
        "| statement | p50 | p99 | explain | p99 ratio to PK select |", "|---|---|---|---|---|",
        f"| reference: `SELECT * FROM sla_clocks WHERE id = %s` | {ms(pk['p50'])} | {ms(pk['p99'])} | | 1.0x |",
        row("fire_due claim, 0 clocks due", "due_0"), row("fire_due claim, 1,000 clocks due", "due_1000"),
        row("earliest_deadline MIN(), 0 due", "min_0"), row("earliest_deadline MIN(), 1,000 due", "min_1000"),
        "", f"Raw data: `bench/out/{NAME}.json`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clocks", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=50)
    parser.add_argument("--target", type=float, default=20.0)
    args = parser.parse_args()
    run(args.clocks, args.due, args.target)


if __name__ == "__main__":
    main()
