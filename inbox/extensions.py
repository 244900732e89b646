"""Extensions created unbound here and bound in create_app."""
from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address


class _Limiter(Limiter):
    def init_app(self, app: Flask) -> None:
        # storage follows REDIS_URL, so limits hold across web processes
        settings = app.extensions["relais.settings"]
        app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url or "memory://"
        app.config["RATELIMIT_KEY_PREFIX"] = settings.redis_prefix + "ratelimit"
        app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
        super().init_app(app)


limiter = _Limiter(key_func=get_remote_address, default_limits=[])
