"""`python -m inbox.serve`: the embedded server used by `make run` (threaded, WebSocket included).

Production uses gunicorn instead (see README): `gunicorn -w 1 -k gevent --worker-connections 1000 wsgi:app`.
"""
from __future__ import annotations

import os

from inbox import create_app
from inbox.concurrency import freeze_startup_heap
from inbox.realtime import socketio


def main() -> None:
    app = create_app()
    freeze_startup_heap()
    settings = app.extensions["relais.settings"]
    host = os.environ.get("HOST", "127.0.0.1")
    print(f"Relais is serving on http://{host}:{settings.port} "
          f"({'embedded: SQLite file + in-process jobs' if settings.embedded else 'Redis mode'})", flush=True)
    socketio.run(app, host=host, port=settings.port, allow_unsafe_werkzeug=True, use_reloader=False,
                 log_output=False)


if __name__ == "__main__":
    main()
