"""Figure 9: the embedded default (SQLite file, jobs on in-process threads, no Redis). `python -m bench.embedded`

What `make run` serves, measured with the same load generators as figures 1 and 2. A fresh SQLite file in a
temporary directory, migrated with `alembic upgrade head` and seeded by `bench.seed` (brand, Facebook page with the
bench app secret, agents with API tokens), served by `python -m inbox.serve` (Flask-SocketIO threading mode on
the Werkzeug server, ingest drain / reconciler / SLA timer on threads of the same process), on 127.0.0.1 only.
  (a) webhook ingest: msgs/s until listed (closed loop, single-entry and 10-entry webhooks), ack p50/p99 at a
      modest fixed offered rate (open loop), lost / duplicated;
  (b) live latency: webhook POST -> the queue event showing the message (and `message.created` at the agents that
      have its conversation open) at 1 and 20 websocket agents at a modest rate.
Reference measured in the same run: raw single-row INSERT transactions/s into a SQLite file in WAL mode from
Python (sqlite3, one writer: SQLite has one write lock), with the app's `synchronous=NORMAL` and with FULL.
The naive-handler reference of figure 1 is not run here (its BIGINT keys do not auto-increment on SQLite and
its deferred transactions fail with SQLITE_BUSY under concurrent writers), nor the Redis PUBLISH reference
(there is no Redis in this mode). On exit it stops the processes it started and deletes the temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (ALEMBIC, APP_SECRET, OUT, PY, ROOT, cpu_seconds, free_port, log, ms, pct, save_figure,
                          wait_http)
from bench.ingest import RELAIS_COUNT, load
from bench.live_latency import Agents, collect

NAME = "embedded"
SQLITE_COUNT = RELAIS_COUNT.replace("%s", "?")


# ------------------------------------------------------------------ reference: raw SQLite INSERT
def sqlite_insert(path: str, synchronous: str, seconds: float) -> dict[str, Any]:
    """Single-row INSERT transactions/s (autocommit: one transaction per row), one writer, WAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("DROP TABLE IF EXISTS bench_ref_insert")
    conn.execute("CREATE TABLE bench_ref_insert (id INTEGER PRIMARY KEY, mid TEXT NOT NULL UNIQUE, "
                 "body TEXT NOT NULL, received_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    from bench.refs import PAYLOAD
    n, started = 0, time.time()
    deadline = started + seconds
    while time.time() < deadline:
        conn.execute("INSERT INTO bench_ref_insert (mid, body) VALUES (?, ?)", (f"s{n}", PAYLOAD))
        n += 1
    elapsed = time.time() - started
    rows = conn.execute("SELECT count(*) FROM bench_ref_insert").fetchone()[0]
    conn.close()
    return {"synchronous": synchronous, "threads": 1, "seconds": elapsed, "rows": rows, "tx_per_s": rows / elapsed}


# ------------------------------------------------------------------ the embedded server
class Embedded:
    """A temp dir with a fresh SQLite file, migrated and seeded, and `python -m inbox.serve` on it."""

    def __init__(self, agents: int = 20):
        self.agents = agents
        self.tmp = ""
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.fake_port = 0
        self.fake: subprocess.Popen | None = None
        self.world: dict[str, Any] = {}
        self._log = None

    @property
    def db_path(self) -> str:
        return os.path.join(self.tmp, "relais.db")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_"))}
        env.update(DATABASE_URL=f"sqlite:///{self.db_path}", SECRET_KEY="bench-" + secrets.token_hex(16),
                   RELAIS_ENV="test", PYTHONUNBUFFERED="1", META_GRAPH_BASE_URL=f"{self.fake_url}/v21.0",
                   PORT=str(self.port), HOST="127.0.0.1", PUBLIC_BASE_URL=self.base_url)
        return env

    def __enter__(self) -> "Embedded":
        def _terminate(*_: object) -> None:
            raise SystemExit("terminated")
        signal.signal(signal.SIGTERM, _terminate)
        self.tmp = tempfile.mkdtemp(prefix="relais-bench-embedded-")
        self.port = free_port()
        self.fake_port = free_port()
        try:
            env = self.env()
            OUT.mkdir(parents=True, exist_ok=True)
            # the Graph API new Messenger contacts' names are looked up from (bench.common.Stack does the same)
            self.fake = subprocess.Popen([PY, "-m", "bench.fake_graph", "--port", str(self.fake_port),
                                          "--app-secret", APP_SECRET], cwd=ROOT, env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_http(self.fake_url + "/_fake/requests")
            log(f"embedded: {self.db_path}, port {self.port}")
            subprocess.run([ALEMBIC, "upgrade", "head"], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seeded = subprocess.run([PY, "-m", "bench.seed", "--agents", str(self.agents)], cwd=ROOT, env=env,
                                    check=True, capture_output=True, text=True)
            self.world = json.loads(seeded.stdout.strip().splitlines()[-1])
            OUT.mkdir(parents=True, exist_ok=True)
            self._log = open(OUT / f"{NAME}-serve.log", "w")
            self.proc = subprocess.Popen([PY, "-m", "inbox.serve"], cwd=ROOT, env=env, stdout=self._log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            wait_http(self.base_url + "/webhooks/meta", timeout=60)
            time.sleep(1.0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def rss_mib(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def sql(self, query: str, *args: Any) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def __exit__(self, *exc: object) -> None:
        if self.fake is not None and self.fake.poll() is None:
            self.fake.terminate()
            self.fake.wait(20)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: only what we started
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log:
            self._log.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        log(f"embedded server stopped, {self.tmp} removed")


class SQLiteCountWatcher:
    """bench.ingest.CountWatcher for the SQLite file (a read-only WAL reader does not block the writer)."""

    def __init__(self, emb: Embedded, prefix: str, expected: int, timeout: float = 180.0):
        self.emb, self.prefix, self.expected, self.timeout = emb, prefix, expected, timeout
        self.done_at: float | None = None
        self.last = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(f"file:{self.emb.db_path}?mode=ro", uri=True, timeout=30)
        deadline = time.time() + self.timeout
        try:
            while time.time() < deadline:
                self.last = conn.execute(SQLITE_COUNT, (self.prefix + "%",)).fetchone()[0]
                if self.last >= self.expected:
                    self.done_at = time.time()
                    return
                time.sleep(0.05)
        finally:
            conn.close()

    def wait(self) -> float | None:
        self._thread.join()
        return self.done_at


# ------------------------------------------------------------------ (a) ingest
def measured_run(emb: Embedded, *, prefix: str, count: int, batch: int, rate: float = 0.0, procs: int = 2,
                 threads: int = 8) -> dict[str, Any]:
    cpu0 = emb.cpu()
    watcher = SQLiteCountWatcher(emb, prefix, count - count % procs)
    r = load(emb.base_url + "/webhooks/meta", prefix=prefix, count=count, batch=batch, rate=rate, procs=procs,
             threads=threads)
    done_at = watcher.wait()
    n = r["messages"]
    r["listed_at"], r["listed_count"] = done_at, watcher.last
    r["cpu_ms_per_msg"] = round((emb.cpu() - cpu0) * 1000 / n, 3)
    if done_at is not None:
        r["msgs_per_s"] = n / (done_at - r["started"])
        r["lag_after_last_ack"] = done_at - r["answered"]
    r["ack_msgs_per_s"] = n / (r["answered"] - r["started"])
    lat = [row[3] - row[1] for row in r["rows"]]
    r["ack_p50"], r["ack_p99"], r["ack_max"] = pct(lat, 50), pct(lat, 99), max(lat)
    total, distinct = emb.sql("SELECT count(*), count(DISTINCT external_id) FROM messages WHERE external_id LIKE ?",
                              prefix + "%")[0]
    listed = {row[0] for row in emb.sql("SELECT external_id FROM messages WHERE external_id LIKE ?", prefix + "%")}
    ok = set(r.pop("ok_mids"))
    r["integrity"] = {"sent_ok_distinct": len(ok), "rows": total, "lost": len(ok - listed),
                      "duplicated": total - distinct, "unexpected": len(listed - ok)}
    return r


# ------------------------------------------------------------------ (b) live latency
def run_agents(emb: Embedded, n_agents: int, rate: float, seconds: float) -> dict[str, Any]:
    prefix = f"e{n_agents}x"
    count = int(rate * seconds)
    with Agents(emb.base_url, emb.world["agent_tokens"][:n_agents], f"{NAME}-{n_agents}", watch_mod=n_agents) as agents:
        log(f"{agents.connected}/{n_agents} agents connected")
        time.sleep(1.0)
        cpu0 = emb.cpu()
        watcher = SQLiteCountWatcher(emb, prefix, count, timeout=120)
        result = load(emb.base_url + "/webhooks/meta", prefix=prefix, count=count, rate=rate, procs=1, threads=16)
        watcher.wait()
        time.sleep(3.0)  # the last events on their way to the clients
        cpu = emb.cpu() - cpu0
    figures = collect(result, agents, prefix, n_agents=n_agents, rate=rate, count=count)
    return {**figures, "server_cpu_ms_per_msg": round(cpu * 1000 / count, 2)}


# ------------------------------------------------------------------ run + report
def machine(command: str) -> dict[str, Any]:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown")
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model, "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "load_avg_at_start": os.getloadavg(), "sqlite": sqlite3.sqlite_version,
            "python": platform.python_version(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": command}


def run(quick: bool = False, rate: float = 100.0, live_rate: float = 10.0, live_seconds: float = 10.0,
        agent_counts: tuple[int, ...] = (1, 20)) -> dict[str, Any]:
    res: dict[str, Any] = {"machine": machine("python -m bench.embedded" + (" --quick" if quick else "")),
                           "rate": rate, "live_rate": live_rate, "live_seconds": live_seconds}
    n_closed = 300 if quick else 1000
    open_seconds = 3 if quick else 5
    with Embedded(agents=max(agent_counts)) as emb:
        for sync in ("NORMAL", "FULL"):
            res[f"ref_sqlite_{sync.lower()}"] = sqlite_insert(os.path.join(emb.tmp, f"ref-{sync}.db"), sync, 4.0)
            log(f"ref SQLite INSERT synchronous={sync}: {res[f'ref_sqlite_{sync.lower()}']['tx_per_s']:.0f} tx/s")
        load(emb.base_url + "/webhooks/meta", prefix="ew", count=200, procs=1, threads=8)  # warm-up
        time.sleep(2.0)
        res["rss_mib_after_warmup"] = round(emb.rss_mib(), 1)
        for mode, batch in (("single", 1), ("batch10", 10)):
            r = measured_run(emb, prefix=f"c{mode[0]}", count=n_closed, batch=batch, threads=8 if batch == 1 else 4)
            res[f"closed_{mode}"] = r
            log(f"closed {mode}: {r.get('msgs_per_s', 0):.0f} msg/s listed, ack {r['ack_msgs_per_s']:.0f} msg/s, "
                f"{r['integrity']}")
            time.sleep(1.0)
        for mode, batch, procs in (("single", 1, 2), ("batch10", 10, 1)):
            r = measured_run(emb, prefix=f"o{mode[0]}", count=int(rate * open_seconds), batch=batch, rate=rate,
                             procs=procs, threads=16)
            res[f"open_{mode}"] = r
            log(f"open {rate:g} msg/s {mode}: ack p50 {ms(r['ack_p50'])} p99 {ms(r['ack_p99'])}, "
                f"listed lag {r.get('lag_after_last_ack')}, {r['integrity']}")
            time.sleep(1.0)
        res["live"] = []
        for n in agent_counts:
            r = run_agents(emb, n, live_rate, live_seconds)
            res["live"].append(r)
            log(f"live {n} agents: p50 {ms(r['p50'])} p99 {ms(r['p99'])}, delivered {r['delivered']}/"
                f"{r['expected_deliveries']}, ack p99 {ms(r['ack_p99'])}")
        res["rss_mib_at_end"] = round(emb.rss_mib(), 1)
        res["event_status"] = dict(emb.sql("SELECT status, count(*) FROM webhook_events GROUP BY status"))
        res["db_bytes"] = sum(f.stat().st_size for f in Path(emb.tmp).glob("relais.db*"))
    for key in ("closed_single", "closed_batch10", "open_single", "open_batch10"):
        res[key]["rows"] = res[key]["rows"][:20000]
    return save_figure(NAME, res, report)


def _f(value: float | None, fmt: str = "{:.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _ratio(x: float | None, ref: float | None, fmt: str = "{:.2f}x") -> str:
    return "n/a" if not x or not ref else fmt.format(x / ref)


def report(res: dict[str, Any]) -> str:
    m = res["machine"]
    a, full = res["ref_sqlite_normal"]["tx_per_s"], res["ref_sqlite_full"]["tx_per_s"]
    lines = ["## 9. Embedded default (SQLite, no Redis)", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB RAM, load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_avg_at_start'])}; SQLite {m['sqlite']}, Python {m['python']}; "
             f"{m['date']}; command: `{m['command']}`. Shared, noisy machine: compare ratios, not absolute numbers.",
             "",
             "Server: `python -m inbox.serve` (what `make run` serves: Flask-SocketIO threading mode on Werkzeug, "
             "ingest drain, reconciler and SLA timer on threads of the same process, no Redis), a fresh SQLite file "
             "(WAL, synchronous=NORMAL, BEGIN IMMEDIATE) in a temporary directory, migrated and seeded like the "
             "other figures. Load from separate `bench.loadgen` processes on 127.0.0.1. One process does "
             "everything, so its CPU is the whole cost.", "",
             "| run | messages | msgs/s until listed | ratio to (a) SQLite INSERT (NORMAL) | ack msgs/s | ack p50 | "
             "ack p99 | lost / dup | server CPU ms/msg |", "|---|---|---|---|---|---|---|---|---|",
             f"| (a) raw single-row INSERT tx, sqlite3, WAL, synchronous=NORMAL (the app's), 1 writer | "
             f"{res['ref_sqlite_normal']['rows']} | {a:.0f} tx/s | 1.00 | | | | | |",
             f"| (a') same, synchronous=FULL | {res['ref_sqlite_full']['rows']} | {full:.0f} tx/s | "
             f"{full / a:.2f} | | | | | |"]
    for key, label in (("closed_single", "single, closed loop 2x8"), ("closed_batch10", "batch10, closed loop 2x4"),
                       ("open_single", f"single, open loop {res['rate']:g} msg/s offered"),
                       ("open_batch10", f"batch10, open loop {res['rate']:g} msg/s offered")):
        r = res[key]
        rate = r.get("msgs_per_s")
        lines.append(f"| **Relais embedded, {label}** | {r['messages']} | **{_f(rate)}** | **{_ratio(rate, a, '{:.4f}x')}** | "
                     f"{r['ack_msgs_per_s']:.0f} | {ms(r['ack_p50'])} | **{ms(r['ack_p99'])}** | "
                     f"{r['integrity']['lost']} / {r['integrity']['duplicated']} | {r['cpu_ms_per_msg']:.2f} |")
    lines += ["", f"Live latency, open loop {res['live_rate']:g} msg/s for {res['live_seconds']:g} s, single-entry "
              "webhooks, Node socket.io-client websocket agents (API token auth; bench/agents.mjs). Latency to the queue "
              "event showing the message at every agent (as in section 2), and to `message.created` at the agents that "
              "have its conversation open (thread). No Redis PUBLISH reference in this mode; the same-run floor shown "
              "is the webhook's own ack p50.", "",
              "| agents connected (end) | queue deliveries | p50 | p99 | max | p50 / ack p50 | thread events (p50 / p99) "
              "| ack p50 / p99 | server CPU ms/msg |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in res["live"]:
        lines.append(f"| **{r['agents']}** ({r['connected_at_end']}) | {r['delivered']}/{r['expected_deliveries']} | "
                     f"**{ms(r['p50'])}** | **{ms(r['p99'])}** | {ms(r['max'])} | {_ratio(r['p50'], r['ack_p50'], '{:.1f}x')} | "
                     f"{r.get('thread_delivered', 'n/a')} ({ms(r.get('thread_p50'))} / {ms(r.get('thread_p99'))}) | "
                     f"{ms(r['ack_p50'])} / {ms(r['ack_p99'])} | {r['server_cpu_ms_per_msg']:.2f} |")
    lines += ["", "- server CPU while listing (one process, one GIL; cores = msgs/s x CPU ms/msg): " + ", ".join(
                  f"{k} {res[k].get('msgs_per_s', 0) * res[k]['cpu_ms_per_msg'] / 1000:.2f} cores"
                  for k in ("closed_single", "closed_batch10")) + "; the open-loop and live rows' CPU per message "
                  "includes the background threads (drain poll, reconciler, SLA timer, websocket pings) over the "
                  "whole window, so it is high at low rates",
              "- lost / duplicated: " + ", ".join(
                  f"{k}: {res[k]['integrity']['lost']} / {res[k]['integrity']['duplicated']} of "
                  f"{res[k]['integrity']['sent_ok_distinct']}"
                  for k in ("closed_single", "closed_batch10", "open_single", "open_batch10")),
              f"- raw events by status at the end: {res['event_status']}; server RSS {res['rss_mib_after_warmup']} MiB "
              f"after warm-up, {res['rss_mib_at_end']} MiB at the end; database files {res['db_bytes'] / 1e6:.1f} MB",
              "", "Raw data: `bench/out/embedded.json`, server log `bench/out/embedded-serve.log`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop offered msg/s for the ack figure")
    parser.add_argument("--live-rate", type=float, default=10.0)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--agents", default="1,20")
    args = parser.parse_args()
    run(args.quick, args.rate, args.live_rate, args.live_seconds, tuple(int(x) for x in args.agents.split(",")))


if __name__ == "__main__":
    main()
