"""Access to the running app's Settings from anywhere inside an app context."""
from __future__ import annotations

from flask import current_app

from config import Settings


def get_settings() -> Settings:
    return current_app.extensions["relais.settings"]
