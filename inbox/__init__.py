"""Relais: the application factory."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Flask, Response, g

from config import Settings, load_settings


def create_app(overrides: dict[str, Any] | None = None, *, settings: Settings | None = None,
               role: str = "web") -> Flask:
    """Build the app. role "web" serves HTTP + Socket.IO (and, embedded, runs jobs in-process);
    role "worker" is used by RQ workers: no server, live events go through the Redis message queue."""
    settings = settings or load_settings()
    if overrides:
        settings = settings.with_overrides(**overrides)

    app = Flask(__name__, static_folder=None)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_NAME="relais_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["relais.settings"] = settings
    app.extensions["relais.role"] = role
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from inbox import cli, jobs, realtime
    from inbox.api import init_app as init_api
    from inbox.console import init_app as init_console
    from inbox.db import db
    from inbox.extensions import limiter
    from inbox.webhooks import init_app as init_webhooks

    db.init(settings.database_url, **({} if settings.is_sqlite else
                                      {"pool_size": settings.database_pool_size,
                                       "max_overflow": settings.database_max_overflow}))
    limiter.init_app(app)
    realtime.init_app(app, serve=(role == "web"))
    jobs.init_app(app, start_embedded=(role == "web"))
    init_api(app)
    init_webhooks(app)
    init_console(app)
    cli.init_app(app)
    if settings.proxy_hops:  # behind a load balancer: client address and scheme from X-Forwarded-*; outermost,
        # so every WSGI layer (the webhook fast path included) sees the client's address
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops,  # type: ignore[method-assign]
                                x_host=settings.proxy_hops)

    @app.after_request
    def _note_success(response: Response) -> Response:
        g.request_succeeded = response.status_code < 400
        return response

    @app.teardown_appcontext
    def _release_session(exc: BaseException | None) -> None:
        db.end_request(succeeded=exc is None and g.get("request_succeeded", False))

    if role == "web":
        from inbox.services.reconciler import start_embedded_reconciler
        start_embedded_reconciler(app)
        from inbox.services.sla_timer import start_embedded_sla_timer
        start_embedded_sla_timer(app)
    return app
