"""Figure 1: webhook ingest. `python -m bench.ingest [--quick]`

On a fresh production-like stack (gunicorn gthread x64 + RQ workers + PostgreSQL + Redis), from separate
load-generator processes on 127.0.0.1:
  * sustained messages/s, closed loop, single-entry and 10-entry webhooks, counted from the first POST until
    every message is a `messages` row (i.e. listed in the queue);
  * ack latency p50/p99 at a fixed offered 500 msg/s (open loop, latency from the scheduled send time);
  * lost / duplicated: distinct mids answered 200 vs message rows.
References measured in the same run: raw single-row INSERT transactions/s into PostgreSQL from Python (psycopg,
autocommit: one transaction and one fsync per row), both (a1) serial on ONE connection (the issue's definition
of the reference) and (a4) on 4 connections in 4 threads (the figure's original reference; PostgreSQL then
shares fsyncs between concurrent commits); (b) bench/naive_app.py (one ORM transaction per webhook,
read-then-insert, inline) served by the same gunicorn; (c) the HTTP floor: bench/bare_app.py (reads each POST
and answers 200, nothing else) under the same gunicorn worker class as Relais, driven by the same load
generator with single-entry webhooks: what the HTTP exchanges alone allow on the shared cores. Ratios are
reported against (a1), (a4) and (b); (c) bounds the single-entry figure.
"""
from __future__ import annotations

import argparse
import json
import re
import threading
import time
from typing import Any

from bench.common import (
    APP_SECRET,
    GUNICORN,
    OUT,
    PAGE_ID,
    PY,
    WORKERS,
    Stack,
    cpu_seconds,
    free_port,
    log,
    machine_info,
    machine_line,
    ms,
    pct,
    run_procs,
    save_figure,
    wait_http,
)

NAME = "ingest"


# ------------------------------------------------------------------ load + "until listed"
def load(url: str, *, prefix: str, count: int, batch: int = 1, rate: float = 0.0, procs: int = 3,
         threads: int = 16, psids: int = 200, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `procs` loadgen processes sharing `count` messages; returns their merged rows."""
    per = count // procs
    start_at = time.time() + 1.0 + count / 20000
    outs = [OUT / f"load-{prefix}-{i}.json" for i in range(procs)]
    commands = [[PY, "-m", "bench.loadgen", "--url", url, "--secret", APP_SECRET, "--page-id", PAGE_ID,
                 "--count", str(per), "--batch", str(batch), "--rate", str(rate / procs), "--threads", str(threads),
                 "--psids", str(psids), "--prefix", f"{prefix}p{i}", "--start-at", str(start_at),
                 "--out", str(outs[i])] for i in range(procs)]
    run_procs(commands, env=env, timeout=600)
    rows, mids, cpu_s = [], [], 0.0
    for i, path in enumerate(outs):
        data = json.loads(path.read_text())
        path.unlink()
        cpu_s += data.get("cpu_s", 0.0)
        for row in data["rows"]:
            first, status = int(row[0]), row[4]
            n_msgs = min(batch, per - first)
            rows.append(row + [n_msgs])
            if status == 200:
                mids.extend(f"{prefix}p{i}-{n}" for n in range(first, first + n_msgs))
    started = min(r[2] for r in rows)
    answered = max(r[3] for r in rows)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[str(r[4])] = statuses.get(str(r[4]), 0) + 1
    return {"prefix": prefix, "messages": per * procs, "posts": len(rows), "batch": batch, "rate": rate,
            "started": started, "answered": answered, "statuses": statuses, "ok_mids": mids, "rows": rows,
            "loadgen_cpu_s": cpu_s}


class CountWatcher:
    """Polls the run's message rows every 50 ms until their count reaches `expected` (or times out).

    `query` counts them: `SELECT count(*) FROM <table> WHERE <column> LIKE %s` (the run's prefix). Polled as it
    is, it read the whole table 20 times a second (every earlier run's rows too): 3-5 ms of PostgreSQL's CPU each
    time by the end of figure 1's closed loops, up to a tenth of a core taken from the stack it measures. So it
    polls only the rows added since it started (`id >` the largest id then, an index range), first counting them
    without the LIKE, and runs the exact query (bounded the same way) once that count is reached."""

    def __init__(self, stack: Stack, query: str, prefix: str, expected: int, timeout: float = 180.0):
        self.stack, self.query, self.prefix, self.expected, self.timeout = stack, query, prefix, expected, timeout
        self.done_at: float | None = None
        self.last = 0
        table = re.match(r"SELECT count\(\*\) FROM (\w+) WHERE ", query)
        assert table is not None, query
        self.table = table.group(1)
        self.floor = stack.sql(f"SELECT coalesce(max(id), 0) FROM {self.table}")[0][0]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg
        deadline = time.time() + self.timeout
        added = f"SELECT count(*) FROM {self.table} WHERE id > %s"
        exact = self.query.replace(" WHERE ", " WHERE id > %s AND ", 1)
        with psycopg.connect(self.stack.database_url, autocommit=True) as conn:
            while time.time() < deadline:
                if conn.execute(added, (self.floor,)).fetchone()[0] >= self.expected:  # type: ignore[index]
                    self.last = conn.execute(exact, (self.floor, self.prefix + "%")).fetchone()[0]  # type: ignore[index]
                    if self.last >= self.expected:
                        self.done_at = time.time()
                        return
                time.sleep(0.05)
            self.last = conn.execute(exact, (self.floor, self.prefix + "%")).fetchone()[0]  # type: ignore[index]

    def wait(self) -> float | None:
        self._thread.join()
        return self.done_at


RELAIS_COUNT = "SELECT count(*) FROM messages WHERE external_id LIKE %s"
NAIVE_COUNT = "SELECT count(*) FROM naive_messages WHERE mid LIKE %s"


def measured_run(stack: Stack, url: str, count_query: str, *, prefix: str, count: int, batch: int,
                 rate: float = 0.0, procs: int = 3, threads: int = 16) -> dict[str, Any]:
    cpu0 = stack.cpu_snapshot()
    watcher = CountWatcher(stack, count_query, prefix, count - count % procs)
    result = load(url, prefix=prefix, count=count, batch=batch, rate=rate, procs=procs, threads=threads)
    done_at = watcher.wait()
    cpu1 = stack.cpu_snapshot()
    n = result["messages"]
    result["listed_at"] = done_at
    result["listed_count"] = watcher.last
    result["cpu_ms_per_msg"] = {**{k: round((cpu1[k] - cpu0[k]) * 1000 / n, 3) for k in cpu0},
                                "loadgen": round(result["loadgen_cpu_s"] * 1000 / n, 3)}
    if done_at is not None:
        result["msgs_per_s"] = n / (done_at - result["started"])
    result["ack_msgs_per_s"] = n / (result["answered"] - result["started"])
    lat = [r[3] - r[1] for r in result["rows"]]
    result["ack_p50"], result["ack_p99"], result["ack_max"] = pct(lat, 50), pct(lat, 99), max(lat)
    if done_at is not None:
        result["lag_after_last_ack"] = done_at - result["answered"]
    return result


def integrity(stack: Stack, result: dict[str, Any]) -> dict[str, Any]:
    """Distinct mids answered 200 vs message rows for those mids."""
    total, distinct = stack.sql("SELECT count(*), count(DISTINCT external_id) FROM messages "
                                "WHERE external_id LIKE %s", result["prefix"] + "%")[0]
    listed = {r[0] for r in stack.sql("SELECT external_id FROM messages WHERE external_id LIKE %s",
                                      result["prefix"] + "%")}
    ok = set(result["ok_mids"])
    return {"sent_ok_distinct": len(ok), "rows": total, "distinct_rows": distinct,
            "lost": len(ok - listed), "duplicated": total - distinct, "unexpected": len(listed - ok)}


def run(quick: bool = False, worker_counts: tuple[int, ...] = (WORKERS,), web_worker: str = "gevent"
        ) -> dict[str, Any]:
    info = machine_info()
    # sized so the run stays bounded at the rates measured on 2 cores, and long enough that the start-up and the
    # last drain are not most of it: with 1,500 messages the same stack gave 15-25% lower rates than with 3,000
    # (2026-11-23), and on the faster box of 2026-11-24 3,000 messages took under a second (batch10 4,070-4,714
    # msg/s against 4,844-4,905 with 15,000, alternated on one stack). Relais's closed loops now last ~4 s there
    # (9,000 single-entry, 15,000 in 10-entry webhooks: ~10 s on the slowest box measured); the naive handler, at a
    # few hundred messages a second, keeps 3,000.
    n_naive = 600 if quick else 3000
    n_closed = {"single": 1800, "batch10": 3000} if quick else {"single": 9000, "batch10": 15000}
    open_seconds = {"single": 3, "batch10": 2} if quick else {"single": 5, "batch10": 3}
    results: dict[str, Any] = {"machine": info, "web_worker": web_worker}
    with Stack(workers=worker_counts[0], label=NAME, worker_class=web_worker) as stack:
        url = stack.base_url + "/webhooks/meta"
        env = stack.env()
        # (a1) / (a4) raw single-row INSERT transactions/s, serial on one connection and on 4 threads
        for key, threads in (("ref_pg_insert_serial", 1), ("ref_pg_insert", 4)):
            results[key] = raw_insert_reference(stack, threads)
            log(f"ref {_REF_LABEL[key]} raw INSERT, {threads} connection(s): {results[key]['tx_per_s']:.0f} tx/s")

        # (b) the naive handler, served the same way
        naive_port = free_port()
        stack._spawn("naive", [GUNICORN, "-w", "1", "-k", "gthread", "--threads", "64", "-b",
                               f"127.0.0.1:{naive_port}", "--log-level", "warning", "bench.naive_app:app"], env)
        naive_url = f"http://127.0.0.1:{naive_port}/webhooks/meta"
        wait_http(naive_url.replace("/webhooks/meta", "/"))
        load(naive_url, prefix="nw", count=300, procs=1)  # warm-up
        for mode, batch in (("single", 1), ("batch10", 10)):
            r = measured_run(stack, naive_url, NAIVE_COUNT, prefix=f"n{mode[0]}", count=n_naive, batch=batch,
                             threads=16 if batch == 1 else 8)
            r["msgs_per_s"] = r["ack_msgs_per_s"]  # processed inline: listed when answered
            results[f"naive_{mode}"] = _strip(r)
            log(f"ref (b) naive {mode}: {r['msgs_per_s']:.0f} msg/s, statuses {r['statuses']}")
        stack.stop_process("naive")

        # (c) the HTTP floor: the same POSTs answered by a bare WSGI app under the same gunicorn worker class
        results["ref_http_floor"] = http_floor(stack, n_closed["single"], web_worker)
        log(f"ref (c) HTTP floor: {results['ref_http_floor']['req_per_s']:.0f} POST/s")

        results["relais_runs"] = [relais_runs(stack, url, n_closed, open_seconds)]
    for n in worker_counts[1:]:  # the same runs on a fresh stack with another number of workers
        with Stack(workers=n, label=f"{NAME}-{n}", worker_class=web_worker) as stack:
            results["relais_runs"].append(relais_runs(stack, stack.base_url + "/webhooks/meta", n_closed,
                                                      open_seconds))
    return save_figure(NAME, results, report)


def relais_runs(stack: Stack, url: str, n_closed: dict[str, int], open_seconds: dict[str, int]) -> dict[str, Any]:
    """Relais's closed loops (single-entry and 10-entry) and open loops at 500 msg/s on `stack`."""
    results: dict[str, Any] = {"workers": stack.workers}
    load(url, prefix="w", count=300, procs=1)  # warm-up: connection pools, first-request costs
    time.sleep(1.0)
    for mode, batch in (("single", 1), ("batch10", 10)):
        r = measured_run(stack, url, RELAIS_COUNT, prefix=mode[0], count=n_closed[mode], batch=batch,
                         threads=16 if batch == 1 else 8)
        r["integrity"] = integrity(stack, r)
        results[f"relais_{mode}"] = _strip(r)
        log(f"relais, {stack.workers} worker(s), {mode}: {r.get('msgs_per_s', 0):.0f} msg/s listed, ack "
            f"{r['ack_msgs_per_s']:.0f} msg/s, {r['integrity']}")
        time.sleep(1.0)
    for mode, batch, procs in (("single", 1, 4), ("batch10", 10, 2)):
        r = measured_run(stack, url, RELAIS_COUNT, prefix=f"o{mode[0]}", count=500 * open_seconds[mode],
                         batch=batch, rate=500.0, procs=procs, threads=32)
        r["integrity"] = integrity(stack, r)
        results[f"open500_{mode}"] = _strip(r)
        log(f"relais, {stack.workers} worker(s), open loop 500 msg/s {mode}: ack p50 {ms(r['ack_p50'])} "
            f"p99 {ms(r['ack_p99'])}, listed lag {r.get('lag_after_last_ack')}, {r['integrity']}")
        time.sleep(1.0)
    results["event_status"] = dict(stack.sql("SELECT status, count(*) FROM webhook_events GROUP BY status"))
    return results


_REF_LABEL = {"ref_pg_insert_serial": "(a1)", "ref_pg_insert": "(a4)"}


def http_floor(stack: Stack, count: int, web_worker: str) -> dict[str, Any]:
    """(c): single-entry webhook POSTs, closed loop as Relais's, answered by bench/bare_app.py (no work) under
    gunicorn with `web_worker`; its POSTs/s and CPU per POST (its web process, the load generators)."""
    port = free_port()
    stack._spawn("bare", [GUNICORN, "-w", "1", *_WEB_ARGS[web_worker].split(), "-b", f"127.0.0.1:{port}",
                          "--log-level", "warning", "bench.bare_app:app"], stack.env())
    url = f"http://127.0.0.1:{port}/webhooks/meta"
    wait_http(url)
    load(url, prefix="fw", count=300, procs=1)  # warm-up
    pids = stack.tree_pids("bare")
    cpu0 = sum(cpu_seconds(pid) for pid in pids)
    r = load(url, prefix="f", count=count, procs=3, threads=16)
    cpu1 = sum(cpu_seconds(pid) for pid in pids)
    stack.stop_process("bare")
    n = r["messages"]
    lat = [row[3] - row[1] for row in r["rows"]]
    return {"posts": n, "req_per_s": n / (r["answered"] - r["started"]), "statuses": r["statuses"],
            "p50": pct(lat, 50), "p99": pct(lat, 99),
            "cpu_ms_per_post": {"web": round((cpu1 - cpu0) * 1000 / n, 3),
                                "loadgen": round(r["loadgen_cpu_s"] * 1000 / n, 3)}}


def raw_insert_reference(stack: Stack, threads: int, seconds: float = 5.0) -> dict[str, Any]:
    """Single-row INSERT transactions/s on `threads` connections (bench.refs pg-insert, its own process)."""
    ref_out = OUT / f"ref-pg-insert-{threads}.json"
    run_procs([[PY, "-m", "bench.refs", "pg-insert", "--dsn", stack.database_url, "--threads", str(threads),
                "--seconds", str(seconds), "--out", str(ref_out)]])
    result = json.loads(ref_out.read_text())
    ref_out.unlink()
    return result


def _strip(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r.pop("ok_mids", None)
    r["rows"] = r["rows"] if len(r["rows"]) <= 20000 else r["rows"][:20000]
    return r


_WEB_ARGS = {"gevent": "-k gevent --worker-connections 1000", "gthread": "-k gthread --threads 64"}


def report(res: dict[str, Any]) -> str:
    a = res["ref_pg_insert"]["tx_per_s"]
    a1 = res.get("ref_pg_insert_serial", {}).get("tx_per_s")
    runs = res.get("relais_runs") or [{"workers": res.get("workers"), **res}]  # (results saved before 2026-11-24)
    counts = " and ".join(f"{r['workers']} x" for r in runs)
    lines = ["## 1. Webhook ingest", "", machine_line(res["machine"]), "",
             f"Stack: `gunicorn -w 1 {_WEB_ARGS.get(res.get('web_worker', 'gthread'))} wsgi:app` + {counts} "
             "`python -m inbox.jobs.worker` (each worker count on a fresh stack and database; the references are "
             "measured on the first); load from separate `bench.loadgen` processes on "
             "127.0.0.1 (keep-alive HTTP/1.1, signed Messenger webhooks, 200 customers per process).", "",
             "| run | messages | msgs/s until listed | ratio to (a1) raw INSERT, serial | ratio to (a4) raw INSERT, "
             "4 threads | ratio to (b) naive | ack msgs/s | ack p50 | ack p99 | lost / dup | "
             "CPU ms/msg web / workers / all postgres / load generators |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    if a1:
        lines.append(f"| (a1) raw single-row INSERT tx, psycopg autocommit, serial on 1 connection | "
                     f"{res['ref_pg_insert_serial']['rows']} | {a1:.0f} tx/s | 1.00 | {_ratio(a1, a)} | | | | | | |")
    lines.append(f"| (a4) raw single-row INSERT tx, psycopg autocommit, 4 threads | {res['ref_pg_insert']['rows']} | "
                 f"{a:.0f} tx/s | {_ratio(a, a1)} | 1.00 | | | | | | |")
    for mode in ("single", "batch10"):
        n = res[f"naive_{mode}"]
        lines.append(f"| (b) naive handler, {mode}, closed loop 3x"
                     f"{16 if mode == 'single' else 8} | {n['messages']} | {n['msgs_per_s']:.0f} | "
                     f"{_ratio(n['msgs_per_s'], a1)} | {_ratio(n['msgs_per_s'], a)} | 1.00 | "
                     f"{n['ack_msgs_per_s']:.0f} | {ms(n['ack_p50'])} | "
                     f"{ms(n['ack_p99'])} | statuses {n['statuses']} | postgres only: "
                     f"{n['cpu_ms_per_msg']['postgres_total']:.2f}, "
                     f"load generators {n['cpu_ms_per_msg'].get('loadgen', 0):.2f} |")
    floor = res.get("ref_http_floor")
    if floor:
        c = floor["cpu_ms_per_post"]
        lines.append(f"| (c) the HTTP floor: bare WSGI app (reads the POST, answers 200, no work), single, closed "
                     f"loop 3x16 | {floor['posts']} | {floor['req_per_s']:.0f} POST/s | "
                     f"{_ratio(floor['req_per_s'], a1)} | {_ratio(floor['req_per_s'], a)} | | "
                     f"{floor['req_per_s']:.0f} | {ms(floor['p50'])} | {ms(floor['p99'])} | "
                     f"statuses {floor['statuses']} | web only: {c['web']:.2f}, load generators {c['loadgen']:.2f} |")
    for run in runs:
        who = f"{run['workers']} worker{'s' if run['workers'] != 1 else ''}"
        for mode in ("single", "batch10"):
            r, n = run[f"relais_{mode}"], res[f"naive_{mode}"]
            rate = r.get("msgs_per_s")
            lines.append(f"| **Relais, {who}, {mode}, closed loop** | {r['messages']} | **{_f(rate)}** | "
                         f"**{_ratio(rate, a1)}** | **{_ratio(rate, a)}** | **{_ratio(rate, n['msgs_per_s'])}** | "
                         f"{r['ack_msgs_per_s']:.0f} | {ms(r['ack_p50'])} | {ms(r['ack_p99'])} | "
                         f"{r['integrity']['lost']} / {r['integrity']['duplicated']} | {_cpu(r)} |")
        for mode in ("single", "batch10"):
            r = run[f"open500_{mode}"]
            rate = r.get("msgs_per_s")
            lines.append(f"| **Relais, {who}, {mode}, open loop 500 msg/s offered** | {r['messages']} | {_f(rate)} | "
                         f"{_ratio(rate, a1)} | {_ratio(rate, a)} | | {r['ack_msgs_per_s']:.0f} | {ms(r['ack_p50'])} | "
                         f"**{ms(r['ack_p99'])}** | "
                         f"{r['integrity']['lost']} / {r['integrity']['duplicated']} | {_cpu(r)} |")
    lines += ["", "Targets:"]
    for run in runs:
        s, b, o = run["relais_single"], run["relais_batch10"], run["open500_single"]
        lines += [f"- **{run['workers']} worker(s)**: ratio to raw INSERT >= 1.5x: against (a1) serial on 1 "
                  f"connection (the issue's reference): single-entry {_ratio(s.get('msgs_per_s'), a1)}, batched "
                  f"{_ratio(b.get('msgs_per_s'), a1)}; against (a4) 4 threads: single-entry "
                  f"{_ratio(s.get('msgs_per_s'), a)}, batched {_ratio(b.get('msgs_per_s'), a)}",
                  f"  - ratio to (b) >= 5x: single-entry "
                  f"{_ratio(s.get('msgs_per_s'), res['naive_single']['msgs_per_s'])}, batched "
                  f"{_ratio(b.get('msgs_per_s'), res['naive_batch10']['msgs_per_s'])}",
                  f"  - ack p99 < 20 ms at 500 msg/s (single-entry POSTs): {ms(o['ack_p99'])} "
                  f"(p50 {ms(o['ack_p50'])}, max {ms(o['ack_max'])}; everything listed "
                  f"{_f(o.get('lag_after_last_ack'), '{:.2f}')} s after the last ack); batched: "
                  f"{ms(run['open500_batch10']['ack_p99'])}",
                  "  - lost / duplicated: " + ", ".join(
                      f"{k}: {run[k]['integrity']['lost']} / {run[k]['integrity']['duplicated']} of "
                      f"{run[k]['integrity']['sent_ok_distinct']}" for k in
                      ("relais_single", "relais_batch10", "open500_single", "open500_batch10")),
                  f"  - raw events by status at the end: {run.get('event_status', res.get('event_status'))}"]
    if floor and a1:
        single = runs[0]["relais_single"].get("msgs_per_s")
        lines += [f"- **The HTTP floor (c)**: gunicorn answering the same single-entry POSTs with no work at all "
                  f"reached {floor['req_per_s']:.0f} POST/s, {_ratio(floor['req_per_s'], a1)} the serial raw INSERT "
                  f"rate. 1.5x of (a1) is {1.5 * a1:.0f} msg/s, {1.5 * a1 / floor['req_per_s']:.0%} of that floor: "
                  f"every single-entry message's signature check, durable store, drain and listing would have to "
                  f"fit in roughly the remaining {max(0.0, 1 - 1.5 * a1 / floor['req_per_s']):.0%} of the box. Relais "
                  f"single-entry with 1 worker: {_ratio(single, floor['req_per_s'])} of the floor."]
    lines += ["", "Raw data: `bench/out/ingest.json` (one row per POST: first message, scheduled, started, "
              "answered, status)."]
    return "\n".join(lines)


def _f(value: float | None, fmt: str = "{:.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _ratio(x: float | None, ref: float | None) -> str:
    return "n/a" if not x or not ref else f"{x / ref:.2f}x"


def _cpu(r: dict[str, Any]) -> str:
    c = r["cpu_ms_per_msg"]
    loadgen = f"{c['loadgen']:.2f}" if "loadgen" in c else "n/a"
    return f"{c['web']:.2f} / {c['workers']:.2f} / {c['postgres_total']:.2f} / {loadgen}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--workers", default=str(WORKERS),
                        help="RQ worker processes; several comma-separated: Relais's runs again on a stack with each")
    parser.add_argument("--web-worker", default="gevent", choices=["gevent", "gthread"],
                        help="gunicorn worker class of the web process (gevent: the README's production setup)")
    args = parser.parse_args()
    run(quick=args.quick, worker_counts=tuple(int(n) for n in args.workers.split(",")),
        web_worker=args.web_worker)


if __name__ == "__main__":
    main()
