"""One JSON error shape for the whole API: {"error": {"code", "message", "fields"}}; no bare 500."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from inbox.errors import DomainError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, fields: dict[str, Any] | None = None,
                   details: dict[str, Any] | None = None):
    body: dict[str, Any] = {"error": {"code": code, "message": message, "fields": fields or {}}}
    if details:
        body["error"]["details"] = details
    return jsonify(body), status


def _flatten(messages: Any) -> dict[str, Any]:
    if isinstance(messages, dict):
        return messages
    return {"_schema": messages if isinstance(messages, list) else [str(messages)]}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(err: DomainError):
        return error_response(err.status, err.code, err.message, err.fields, err.details)

    @app.errorhandler(ValidationError)
    def _validation(err: ValidationError):
        return error_response(422, "validation_error", "invalid input", _flatten(err.messages))

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        if request.path.startswith(("/api/", "/webhooks/")):
            code = (err.name or "error").lower().replace(" ", "_")
            if err.code == 429:
                code = "rate_limited"
            return error_response(err.code or 500, code, err.description or err.name)
        return err

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "unexpected server error; it has been logged")
