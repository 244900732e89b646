"""What one reply's send costs the worker: `python -m bench.send_cost [--sends 300] [--rounds 3]`.

In one process, as a worker's send thread runs it (`services.delivery.deliver_message`: the claim, the platform
call, the outcome and its live events), against the fake Graph API in the same process (answering at once), on a
fresh PostgreSQL database (Redis as in production: the live events are published under a key prefix of its own,
deleted at the end). Each round writes `--sends` queued replies, one per conversation of 200 customers, and sends
them one after the other. Reports, per send: the process's CPU (the fake's serving thread included: it is in the
process), the wall time, and the SQL statements sent (counted on the engine: BEGIN and COMMIT are not statements
here). The first round (statements not prepared yet) is shown apart. Figure 3's run A measures the same work
through the API and an RQ worker; this isolates the send. Writes bench/out/send_cost.json and the `send_cost`
section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

NAME = "send_cost"
HERE = Path(__file__).resolve()


def _child(sends: int, rounds: int) -> None:
    """In this checkout, DATABASE_URL set (migrated, seeded): print each round's CPU ms, wall ms and statements per
    send as JSON."""
    import os

    from inbox.demo.fake_meta import FakeMeta
    from tests.factories import APP_SECRET

    fake = FakeMeta(app_secret=APP_SECRET)
    os.environ["META_GRAPH_BASE_URL"] = fake.base_url
    from sqlalchemy import event, select

    from inbox import create_app
    from inbox.db import db, utcnow
    from inbox.demo.fake_meta import messenger_message_payload
    from inbox.models import Conversation, Message
    from inbox.services import delivery, ingest
    from inbox.services.webhook_store import store_webhook_event
    from inbox.webhooks import app_secret_fingerprint
    from tests.factories import PAGE_ID

    app = create_app(role="worker")
    counted = {"n": 0}
    measured: dict[str, list[float]] = {"cpu": [], "wall": [], "statements": []}
    with app.app_context():
        for k in range(200):  # 200 customers, a conversation each
            payload = messenger_message_payload(PAGE_ID, f"psid-send-{k}", f"Bonjour {k}", mid=f"m-send-{k}")
            store_webhook_event(source="meta", body=json.dumps(payload).encode(), headers={},
                                verification="valid", status="pending", detail=app_secret_fingerprint(APP_SECRET))
        while ingest.drain_webhook_events(linger=0, batch_size=200):
            pass
        conversation_ids = list(db.session.execute(select(Conversation.id).order_by(Conversation.id)).scalars())
        db.session.remove()

        @event.listens_for(db.engine, "before_cursor_execute")
        def _count(*_args: Any) -> None:
            counted["n"] += 1

        for r in range(rounds):
            ids = []
            for k in range(sends):
                conversation = db.session.get(Conversation, conversation_ids[k % len(conversation_ids)])
                at = utcnow()
                message = Message(conversation_id=conversation.id, channel_id=conversation.channel_id,
                                  direction="out", kind="message", reply_type="reply", author_type="agent",
                                  author_name="Agent", text=f"reply {r}-{k}", platform_time=at, received_at=at,
                                  delivery_status="queued", idempotency_key=f"send-cost-{r}-{k}", attachments=[],
                                  edit_history=[], extra={})
                db.session.add(message)
                db.session.flush()
                ids.append(message.id)
            db.session.commit()
            db.session.remove()
            counted["n"] = 0
            cpu, wall = time.process_time(), time.perf_counter()
            statuses = [delivery.deliver_message(i) for i in ids]
            measured["cpu"].append((time.process_time() - cpu) * 1000 / sends)
            measured["wall"].append((time.perf_counter() - wall) * 1000 / sends)
            measured["statements"].append(counted["n"] / sends)
            assert statuses == ["sent"] * sends, statuses
            db.session.remove()
    fake.stop()
    print(json.dumps(measured))


def run(sends: int = 300, rounds: int = 3) -> dict[str, Any]:
    from bench.common import ROOT, child_on_fresh_database, log, machine_info, revision, save_figure

    results: dict[str, Any] = {"machine": machine_info(), "this": f"{revision('HEAD')} (working tree)",
                               "sends": sends, "rounds": rounds}
    results.update(child_on_fresh_database(ROOT, "send_cost", HERE, [str(sends), str(rounds)]))
    log(f"send: CPU {[round(x, 2) for x in results['cpu']]} ms, statements {results['statements']} per send")
    return save_figure(NAME, results, report)


def _steady(rounds: list[float]) -> float:
    return statistics.median(rounds[1:]) if len(rounds) > 1 else rounds[0]


def report(res: dict[str, Any]) -> str:
    from bench.common import machine_line

    cpu, wall, statements = res["cpu"], res["wall"], res["statements"]
    return "\n".join([
        "## A send's cost (the worker's send alone, in one process)", "", machine_line(res["machine"]), "",
        f"`python -m bench.send_cost --sends {res['sends']} --rounds {res['rounds']}` on `{res['this']}`: "
        f"{res['sends']} queued replies a round (one per conversation of 200 customers), each sent by "
        "`deliver_message` (claim, platform call, outcome, live events) to the fake Graph API in the same process, "
        "on a fresh PostgreSQL database, Redis as in production. Per send: the process's CPU (the fake's serving "
        "thread included), the wall time, the SQL statements (BEGIN / COMMIT not counted). The first round "
        "(statements not prepared yet) apart; steady: the median of the others.", "",
        "| | first round | steady |", "|---|---|---|",
        f"| CPU ms per send | {cpu[0]:.2f} | **{_steady(cpu):.2f}** |",
        f"| wall ms per send | {wall[0]:.2f} | {_steady(wall):.2f} |",
        f"| statements per send | {statements[0]:.1f} | **{_steady(statements):.1f}** |",
    ])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.sends, args.rounds)


if __name__ == "__main__":
    main()
