"""A/B of the drain alone: `python -m bench.drain_cost --baseline REV [--pairs 4] [--count 400] [--rounds 4]
[--entries 1] [--batch 50]`;
`python -m bench.drain_cost --fixed-cost`: this checkout's drain CPU by batch size (what a drain costs by itself).

The drain's own CPU per message (`time.process_time()` of `ingest.drain_webhook_events` in one process, PostgreSQL,
and Redis as in production: each commit's live events are published on the live channel and the name lookups it
gathers are enqueued, under a key prefix of its own deleted at the end; no web process, no load generator, no
worker), for THIS checkout and for another commit, alternated (baseline,
this, baseline, this, ...), each on a fresh database. The closed-loop A/B (`bench.ab`) measures the whole system,
where the web process, the load generators and the box's other tenants move the rate by tens of percent between
two runs minutes apart; this one measures only what a drain change changes.

Each side: migrate, seed (`bench.seed`), freeze the app as that side's worker does (`freeze_startup_heap`, with the
worker's collector thresholds where the side has them), then `--rounds` rounds of `--count` Messenger webhooks of
`--entries` messages each (1 by default; figure 1's batched webhooks: 10) from 200 customers, stored as the ack
path stores them and drained in batches of `--batch` webhooks (50 by default; the worker's: 400 on PostgreSQL,
INGEST_DRAIN_BATCH); the first round (new customers, cold caches, statements not prepared yet) is left out, the
others are the steady state of known customers. The garbage collector's part of the CPU is timed too (`gc.callbacks`).
Writes bench/out/drain_cost.json and the `drain_cost` section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

NAME = "drain_cost"
HERE = Path(__file__).resolve()


def _child(count: int, rounds: int, tag: str, batch: int = 50, entries: int = 1) -> None:
    """In the side's checkout (cwd and PYTHONPATH), DATABASE_URL set: store, drain, print the CPU ms per message of
    each round and the part of it the garbage collector took. Run as a script of this checkout (`--child`), it
    imports nothing of the side's bench/ but its seed's factories (tests/), so any baseline with the drain can be
    measured. The app is frozen as the side's worker freezes it (`freeze_startup_heap`, with the worker's
    collector thresholds where the side has them)."""
    import gc

    from inbox import concurrency, create_app
    from inbox.db import db
    from inbox.demo.fake_meta import messaging_message, meta_json, page_entry, page_payload
    from inbox.services import ingest
    from inbox.services.webhook_store import store_webhook_event
    from inbox.webhooks import app_secret_fingerprint
    from tests.factories import APP_SECRET, PAGE_ID

    app = create_app(role="worker")
    fingerprint = app_secret_fingerprint(APP_SECRET)
    freeze = getattr(concurrency, "freeze_startup_heap", None)
    if freeze is not None:
        try:
            freeze(batch_work=True)
        except TypeError:  # a checkout from before the worker's thresholds
            freeze()
    collecting = {"since": 0.0, "total": 0.0}

    def clock(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            collecting["since"] = time.perf_counter()
        else:
            collecting["total"] += time.perf_counter() - collecting["since"]
    gc.callbacks.append(clock)
    measured: dict[str, list[float]] = {"cpu": [], "gc": []}
    messages = count * entries
    with app.app_context():
        for r in range(rounds):
            n = 0
            for _k in range(count):
                items = []
                for _e in range(entries):
                    item = messaging_message(PAGE_ID, f"psid-{n % 200}", f"message {n} de la commande",
                                             mid=f"{tag}-{r}-{n}")
                    items.append(page_entry(PAGE_ID, messaging=[item]))
                    n += 1
                store_webhook_event(source="meta", body=meta_json(page_payload(*items)), headers={},
                                    verification="valid", status="pending", detail=fingerprint)
            db.session.remove()
            collecting["total"] = 0.0
            cpu = time.process_time()
            done = 0
            while done < count:
                done += ingest.drain_webhook_events(linger=0, batch_size=batch)
            measured["cpu"].append((time.process_time() - cpu) * 1000 / messages)
            measured["gc"].append(collecting["total"] * 1000 / messages)
            db.session.remove()
    print(json.dumps(measured))


def _side(root: Path, label: str, count: int, rounds: int, batch: int = 50, entries: int = 1
          ) -> dict[str, list[float]]:
    """One fresh database, migrated and seeded by the side's own code; its rounds' CPU ms per message ("cpu") and
    the garbage collector's part of it ("gc")."""
    from bench.common import child_on_fresh_database

    return child_on_fresh_database(root, f"drain_{label}", HERE, [str(count), str(rounds), label, str(batch),
                                                                  str(entries)])


def run(baseline: str, pairs: int = 4, count: int = 400, rounds: int = 4, batch: int = 50,
        entries: int = 1) -> dict[str, Any]:
    from bench.common import ROOT, baseline_worktree, log, machine_info, revision, save_figure

    info = machine_info()
    rev = revision(baseline)
    results: dict[str, Any] = {"machine": info, "baseline": rev, "this": f"{revision('HEAD')} (working tree)",
                               "count": count, "rounds": rounds, "batch": batch, "entries": entries, "pairs": []}
    with baseline_worktree(rev) as tree:
        for i in range(pairs):
            pair = {}
            for label, root in (("baseline", tree), ("this", ROOT)):
                side = _side(root, label, count, rounds, batch, entries)
                pair[label], pair[f"{label}_gc"] = side["cpu"], side["gc"]
                log(f"pair {i + 1} {label}: CPU ms per message by round {[round(x, 3) for x in side['cpu']]}, "
                    f"of which the garbage collector {[round(x, 3) for x in side['gc']]}")
            results["pairs"].append(pair)
    return save_figure(NAME, results, report)


def _steady(rounds: list[float]) -> float:
    return statistics.median(rounds[1:]) if len(rounds) > 1 else rounds[0]


def report(res: dict[str, Any]) -> str:
    from bench.common import machine_line

    lines = ["## Drain cost A/B (the drain alone, in one process)", "", machine_line(res["machine"]), "",
             f"`python -m bench.drain_cost --baseline {res['baseline']}`: baseline `{res['baseline']}` against this "
             f"checkout `{res['this']}`, alternated, each on a fresh PostgreSQL database (and Redis: the live events "
             f"published, the lookups enqueued), the app frozen as each side's worker freezes it (with its collector "
             f"thresholds); {res['rounds']} rounds of {res['count']} webhooks of {res.get('entries', 1)} "
             f"entr{'y' if res.get('entries', 1) == 1 else 'ies'} from 200 customers, drained in batches of "
             f"{res.get('batch', 50)} webhooks (`--entries {res.get('entries', 1)} --batch {res.get('batch', 50)}`); "
             "the drain's process CPU per message, and in brackets the part the garbage collector took "
             "(`gc.callbacks`). The first round (new customers, statements not prepared yet) is shown apart; "
             "steady: the median of the others.", "",
             "| pair | baseline: first round | baseline: steady | this: first round | this: steady | this / baseline |",
             "|---|---|---|---|---|---|"]
    ratios = []
    for i, pair in enumerate(res["pairs"], 1):
        b, t = pair["baseline"], pair["this"]
        bg, tg = pair.get("baseline_gc"), pair.get("this_gc")
        ratio = _steady(t) / _steady(b)
        ratios.append(ratio)
        lines.append(f"| {i} | {b[0]:.3f} ms | {_steady(b):.3f} ms{_gc_part(bg)} | {t[0]:.3f} ms | "
                     f"{_steady(t):.3f} ms{_gc_part(tg)} | {ratio:.2f}x |")
    lines += ["", f"Steady-state ratio this / baseline: median **{statistics.median(ratios):.2f}x** "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} pairs)."]
    return "\n".join(lines)


def _gc_part(gc_rounds: list[float] | None) -> str:
    return "" if not gc_rounds else f" ({_steady(gc_rounds):.3f})"


def run_fixed(batches: tuple[int, ...] = (1, 4, 20, 50), count: int = 400, rounds: int = 3) -> dict[str, Any]:
    """This checkout only: the drain's CPU per message at each batch size (each on a fresh database), and from the
    smallest and the largest the cost of a drain itself and of each message in it (a straight line through
    the two: CPU per drain = fixed + marginal x batch). Live traffic at a few hundred messages a second drains
    in batches of a few, where the fixed part is most of the cost."""
    from bench.common import ROOT, log, machine_info, revision, save_figure

    results: dict[str, Any] = {"machine": machine_info(), "this": f"{revision('HEAD')} (working tree)",
                               "count": count, "rounds": rounds, "batches": {}}
    for batch in batches:
        per_message = _steady(_side(ROOT, f"fixed{batch}", count, rounds, batch)["cpu"])
        results["batches"][str(batch)] = per_message
        log(f"batch {batch}: CPU {per_message:.3f} ms per message, {per_message * batch:.3f} ms per drain")
    small, large = min(batches), max(batches)
    per_drain = {b: results["batches"][str(b)] * b for b in (small, large)}
    marginal = (per_drain[large] - per_drain[small]) / (large - small)
    results["fixed_ms"], results["marginal_ms"] = per_drain[small] - marginal * small, marginal
    return save_figure(f"{NAME}-fixed", results, report_fixed)


def report_fixed(res: dict[str, Any]) -> str:
    from bench.common import machine_line

    lines = ["## The drain's fixed cost (CPU per drain and per message, by batch size)", "",
             machine_line(res["machine"]), "",
             f"`python -m bench.drain_cost --fixed-cost`: this checkout `{res['this']}`, one fresh PostgreSQL database "
             f"per batch size, {res['rounds']} rounds of {res['count']} single-entry webhooks from 200 known "
             "customers drained in batches of that size (steady state: the first round left out); the drain's "
             "process CPU, as in the A/B above.", "",
             "| batch | CPU ms per message | CPU ms per drain |", "|---|---|---|"]
    for batch, per_message in res["batches"].items():
        lines.append(f"| {batch} | {per_message:.3f} | {per_message * int(batch):.3f} |")
    lines += ["", f"A drain costs **{res['fixed_ms']:.2f} ms** of CPU whatever it carries, and each message in it "
                  f"**{res['marginal_ms']:.3f} ms** more (the line through the smallest and the largest batch)."]
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 50,
               int(sys.argv[6]) if len(sys.argv) > 6 else 1)
        return
    if sys.argv[1:2] == ["--fixed-cost"]:
        run_fixed()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="a commit (e.g. HEAD~1, a hash)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50, help="webhooks claimed per drain batch")
    parser.add_argument("--entries", type=int, default=1, help="messages per webhook (figure 1's batched: 10)")
    args = parser.parse_args()
    if args.rounds < 2:
        sys.exit("--rounds must be at least 2 (the first round is not the steady state)")
    run(args.baseline, args.pairs, args.count, args.rounds, args.batch, args.entries)


if __name__ == "__main__":
    main()
