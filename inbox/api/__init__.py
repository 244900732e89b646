"""REST API under /api/v1: one blueprint, marshmallow in and out, one error shape, OpenAPI served."""
from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def init_app(app: Flask) -> None:
    # importing the route modules registers their routes on `bp`
    from inbox.api import admin, auth, canned_replies, contacts, conversations, openapi, sla  # noqa: F401
    from inbox.api import assignment  # noqa: F401
    from inbox.api import reports  # noqa: F401
    from inbox.api.errors import register_error_handlers
    from inbox.api.security import install_request_hooks

    install_request_hooks(bp)
    app.register_blueprint(bp)
    register_error_handlers(app)
