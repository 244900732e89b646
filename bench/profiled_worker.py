"""`python -m inbox.jobs.worker` under pyinstrument (figure 4). Stops cleanly on SIGINT/SIGTERM and writes
<out>.json (pyinstrument's JSON call tree; bench.profile summarises it)."""
from __future__ import annotations

import argparse
import signal
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=0.001)
    args, rest = parser.parse_known_args()
    from pyinstrument import Profiler
    from pyinstrument.renderers import JSONRenderer

    from inbox.jobs import worker

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
    sys.exit(0)


if __name__ == "__main__":
    main()
