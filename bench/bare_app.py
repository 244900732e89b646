"""Reference (c) for the ingest figure: the HTTP floor. A bare WSGI app (no Flask, no database) that reads each
POST's body and answers 200 with a small JSON body, served by the same gunicorn as Relais:

    gunicorn -w 1 -k gevent --worker-connections 1000 bench.bare_app:app

It does none of an ack's work (no signature, no parse, nothing stored), so its rate, driven by the same load
generator, bounds what any single-entry webhook handler in a gunicorn web process can reach on the box: what the
HTTP exchanges alone cost the web process, the load generator and the kernel on the shared cores.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

BODY = b'{"status":"received"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", HEADERS)
    return [BODY]
