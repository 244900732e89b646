"""`python -m inbox.jobs.worker` under pyinstrument (figure 4). Stops cleanly on SIGINT/SIGTERM and writes
<out>.json (the main thread: RQ's jobs) and <out>-drain.json (the thread that takes the drain's nudges,
`inbox.jobs.consume_nudges`): pyinstrument's JSON call trees; bench.profile summarises the drain's."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Callable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=0.001)
    args, rest = parser.parse_known_args()
    from pyinstrument import Profiler
    from pyinstrument.renderers import JSONRenderer

    import inbox.jobs
    from inbox.jobs import worker

    consumers: list[tuple[threading.Event, threading.Event]] = []

    def profiled_consumer(app: Any, func: Callable[..., Any]) -> threading.Event:
        """inbox.jobs.start_nudge_consumer with a profiler of its own (pyinstrument samples one thread)."""
        stop, written = threading.Event(), threading.Event()

        def run() -> None:
            profiler = Profiler(interval=args.interval, async_mode="disabled")
            profiler.start()
            try:
                inbox.jobs.consume_nudges(app, func, stop)
            finally:
                session = profiler.stop()
                with open(args.out + "-drain.json", "w") as f:
                    f.write(JSONRenderer().render(session))
                written.set()

        threading.Thread(target=run, name="relais-nudged-profiled", daemon=True).start()
        consumers.append((stop, written))
        return stop

    inbox.jobs.start_nudge_consumer = profiled_consumer  # worker.main imports it when it runs
    profiler = Profiler(interval=args.interval, async_mode="disabled")

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    profiler.start()
    try:
        worker.main(rest)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        session = profiler.stop()
        with open(args.out + ".json", "w") as f:
            f.write(JSONRenderer().render(session))
        for consumer_stop, written in consumers:
            consumer_stop.set()
            written.wait(10)
    sys.exit(0)


if __name__ == "__main__":
    main()
