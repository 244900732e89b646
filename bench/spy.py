"""Where the web process and the worker hold the GIL, by py-spy: `python -m bench.spy [--seconds 5]`

Two runs, each on a fresh stack (1 gevent web process + 1 RQ worker, `bench.common.Stack`):
  * ingest: figure 1's open loop, single-entry webhooks at 500 msg/s offered (the ack's path and the drain);
  * live start-up: figure 2 at 500 agents and 200 msg/s, from the first message (new customers: their contacts,
    conversations, name lookups, and the agents opening them).
`py-spy record --gil --nonblocking` is attached to the gunicorn worker process and to the RQ worker for the first
`--seconds` of the load. `--gil` keeps only the samples of the thread holding the GIL: where a process spends its
Python CPU, not where its threads wait. The raw stacks are summarised as the share of each process's samples under
the paths RESULTS.md's next bottlenecks name (inclusive) and the functions with the most samples of their own.
Needs py-spy (requirements-dev.txt) and the right to attach to a process (root, or ptrace allowed). Writes
bench/out/spy-*.txt (the raw stacks), bench/out/spy.json and the `spy` section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import OUT, Stack, log, machine_info, machine_line, save_figure
from bench.ingest import RELAIS_COUNT, load, measured_run

NAME = "spy"
RATE = 250  # samples per second
KEY_PATHS = {  # (label, a substring of a frame "function (file)")
    "web": [
        ("gunicorn: one HTTP request (parse, WSGI environ, answer)", "AsyncWorker.handle_request ("),
        ("of which gunicorn's HTTP parser", "Parser.__next__ ("),
        ("webhook POST handler (verify, store, answer)", "meta_post ("),
        ("webhook committer thread (the group's INSERT)", "GroupCommitter._run ("),
        ("of which psycopg dumping the parameters", "PostgresQuery.dump ("),
        ("drain nudges (Redis EVALSHA, own thread)", "_Nudger._run ("),
        ("live relay: a delivery round", "Relay.deliver ("),
        ("of which the frames' writes to the websockets", "Writer.emit ("),
        ("of which the `send` system calls", "SocketMixin.send ("),
        ("socket `watch` requests", "on_watch ("),
        ("socket connects", "on_connect ("),
    ],
    "reconnect": [
        ("socket connects", "on_connect ("),
        ("of which authenticating", "_authenticate ("),
        ("of which the rooms and watched conversations", "socket_access ("),
        ("of which presence (socket_connected)", "socket_connected ("),
        ("of which the replay", "replay (inbox/realtime/handlers.py)"),
        ("of which the replay's reads (head, overlap, texts)", "_missed ("),
        ("of which the replay's writes", "Server.send ("),
        ("of which commits", "Session.commit ("),
        ("socket disconnects", "on_disconnect ("),
        ("socket `watch` requests", "on_watch ("),
        ("socket `resume` requests", "on_resume ("),
        ("live relay: a delivery round", "Relay.deliver ("),
        ("HTTP requests (gunicorn)", "AsyncWorker.handle_request ("),
        ("engine.io polling / websocket handshakes", "Server.handle_request (engineio"),
        ("SQLAlchemy executing", "Session.execute ("),
        ("psycopg waiting / reading results", "Cursor.execute ("),
    ],
    "worker": [
        ("drain", "drain_webhook_events (inbox/services/ingest.py)"),
        ("of which applying the batch", "_apply_customer_batch ("),
        ("of which contacts and identities", "_attach_contacts ("),
        ("of which new ones (the unit of work's flush)", "_create_identities ("),
        ("of which locking and loading the conversations", "_locked_conversations ("),
        ("of which inserting the messages", "_insert_customer_messages ("),
        ("of which the conversation events", "_publish_touched_conversations ("),
        ("of which the commit", "SessionTransaction.commit ("),
        ("psycopg dumping parameters (everywhere)", "PostgresQuery.dump ("),
        ("name lookups (Graph GETs and their names)", "fetch_contact_profiles ("),
        ("RQ jobs other than the drain", "BaseWorker.perform_job ("),
    ],
}


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install -r requirements-dev.txt")
    return found


def _frame(raw: str) -> str:
    """'func (path/file.py:123)' -> 'func (path/file.py)': every line of a function counts as the function."""
    return re.sub(r":\d+\)$", ")", raw.strip())


def summarise(path: Path, kind: str) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    keys = KEY_PATHS[kind]
    key_hits: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
        joined = ";".join(frames)
        for label, needle in keys:
            if needle in joined:
                key_hits[label] += n
    return {"samples": total, "keys": [[label, key_hits[label]] for label, _ in keys],
            "own": own.most_common(12), "inclusive": inclusive.most_common(25)}


def record(pids: dict[str, int], seconds: float, tag: str) -> list[subprocess.Popen]:
    """py-spy on each process of `pids` ({kind: pid}) for `seconds`, to bench/out/spy-<tag>-<kind>.txt."""
    OUT.mkdir(parents=True, exist_ok=True)
    spies = []
    for kind, pid in pids.items():
        command = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw", "--gil",
                   "--nonblocking", "--duration", str(int(seconds)), "--output", str(OUT / f"spy-{tag}-{kind}.txt")]
        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    log(f"py-spy on {pids} for {int(seconds)} s ({tag})")
    return spies


def _pids(stack: Stack) -> dict[str, int]:
    return {"web": stack.web_pids()[-1], "worker": stack.worker_pids()[0]}  # the gunicorn worker, not its arbiter


def run_ingest(seconds: float) -> dict[str, Any]:
    with Stack(label=f"{NAME}-ingest", workers=1) as stack:
        url = stack.base_url + "/webhooks/meta"
        load(url, prefix="w", count=300, procs=1)
        time.sleep(1.0)
        spies = record(_pids(stack), seconds, "ingest")
        time.sleep(0.5)  # attached
        r = measured_run(stack, url, RELAIS_COUNT, prefix="o", count=int(500 * (seconds + 1)), batch=1, rate=500.0,
                         procs=4, threads=32)
        for spy in spies:
            spy.wait(60)
    return {"ack_p50": r["ack_p50"], "ack_p99": r["ack_p99"], "cpu_ms_per_msg": r["cpu_ms_per_msg"],
            **{kind: summarise(OUT / f"spy-ingest-{kind}.txt", kind) for kind in ("web", "worker")}}


def run_live(seconds: float) -> dict[str, Any]:
    from bench.live_latency import Agents

    with Stack(label=f"{NAME}-live", workers=1, agents=500, threads=640) as stack:
        load(stack.base_url + "/webhooks/meta", prefix="lw", count=100, procs=1)
        with Agents(stack.base_url, stack.world["agent_tokens"][:500], f"{NAME}-500", watch_mod=500) as agents:
            time.sleep(1.0)
            spies = record(_pids(stack), seconds, "live")
            time.sleep(0.5)
            load(stack.base_url + "/webhooks/meta", prefix="l500x", count=int(200 * seconds), rate=200.0, procs=1,
                 threads=32)
            for spy in spies:
                spy.wait(60)
            connected = agents.connected
    return {"agents": connected, **{kind: summarise(OUT / f"spy-live-{kind}.txt", kind) for kind in ("web", "worker")}}


def run(seconds: float = 5.0) -> dict[str, Any]:
    results = {"machine": machine_info(), "seconds": seconds, "rate": RATE, "ingest": run_ingest(seconds),
               "live": run_live(seconds)}
    return save_figure(NAME, results, report)


def _tables(title: str, run: dict[str, Any]) -> list[str]:
    lines = []
    for kind in ("web", "worker"):
        s = run[kind]
        total = s["samples"] or 1
        lines += ["", f"**{title}, {kind}** ({s['samples']} samples holding the GIL)", "",
                  "| path (inclusive) | share of the samples |", "|---|---|"]
        lines += [f"| {label} | {n / total:.0%} |" for label, n in s["keys"]]
        lines += ["", "| function, own samples | share |", "|---|---|"]
        lines += [f"| `{name}` | {n / total:.1%} |" for name, n in s["own"][:8]]
    return lines


def report(res: dict[str, Any]) -> str:
    ingest, live = res["ingest"], res["live"]
    lines = ["## Where the processes hold the GIL (py-spy)", "", machine_line(res["machine"]), "",
             f"`py-spy record --gil --nonblocking --rate {res['rate']}` on the gunicorn worker and the RQ worker for "
             f"the first {res['seconds']:g} s of the load, each run on a fresh stack (1 gevent web + 1 worker). "
             "Shares are of each process's samples while it held the GIL (its Python CPU); a path's share includes "
             "what it calls. Raw stacks: `bench/out/spy-*.txt`.", "",
             f"- ingest: figure 1's open loop, single-entry at 500 msg/s (ack p50 {ingest['ack_p50'] * 1000:.1f} ms, "
             f"p99 {ingest['ack_p99'] * 1000:.1f} ms under the profiler); CPU ms per message web "
             f"{ingest['cpu_ms_per_msg']['web']:.2f}, worker {ingest['cpu_ms_per_msg']['workers']:.2f}",
             f"- live start-up: figure 2 at {live['agents']} agents and 200 msg/s, from the first message "
             "(new customers)"]
    lines += _tables("Ingest at 500 msg/s", ingest)
    lines += _tables("Live start-up, 500 agents", live)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of load profiled in each run")
    args = parser.parse_args()
    run(args.seconds)


if __name__ == "__main__":
    main()
