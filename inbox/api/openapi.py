"""GET /api/v1/openapi.json: the OpenAPI 3 document, built from the routes' own schemas."""
from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import jsonify

from inbox.api import bp
from inbox.api.spec import ROUTES, openapi_path

_cache: dict[str, Any] = {}


def _schema_ref(schema: Any) -> Any:
    return schema if not isinstance(schema, type) else schema


def build_spec() -> dict[str, Any]:
    spec = APISpec(title="Relais API", version="1.0.0", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Unified social inbox. Authenticate with a session cookie "
                                        "(POST /auth/login; send X-CSRF-Token on writes) or "
                                        "`Authorization: Bearer <token>` (POST /auth/tokens)."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("session", {"type": "apiKey", "in": "cookie", "name": "session"})
    spec.components.schema("Error", {"type": "object", "properties": {"error": {
        "type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                         "fields": {"type": "object"}}}}})
    paths: dict[str, dict[str, Any]] = {}
    for doc in ROUTES:
        op: dict[str, Any] = {"summary": doc.summary, "tags": doc.tags,
                              "description": f"Allowed: {doc.roles}.", "responses": {}}
        params = [{"in": "path", "name": name, "required": True, "schema": {"type": "integer"}}
                  for name in re.findall(r"<(?:int:)?([a-zA-Z_]+)>", doc.rule)]
        if doc.query is not None:
            params.append({"in": "query", "schema": doc.query})
        if params:
            op["parameters"] = params
        if doc.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": doc.body}}}
        ok: dict[str, Any] = {"description": "OK"}
        if doc.response is not None:
            ok["content"] = {"application/json": {"schema": doc.response}}
        op["responses"][str(doc.status)] = ok
        for status in sorted(set(doc.errors + ([] if doc.public else [401, 403]) + ([422] if doc.body else []))):
            op["responses"][str(status)] = {"description": "Error",
                                            "content": {"application/json": {"schema": "Error"}}}
        if doc.public:
            op["security"] = []
        paths.setdefault(openapi_path("/api/v1" + doc.rule), {})[doc.method.lower()] = op
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["security"] = [{"bearer": []}, {"session": []}]
    return document


@bp.route("/openapi.json", methods=["GET"])
def openapi_document():
    if "doc" not in _cache:
        _cache["doc"] = build_spec()
    return jsonify(_cache["doc"])
