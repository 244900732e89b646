"""Serves the built agent console (frontend/dist) for every path that is not the API or a webhook."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, abort, send_from_directory

DIST = Path(__file__).resolve().parent.parent / "frontend" / "dist"
RESERVED = ("api/", "webhooks/", "socket.io")


def init_app(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():
        from sqlalchemy import text

        from inbox.db import db
        db.session.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/", defaults={"path": ""})
    @app.get("/<path:path>")
    def console(path: str):
        if path.startswith(RESERVED):
            abort(404)
        if not (DIST / "index.html").exists():
            return ("The console is not built yet: run `make run` (or `cd frontend && npm ci && npm run build`).",
                    503, {"Content-Type": "text/plain; charset=utf-8"})
        candidate = DIST / path
        if path and candidate.is_file() and DIST in candidate.resolve().parents:
            response = send_from_directory(DIST, path)
            if path.startswith("assets/"):
                response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            return response
        response = send_from_directory(DIST, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data: https: http:; connect-src 'self' ws: wss:; "
            "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
