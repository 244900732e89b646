"""A/B of the drain alone: `python -m bench.drain_cost --baseline REV [--pairs 4] [--count 400] [--rounds 4]`;
`python -m bench.drain_cost --fixed-cost`: this checkout's drain CPU by batch size (what a drain costs by itself).

The drain's own CPU per message (`time.process_time()` of `ingest.drain_webhook_events` in one process, PostgreSQL,
and Redis as in production: each commit's live events are published on the live channel and the name lookups it
gathers are enqueued, under a key prefix of its own deleted at the end; no web process, no load generator, no
worker), for THIS checkout and for another commit, alternated (baseline,
this, baseline, this, ...), each on a fresh database. The closed-loop A/B (`bench.ab`) measures the whole system,
where the web process, the load generators and the box's other tenants move the rate by tens of percent between
two runs minutes apart; this one measures only what a drain change changes.

Each side: migrate, seed (`bench.seed`), then `--rounds` rounds of `--count` single-entry Messenger webhooks from
200 customers stored as the ack path stores them and drained in batches of 50; the first round (new customers,
cold caches, statements not prepared yet) is left out, the others are the steady state of known customers.
Writes bench/out/drain_cost.json and the `drain_cost` section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAME = "drain_cost"
HERE = Path(__file__).resolve()


def _child(count: int, rounds: int, tag: str, batch: int = 50) -> None:
    """In the side's checkout (cwd and PYTHONPATH), DATABASE_URL set: store, drain, print the CPU ms per message of
    each round. Run as a script of this checkout (`--child`), it imports nothing of the side's bench/ but its seed's
    factories (tests/), so any baseline with the drain can be measured."""
    from inbox import create_app
    from inbox.db import db
    from inbox.demo.fake_meta import messenger_message_payload, meta_json
    from inbox.services import ingest
    from inbox.services.webhook_store import store_webhook_event
    from inbox.webhooks import app_secret_fingerprint
    from tests.factories import APP_SECRET, PAGE_ID

    app = create_app(role="worker")
    fingerprint = app_secret_fingerprint(APP_SECRET)
    measured = []
    with app.app_context():
        for r in range(rounds):
            for k in range(count):
                body = meta_json(messenger_message_payload(PAGE_ID, f"psid-{k % 200}", f"message {k} de la commande",
                                                           mid=f"{tag}-{r}-{k}"))
                store_webhook_event(source="meta", body=body, headers={}, verification="valid", status="pending",
                                    detail=fingerprint)
            db.session.remove()
            cpu = time.process_time()
            done = 0
            while done < count:
                done += ingest.drain_webhook_events(linger=0, batch_size=batch)
            measured.append((time.process_time() - cpu) * 1000 / count)
            db.session.remove()
    print(json.dumps(measured))


def _side(root: Path, label: str, count: int, rounds: int, batch: int = 50) -> list[float]:
    """One fresh database, migrated and seeded by the side's own code; its rounds' CPU ms per message."""
    import psycopg

    from bench.common import ALEMBIC, PG_ADMIN, PY, REDIS_URL, delete_redis_prefix

    db_name = f"relais_drain_{label}_{int(time.time() * 1000)}"
    prefix = f"relais-bench-{db_name}:"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    env = {"DATABASE_URL": f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{db_name}",
           "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
           "RELAIS_EMBEDDED_WORKER": "0", "SECRET_KEY": "bench-drain-cost", "RELAIS_ENV": "test",
           "PYTHONPATH": str(root), "PATH": str(Path(PY).parent) + ":/usr/bin:/bin"}
    try:
        subprocess.run([ALEMBIC, "upgrade", "head"], cwd=root, env=env, check=True, capture_output=True)
        subprocess.run([PY, "-m", "bench.seed"], cwd=root, env=env, check=True, capture_output=True)
        out = subprocess.run([PY, "-P", str(HERE), "--child", str(count), str(rounds), label, str(batch)], cwd=root,
                             env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        delete_redis_prefix(prefix)


def run(baseline: str, pairs: int = 4, count: int = 400, rounds: int = 4) -> dict[str, Any]:
    from bench.common import ROOT, baseline_worktree, log, machine_info, revision, save_figure

    info = machine_info()
    rev = revision(baseline)
    results: dict[str, Any] = {"machine": info, "baseline": rev, "this": f"{revision('HEAD')} (working tree)",
                               "count": count, "rounds": rounds, "pairs": []}
    with baseline_worktree(rev) as tree:
        for i in range(pairs):
            pair = {}
            for label, root in (("baseline", tree), ("this", ROOT)):
                pair[label] = _side(root, label, count, rounds)
                log(f"pair {i + 1} {label}: CPU ms per message by round {[round(x, 3) for x in pair[label]]}")
            results["pairs"].append(pair)
    return save_figure(NAME, results, report)


def _steady(rounds: list[float]) -> float:
    return statistics.median(rounds[1:]) if len(rounds) > 1 else rounds[0]


def report(res: dict[str, Any]) -> str:
    from bench.common import machine_line

    lines = ["## Drain cost A/B (the drain alone, in one process)", "", machine_line(res["machine"]), "",
             f"`python -m bench.drain_cost --baseline {res['baseline']}`: baseline `{res['baseline']}` against this "
             f"checkout `{res['this']}`, alternated, each on a fresh PostgreSQL database (and Redis: the live events "
             f"published, the lookups enqueued); {res['rounds']} rounds of "
             f"{res['count']} single-entry webhooks from 200 customers, drained in batches of 50; the drain's process "
             "CPU per message. The first round (new customers, statements not prepared yet) is shown apart; "
             "steady: the median of the others.", "",
             "| pair | baseline: first round | baseline: steady | this: first round | this: steady | this / baseline |",
             "|---|---|---|---|---|---|"]
    ratios = []
    for i, pair in enumerate(res["pairs"], 1):
        b, t = pair["baseline"], pair["this"]
        ratio = _steady(t) / _steady(b)
        ratios.append(ratio)
        lines.append(f"| {i} | {b[0]:.3f} ms | {_steady(b):.3f} ms | {t[0]:.3f} ms | {_steady(t):.3f} ms | "
                     f"{ratio:.2f}x |")
    lines += ["", f"Steady-state ratio this / baseline: median **{statistics.median(ratios):.2f}x** "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} pairs)."]
    return "\n".join(lines)


def run_fixed(batches: tuple[int, ...] = (1, 4, 20, 50), count: int = 400, rounds: int = 3) -> dict[str, Any]:
    """This checkout only: the drain's CPU per message at each batch size (each on a fresh database), and from the
    smallest and the largest the cost of a drain itself and of each message in it (a straight line through
    the two: CPU per drain = fixed + marginal x batch). Live traffic at a few hundred messages a second drains
    in batches of a few, where the fixed part is most of the cost."""
    from bench.common import ROOT, log, machine_info, revision, save_figure

    results: dict[str, Any] = {"machine": machine_info(), "this": f"{revision('HEAD')} (working tree)",
                               "count": count, "rounds": rounds, "batches": {}}
    for batch in batches:
        per_message = _steady(_side(ROOT, f"fixed{batch}", count, rounds, batch))
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
        _child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 50)
        return
    if sys.argv[1:2] == ["--fixed-cost"]:
        run_fixed()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="a commit (e.g. HEAD~1, a hash)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.rounds < 2:
        sys.exit("--rounds must be at least 2 (the first round is not the steady state)")
    run(args.baseline, args.pairs, args.count, args.rounds)


if __name__ == "__main__":
    main()
