"""FakeMeta (inbox.demo.fake_meta) in its own process, with a timestamp on every recorded call, for the
outbound figure: `python -m bench.fake_graph --port P --app-secret S`.
GET /_bench/calls -> {"calls": [[epoch s, method, path, status, metadata, retry_after, profiles asked], ...]} (profiles
asked: 1 for a profile GET, the number of calls of a batch request, else 0).
FakeMeta's POST /_fake/latency {"seconds": s} makes every Graph call answer `s` seconds late (the outbound
figure's run C)."""
from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from typing import Any

from inbox.demo.fake_meta import FakeMeta, profiles_asked


class TimedFakeMeta(FakeMeta):
    def __init__(self, *args: Any, **kwargs: Any):
        self.calls: list[list[Any]] = []
        super().__init__(*args, **kwargs)

    def handle(self, method: str, raw_path: str, body: Any):
        if raw_path.startswith("/_bench/calls"):
            with self._lock:
                return (200, {"calls": list(self.calls)}, {}), 0.0
        answer, delay = super().handle(method, raw_path, body)
        if not raw_path.startswith("/_fake/"):
            message = body.get("message") if isinstance(body, dict) else None
            if isinstance(message, str):
                try:
                    message = json.loads(message)
                except ValueError:
                    message = None
            metadata = message.get("metadata") if isinstance(message, dict) else None
            path = raw_path.split("?")[0]
            asked = len(profiles_asked(method, "/".join(path.split("/")[2:]), body))  # after the version
            with self._lock:
                self.calls.append([time.time(), method, path, answer[0], metadata, answer[2].get("Retry-After"),
                                   asked])
        return answer, delay


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app-secret")
    args = parser.parse_args()
    fake = TimedFakeMeta("127.0.0.1", args.port, app_secret=args.app_secret)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()


if __name__ == "__main__":
    main()
