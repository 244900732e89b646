"""`python -m inbox.jobs.worker` (make worker): an RQ worker for Relais' queues, plus the reconciler.

Runs RQ's SimpleWorker (jobs in this process, no fork per job: ~5x the throughput, and a drain job batches
many events anyway) with the app context pushed once, and the scheduler for delayed retries. Send jobs hand
their platform call to a pool of SEND_CONCURRENCY threads (`inbox.jobs.JobPool`). With the ingest
queue, a thread takes the drain's nudges (`inbox.jobs.consume_nudges`: not RQ jobs). The reconciler thread
re-processes whatever a lost job or a killed worker left behind.
"""
from __future__ import annotations

import argparse
import logging
import sys

from inbox import create_app
from inbox.jobs import INGEST, QUEUES

log = logging.getLogger("inbox.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queues", nargs="+", default=list(QUEUES), choices=list(QUEUES))
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--no-reconciler", action="store_true")
    args = parser.parse_args(argv)

    app = create_app(role="worker")
    settings = app.extensions["relais.settings"]
    if not settings.redis_url:
        print("REDIS_URL is not set: in the embedded mode jobs run inside the web process (make run).",
              file=sys.stderr)
        return 2
    from rq import SimpleWorker

    from inbox.concurrency import freeze_startup_heap
    from inbox.jobs import SEND, backend, run_job, start_nudge_consumer, start_pool, stop_pools
    from inbox.jobs.tasks import drain_webhook_events
    from inbox.services.reconciler import start_reconciler_thread
    from inbox.services.sla_timer import start_sla_timer

    rq_backend = backend()
    queues = [rq_backend.queues[name] for name in args.queues]  # type: ignore[union-attr]
    app.app_context().push()
    freeze_startup_heap(batch_work=True)  # a full GC walking the app would stall the drain (live latency)
    if INGEST in args.queues and args.burst:  # no thread to wait for nudges: drain what is stored, then the jobs
        run_job(app, drain_webhook_events, ())
    elif INGEST in args.queues:  # the drain runs on nudges, in a thread of its own (inbox.jobs.nudge)
        start_nudge_consumer(app, drain_webhook_events)
    if not args.no_reconciler:
        start_reconciler_thread(app)
        start_sla_timer(app)
    if SEND in args.queues:  # the sends wait on the platforms: several at once (SEND_CONCURRENCY)
        start_pool(app, SEND, settings.send_concurrency)
    worker = SimpleWorker(queues, connection=rq_backend.redis)  # type: ignore[union-attr]
    log.info("worker %s listening on %s", worker.name, ", ".join(q.name for q in queues))
    try:
        worker.work(burst=args.burst, with_scheduler=True, logging_level="WARNING")
    finally:
        stop_pools()  # the sends under way get their outcome; the others go back to the queue for the next worker
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
