"""Figure 3: outbound. `python -m bench.outbound`

Agents' replies (REST API, from a separate `bench.replier` process, 8 threads) through the send job to FakeMeta
(its own process, `bench.fake_graph`, which timestamps every call):
  A. clean: replies/s from the first reply POST until the last one is `sent` (DB) and counted at the fake;
  B. with 613 and 429 (Retry-After 2 s) rate-limit answers injected: every reply sent exactly once (200 calls
     per idempotency key at the fake), none lost, and the gap before each retry honours the backoff (>= 1 s,
     the smallest first retry of backoff_seconds with base 2 s and equal jitter) and Retry-After;
  C. with every Graph call answered `--latency` seconds late (250 ms: the fake otherwise answers in about a
     millisecond, a real platform does not), two replies per conversation written one after the other: replies/s,
     and whether each conversation's replies reached the fake in the order they were written.
Reference in the same run: a bare client (bench.refs graph-send, 8 threads) POSTing Send API calls to the fake,
without and with the latency.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import requests

from bench.common import OUT, PY, Stack, log, machine_info, machine_line, run_procs, save_figure
from bench.ingest import RELAIS_COUNT, CountWatcher, load

NAME = "outbound"


def replies(stack: Stack, conversation_ids: list[int], prefix: str, inject: list[dict[str, Any]] | None = None,
            timeout: float = 120.0, per_conversation: int = 1) -> dict[str, Any]:
    out = OUT / f"replies-{prefix}.json"
    if inject:
        for failure in inject:
            requests.post(stack.fake_url + "/_fake/fail", json=failure, timeout=5).raise_for_status()
    run_procs([[PY, "-m", "bench.replier", "--url", stack.base_url, "--token", stack.world["agent_token"],
                "--conversations", ",".join(map(str, conversation_ids)), "--prefix", prefix, "--threads", "8",
                "--out", str(out), "--per-conversation", str(per_conversation)]])
    rows = json.loads(out.read_text())["rows"]
    keys = {r[0] for r in rows if r[3] == 201}
    deadline = time.time() + timeout
    while time.time() < deadline:
        pending = stack.sql("SELECT count(*) FROM messages WHERE idempotency_key LIKE %s AND delivery_status IN "
                            "('queued', 'sending')", prefix + "-%")[0][0]
        if pending == 0:
            break
        time.sleep(0.1)
    statuses = dict(stack.sql("SELECT delivery_status, count(*) FROM messages WHERE idempotency_key LIKE %s "
                              "GROUP BY 1", prefix + "-%"))
    calls = [c for c in requests.get(stack.fake_url + "/_bench/calls", timeout=10).json()["calls"]
             if c[4] and str(c[4]).startswith(prefix + "-")]
    ok_per_key: dict[str, int] = {}
    accepted_by_conversation: dict[str, list[str]] = {}  # the keys the fake accepted, in the order it got them
    for c in sorted(calls, key=lambda c: c[0]):
        if c[3] == 200:
            ok_per_key[c[4]] = ok_per_key.get(c[4], 0) + 1
            accepted_by_conversation.setdefault(c[4].split("-bench-")[1][:8], []).append(c[4])
    first_post = min(r[1] for r in rows)
    last_ok = max((c[0] for c in calls if c[3] == 200), default=None)
    # backoff: for every failed call, the gap to the next call for the same key
    by_key: dict[str, list[list[Any]]] = {}
    for c in sorted(calls):
        by_key.setdefault(c[4], []).append(c)
    gaps_613, gaps_429 = [], []
    for seq in by_key.values():
        for failed, following in zip(seq, seq[1:]):
            if failed[3] == 429:
                gaps_429.append(following[0] - failed[0])
            elif failed[3] != 200:
                gaps_613.append(following[0] - failed[0])
    return {
        "replies_posted": len(rows), "replies_created": len(keys),
        "api_statuses": {str(s): sum(1 for r in rows if r[3] == s) for s in {r[3] for r in rows}},
        "delivery_statuses": statuses, "fake_calls": len(calls),
        "fake_failures": sum(1 for c in calls if c[3] != 200),
        "sent_exactly_once": sum(1 for k in keys if ok_per_key.get(k) == 1),
        "sent_more_than_once": sum(1 for k in keys if ok_per_key.get(k, 0) > 1),
        "never_sent": sum(1 for k in keys if k not in ok_per_key),
        "replies_per_s": (len(keys) / (last_ok - first_post)) if last_ok else None,
        "api_replies_per_s": len(rows) / (max(r[2] for r in rows) - first_post),
        "seconds": (last_ok - first_post) if last_ok else None,
        "retry_gaps_613": sorted(gaps_613), "retry_gaps_429": sorted(gaps_429),
        "per_conversation": per_conversation,
        # conversations whose replies the fake accepted in another order than they were written (key suffix -k)
        "out_of_order": sum(1 for keys in accepted_by_conversation.values() if keys != sorted(keys)),
    }


def settle_profile_lookups(stack: Stack, expected: int, listed_at: float | None,
                           timeout: float = 120.0, quiet: float = 2.0) -> dict[str, Any]:
    """Waits until the fake has been asked `expected` profiles (by GETs and batch requests; or none for `quiet` s);
    returns how many, in how many calls, and their timing relative to the moment every message was listed."""
    deadline = time.time() + timeout
    last_count, last_change = -1, time.time()
    gets: list[list[Any]] = []
    asked = 0
    while time.time() < deadline:
        calls = requests.get(stack.fake_url + "/_bench/calls", timeout=10).json()["calls"]
        gets = [c for c in calls if len(c) > 6 and c[6]]
        asked = sum(c[6] for c in gets)
        if asked != last_count:
            last_count, last_change = asked, time.time()
        if asked >= expected or time.time() - last_change >= quiet:
            break
        time.sleep(0.2)
    out: dict[str, Any] = {"expected": expected, "lookups": asked, "calls": len(gets),
                           "ok": sum(1 for c in gets if c[3] == 200)}
    if gets and listed_at:
        out["first_after_listed_s"] = round(min(c[0] for c in gets) - listed_at, 2)
        out["last_after_listed_s"] = round(max(c[0] for c in gets) - listed_at, 2)
    return out


LATENCY_S = 0.25


def run(n_clean: int = 300, n_faulty: int = 100, n_latency: int = 60, latency: float = LATENCY_S) -> dict[str, Any]:
    info = machine_info()
    results: dict[str, Any] = {"machine": info}
    with Stack(fake_meta=True, label=NAME) as stack:
        results["workers"] = stack.workers
        # conversations to answer: one customer message each (reply window open)
        total = n_clean + n_faulty + n_latency
        watcher = CountWatcher(stack, RELAIS_COUNT, "ob", total)
        load(stack.base_url + "/webhooks/meta", prefix="ob", count=total, batch=10, procs=1, threads=4,
             psids=total)
        listed_at = watcher.wait()
        ids = [r[0] for r in stack.sql("SELECT id FROM conversations ORDER BY id")]
        log(f"{len(ids)} conversations ready")
        # each new Messenger contact gets a profile lookup (a Graph GET to the same fake); the injected failures
        # below go to the next Graph calls whatever they are, so the lookups must be over before the runs
        results["profiles"] = settle_profile_lookups(stack, expected=total, listed_at=listed_at)
        log(f"profile lookups: {results['profiles']}")
        ref_out = OUT / "ref-graph-send.json"
        run_procs([[PY, "-m", "bench.refs", "graph-send", "--base", stack.fake_url + "/v21.0", "--count", "300",
                    "--threads", "8", "--out", str(ref_out)]])
        results["ref_graph_send"] = json.loads(ref_out.read_text())
        log(f"ref bare Send API client: {results['ref_graph_send']['per_s']:.0f} calls/s")
        cpu0 = stack.cpu_snapshot()
        results["clean"] = replies(stack, ids[:n_clean], "rA")
        cpu1 = stack.cpu_snapshot()
        # what a reply costs each process (the web's API call, the worker's send job, PostgreSQL), run A only
        results["clean"]["cpu_ms_per_reply"] = {k: round((cpu1[k] - cpu0[k]) * 1000 / n_clean, 2) for k in cpu0}
        log(f"clean: {results['clean']['replies_per_s']} replies/s {results['clean']['delivery_statuses']}")
        inject = [{"n": 8, "code": 613}, {"n": 8, "code": 4, "http_status": 429, "retry_after": 2}]
        results["faulty"] = replies(stack, ids[n_clean:n_clean + n_faulty], "rB", inject=inject)
        results["faulty"]["injected"] = inject
        f = results["faulty"]
        log(f"faulty: {f['delivery_statuses']} once {f['sent_exactly_once']} twice+ {f['sent_more_than_once']} "
            f"never {f['never_sent']} gaps613 {f['retry_gaps_613'][:3]} gaps429 {f['retry_gaps_429'][:3]}")
        if n_latency:
            requests.post(stack.fake_url + "/_fake/latency", json={"seconds": latency}, timeout=5).raise_for_status()
            ref_out = OUT / "ref-graph-send-latency.json"
            run_procs([[PY, "-m", "bench.refs", "graph-send", "--base", stack.fake_url + "/v21.0", "--count", "80",
                        "--threads", "8", "--out", str(ref_out)]])
            results["ref_graph_send_latency"] = json.loads(ref_out.read_text())
            results["latency"] = replies(stack, ids[n_clean + n_faulty:total], "rC", per_conversation=2)
            results["latency"]["latency_s"] = latency
            c = results["latency"]
            log(f"latency {latency} s: {c['replies_per_s']} replies/s (bare client "
                f"{results['ref_graph_send_latency']['per_s']:.0f} calls/s), out of order {c['out_of_order']}")
    return save_figure(NAME, results, report)


def report(res: dict[str, Any]) -> str:
    ref, a, b = res["ref_graph_send"], res["clean"], res["faulty"]
    ratio = f"{a['replies_per_s'] / ref['per_s']:.2f}x" if a["replies_per_s"] else "n/a"

    def g(values: list[float]) -> str:
        return f"min {min(values):.2f} s, max {max(values):.2f} s over {len(values)} retries" if values else "none"

    lines = ["## 3. Outbound (replies through the send job to FakeMeta)", "", machine_line(res["machine"]), "",
             "Replies posted by an agent through `POST /api/v1/conversations/<id>/messages` (8 threads, separate "
             f"process), one per conversation (run C: two); {res.get('workers', 2)} RQ worker(s); FakeMeta in its "
             "own process.", "",
             "| run | replies | replies/s until sent (at the fake) | ratio to bare client | API 201/s | sent exactly once | sent twice+ | never sent | final statuses |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| reference: bare client -> FakeMeta Send API, 8 threads | {ref['count']} | {ref['per_s']:.0f} calls/s | 1.00 | | | | | |",
             f"| **A. clean** | {a['replies_created']} | **{a['replies_per_s'] or 0:.0f}** | **{ratio}** | "
             f"{a['api_replies_per_s']:.0f} | {a['sent_exactly_once']} | {a['sent_more_than_once']} | {a['never_sent']} | "
             f"{a['delivery_statuses']} |",
             f"| **B. 8 x 613 + 8 x 429 injected** | {b['replies_created']} | {b['replies_per_s'] or 0:.0f} (incl. backoff) | | "
             f"{b['api_replies_per_s']:.0f} | {b['sent_exactly_once']} | {b['sent_more_than_once']} | {b['never_sent']} | "
             f"{b['delivery_statuses']} |",
             *_latency_rows(res),
             "", f"Backoff honoured (B): gap before the retry after a 613: {g(b['retry_gaps_613'])} (floor 1.0 s); "
             f"after a 429 with Retry-After 2: {g(b['retry_gaps_429'])} (floor 2.0 s). "
             f"Fake saw {b['fake_calls']} calls, {b['fake_failures']} answered with an error.",
             ""]
    cpu = a.get("cpu_ms_per_reply")
    if cpu:
        lines += [f"Where a reply's time goes (run A, CPU per reply): web {cpu['web']} ms (the API call), worker "
                  f"{cpu['workers']} ms (the send job: claim, platform call, outcome, live events), PostgreSQL "
                  f"{cpu['postgres_total']} ms. At 0 latency the worker's CPU bounds run A: 1,000 / "
                  f"{cpu['workers']} ms = {1000 / cpu['workers']:.0f} replies/s (measured "
                  f"{a['replies_per_s'] or 0:.0f})." if cpu["workers"] else "", ""]
    if res.get("latency"):
        lines += ["Run C: a real platform answers in hundreds of milliseconds. A worker's send jobs run on a pool of "
                  "SEND_CONCURRENCY (8) threads, so replies of different conversations wait for the platform together "
                  "(the bare client's 8 threads are the ceiling); one conversation's replies still leave one after the "
                  "other, in the order they were written (counted at the fake from their idempotency keys).", ""]
    p = res.get("profiles")
    if p:
        lines += [f"Profile lookups (`fetch_contact_profiles` jobs gathered per second: Graph batch requests of 50, "
                  f"or a GET for a lone customer, to the same fake) for the {p['expected']} new contacts, awaited "
                  f"before the reference and runs A/B so that the injected failures reach send calls: {p['lookups']} "
                  f"profiles asked in {p.get('calls', p['lookups'])} calls, {p['ok']} answered 200, the last one "
                  f"{p.get('last_after_listed_s', 'n/a')} s after every message was listed (first "
                  f"{p.get('first_after_listed_s', 'n/a')} s).", ""]
    lines += ["Raw data: `bench/out/outbound.json`."]
    return "\n".join(lines)


def _latency_rows(res: dict[str, Any]) -> list[str]:
    c, ref = res.get("latency"), res.get("ref_graph_send_latency")
    if not c or not ref:
        return []
    ms = f"{c['latency_s'] * 1000:.0f} ms"
    ratio = f"{c['replies_per_s'] / ref['per_s']:.2f}x" if c["replies_per_s"] else "n/a"
    return [f"| reference: bare client, 8 threads, every call {ms} late | {ref['count']} | "
            f"{ref['per_s']:.0f} calls/s | 1.00 | | | | | |",
            f"| **C. every Graph call {ms} late, 2 replies per conversation** | {c['replies_created']} | "
            f"**{c['replies_per_s'] or 0:.1f}** | **{ratio}** | {c['api_replies_per_s']:.0f} | "
            f"{c['sent_exactly_once']} | {c['sent_more_than_once']} | {c['never_sent']} | {c['delivery_statuses']}; "
            f"conversations whose replies arrived out of order: **{c['out_of_order']}** |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clean", type=int, default=300)
    parser.add_argument("--faulty", type=int, default=100)
    parser.add_argument("--latency-conversations", type=int, default=60)
    parser.add_argument("--latency", type=float, default=LATENCY_S, help="seconds every Graph call takes in run C")
    args = parser.parse_args()
    run(args.clean, args.faulty, args.latency_conversations, args.latency)


if __name__ == "__main__":
    main()
