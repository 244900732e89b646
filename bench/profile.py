"""Figure 4: where the ingest time goes. `python -m bench.profile`

One worker process under pyinstrument (bench.profiled_worker, wall-clock sampling every 1 ms) drains a
closed-loop burst of single-entry webhooks on a fresh stack; the call tree of its drain thread is summarised
(time per message in the drain, split by what it waits on) into RESULTS.md; the full tree is in
bench/out/profile-worker-0-drain.json (and the RQ jobs' thread in bench/out/profile-worker-0.json).
"""
from __future__ import annotations

import argparse
import json
import signal
from typing import Any

from bench.common import OUT, Stack, machine_info, machine_line, save_figure
from bench.ingest import RELAIS_COUNT, load, measured_run

NAME = "profile"
WATCH = [
    ("drain_webhook_events", "inbox/services/ingest.py"), ("_claim", "inbox/services/ingest.py"),
    ("_process_one", "inbox/services/ingest.py"), ("upsert_contact", "inbox/services/ingest.py"),
    ("upsert_post", "inbox/services/ingest.py"), ("find_or_open_conversation", "inbox/services/ingest.py"),
    ("insert_message", "inbox/services/ingest.py"), ("note_inbound", "inbox/services/ingest.py"),
    ("_publish_touched_conversations", "inbox/services/ingest.py"), ("publish", "inbox/realtime/__init__.py"),
    ("dump", "marshmallow/schema.py"), ("begin_nested", "sqlalchemy/orm/session.py"),
    ("flush", "sqlalchemy/orm/session.py"), ("commit", "sqlalchemy/orm/session.py"),
    ("_emit_after_commit", "inbox/realtime/__init__.py"), ("_meta_channel", "inbox/services/ingest.py"),
    ("parse", "adapters/meta.py"),
    # the set-based drain (ingest rewrite of 2026-11-22 20:32)
    ("_split_batchable", "inbox/services/ingest.py"), ("_apply_batch", "inbox/services/ingest.py"),
    ("_apply_customer_batch", "inbox/services/ingest.py"), ("_attach_contacts", "inbox/services/ingest.py"),
    ("_create_identities", "inbox/services/ingest.py"), ("_attach_posts", "inbox/services/ingest.py"),
    ("_attach_conversations", "inbox/services/ingest.py"),
    ("_insert_customer_messages", "inbox/services/ingest.py"),
    ("route_conversations", "inbox/services/assignment.py"), ("refresh_conversation", "inbox/services/sla.py"),
    ("_related_for_dump", "inbox/services/ingest.py"), ("enqueue_after_commit", "inbox/jobs/__init__.py"),
    ("wait", "psycopg/connection.py"),
]


def summarise(path: str, messages: int) -> dict[str, Any]:
    data = json.loads(open(path).read())
    inclusive: dict[str, float] = {}
    self_time: dict[str, float] = {}

    def walk(frame: dict[str, Any], stack: frozenset[str], in_drain: bool) -> None:
        name = f"{frame['function']} ({frame.get('file_path_short') or frame.get('file_path')})"
        in_drain = in_drain or frame["function"] == "drain_webhook_events"
        if in_drain and name not in stack:
            inclusive[name] = inclusive.get(name, 0.0) + frame["time"]
        children = frame.get("children", [])
        if in_drain:
            self_time[name] = self_time.get(name, 0.0) + frame["time"] - sum(c["time"] for c in children)
        for child in children:
            walk(child, stack | {name}, in_drain)

    walk(data["root_frame"], frozenset(), False)

    def find(function: str, file_part: str) -> float:
        return sum(t for n, t in inclusive.items() if n.startswith(function + " (") and file_part in n)

    drain = find("drain_webhook_events", "inbox/services/ingest.py")
    watched = [(f"{fn} ({fp})", find(fn, fp)) for fn, fp in WATCH]
    top_self = sorted(self_time.items(), key=lambda x: -x[1])[:15]
    return {"duration": data["duration"], "drain_seconds": drain, "messages": messages,
            "drain_ms_per_message": drain * 1000 / messages if messages else None,
            "watched": watched, "top_self": top_self}


def run(count: int = 1500) -> dict[str, Any]:
    info = machine_info()
    with Stack(workers=1, worker_profile=True, label=NAME) as stack:
        url = stack.base_url + "/webhooks/meta"
        load(url, prefix="pw", count=100, procs=1)
        r = measured_run(stack, url, RELAIS_COUNT, prefix="ps", count=count, batch=1, threads=16)
        total = stack.sql("SELECT count(*) FROM messages")[0][0]
        stack.stop_process("worker0", signal.SIGINT, timeout=60)
    summary = summarise(str(OUT / "profile-worker-0-drain.json"), total)
    results = {"machine": info, "run": {k: v for k, v in r.items() if k not in ("rows", "ok_mids")},
               "summary": summary}
    return save_figure(NAME, results, report)


def report(res: dict[str, Any]) -> str:
    s, r = res["summary"], res["run"]
    d = s["drain_seconds"] or 1.0
    lines = ["## 4. Where the ingest time goes (pyinstrument on the worker)", "", machine_line(res["machine"]), "",
             f"One worker under pyinstrument (wall clock, 1 ms samples; it slows the worker, so read shares, not "
             f"absolute rates), {s['messages']} single-entry messages: {_f(r.get('msgs_per_s'))} msg/s listed, "
             f"the drain took {d:.1f} s wall = **{s['drain_ms_per_message']:.1f} ms per message**; CPU per "
             f"message (web / worker / all postgres): {r['cpu_ms_per_msg']['web']:.2f} / "
             f"{r['cpu_ms_per_msg']['workers']:.2f} / {r['cpu_ms_per_msg']['postgres_total']:.2f} ms.", "",
             "| inside the drain (inclusive) | seconds | share of drain | ms per message |", "|---|---|---|---|"]
    for name, t in s["watched"]:
        if t:
            lines.append(f"| `{name}` | {t:.2f} | {100 * t / d:.0f}% | {1000 * t / s['messages']:.2f} |")
    lines += ["", "Top self time inside the drain:", "", "| frame | seconds | share |", "|---|---|---|"]
    for name, t in s["top_self"][:10]:
        lines.append(f"| `{name}` | {t:.2f} | {100 * t / d:.0f}% |")
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1500)
    args = parser.parse_args()
    run(args.count)


if __name__ == "__main__":
    main()
