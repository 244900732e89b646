"""The webhook committer's INSERT in its two forms: `python -m bench.insert_forms [--reps 2000] [--rounds 2]`

One group of 1, 5 or 50 `webhook_events` rows written by one statement on an autocommit psycopg connection (as
`webhook_store._PostgresWriter` does), with the rows sent as one array per column (`db.unnest_insert`: psycopg
dumps each array's elements in Python) or as one JSON document (`db.json_document_insert`:
`json_populate_recordset`, the JSON serialised in C). Alternated, `--rounds` times. Reported: the client's CPU
per statement (this process, which is what a web process spends on the ack's path) and the wall time per
statement (which adds PostgreSQL's work and the commit). A fresh database holds the table; it is dropped at the
end. Writes bench/out/insert_forms.json and the `insert_forms` section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import psycopg
from sqlalchemy import create_engine

from bench.common import PG_ADMIN, log, machine_info, machine_line, save_figure
from inbox.db import json_document_insert, unnest_insert, utcnow
from inbox.models import WebhookEvent
from inbox.models.base import Base

NAME = "insert_forms"
SIZES = (1, 5, 50)
BODY = json.dumps({"object": "page", "entry": [{"id": "104358921234567", "time": 1, "messaging": [{
    "sender": {"id": "7071234567890123"}, "recipient": {"id": "104358921234567"}, "timestamp": 1,
    "message": {"mid": "m_" + "x" * 40, "text": "bonjour, ma commande n'est pas arrivée"}}]}]}).encode()


def _row() -> dict[str, Any]:
    """A stored single-entry Messenger webhook, as `store_webhook_event` hands it to the committer."""
    return {"source": "meta", "channel_id": None, "received_at": utcnow(), "remote_addr": "127.0.0.1",
            "headers": {"X-Hub-Signature-256": "sha256=" + "a" * 64, "Content-Type": "application/json"},
            "body": BODY, "verification": "valid", "verification_detail": None, "status": "pending", "attempts": 0,
            "next_attempt_at": None, "error": None, "processed_at": None, "stats": {}}


def run(reps: int = 2000, rounds: int = 2) -> dict[str, Any]:
    info = machine_info()
    admin = PG_ADMIN
    db_name = f"relais_bench_insert_{uuid.uuid4().hex[:8]}"
    base = admin.rsplit("/", 1)[0]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    results: dict[str, Any] = {"machine": info, "reps": reps, "rounds": rounds, "runs": []}
    try:
        engine = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + db_name)
        tables = [t for t in Base.metadata.sorted_tables if t.name in ("brands", "channels", "webhook_events")]
        Base.metadata.create_all(engine, tables=tables)
        dialect = engine.dialect
        engine.dispose()
        with psycopg.connect(f"{base}/{db_name}", autocommit=True) as conn:
            for _ in range(rounds):
                for n in SIZES:
                    rows = [_row() for _ in range(n)]
                    count = max(200, reps // n)
                    for form, build in (("arrays", unnest_insert), ("json", json_document_insert)):
                        cpu0, wall0 = time.process_time(), time.perf_counter()
                        for _ in range(count):
                            sql, params = build(dialect, WebhookEvent.__table__, rows, returning=("id",))
                            assert len(conn.execute(sql, params).fetchall()) == n
                        cpu = (time.process_time() - cpu0) / count
                        wall = (time.perf_counter() - wall0) / count
                        results["runs"].append({"rows": n, "form": form, "statements": count,
                                                "client_cpu_us": round(cpu * 1e6, 1), "wall_us": round(wall * 1e6, 1)})
                        log(f"{n} row(s), {form}: client CPU {cpu * 1e6:.0f} µs, wall {wall * 1e6:.0f} µs a statement")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    return save_figure(NAME, results, report)


def report(res: dict[str, Any]) -> str:
    lines = ["## The webhook committer's INSERT: arrays or one JSON document", "", machine_line(res["machine"]), "",
             "One statement per group of `webhook_events` rows on an autocommit connection, the two forms alternated "
             f"({res['rounds']} rounds). Client CPU: this process per statement (the web process's share, on the "
             "ack's path); wall: plus PostgreSQL and the commit.", "",
             "| rows per group | form | client CPU per statement | wall per statement | client CPU, JSON / arrays |",
             "|---|---|---|---|---|"]
    by = {}
    for r in res["runs"]:
        by.setdefault((r["rows"], r["form"]), []).append(r)
    for n in SIZES:
        arrays, doc = by.get((n, "arrays"), []), by.get((n, "json"), [])
        for form, runs in (("arrays (`unnest_insert`)", arrays), ("JSON (`json_document_insert`)", doc)):
            cpu = ", ".join(f"{r['client_cpu_us']:.0f}" for r in runs)
            wall = ", ".join(f"{r['wall_us']:.0f}" for r in runs)
            ratio = ""
            if runs is doc and arrays and doc:
                ratio = ", ".join(f"{d['client_cpu_us'] / a['client_cpu_us']:.2f}x" for a, d in zip(arrays, doc))
            lines.append(f"| {n} | {form} | {cpu} µs | {wall} µs | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2000, help="rows per form and size (at least 200 statements)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    run(args.reps, args.rounds)


if __name__ == "__main__":
    main()
