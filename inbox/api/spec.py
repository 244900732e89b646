"""`api_route`: registers a route on the API blueprint AND describes it for /api/v1/openapi.json."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import request
from marshmallow import Schema

from inbox.api import bp


@dataclass
class RouteDoc:
    rule: str
    method: str
    summary: str
    tags: list[str]
    body: type[Schema] | Schema | None = None
    query: type[Schema] | None = None
    response: type[Schema] | Schema | None = None
    status: int = 200
    roles: str = "any signed-in agent"
    public: bool = False
    errors: list[int] = field(default_factory=list)


ROUTES: list[RouteDoc] = []


def api_route(rule: str, method: str, *, summary: str, tags: list[str], body: Any = None, query: Any = None,
              response: Any = None, status: int = 200, roles: str = "any signed-in agent",
              public: bool = False, errors: list[int] | None = None
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        ROUTES.append(RouteDoc(rule, method, summary, tags, body, query, response, status, roles, public,
                               errors or []))
        bp.add_url_rule(rule, view.__name__, view, methods=[method])
        return view
    return decorator


def load_body(schema: Schema) -> Any:
    """Validate the JSON body with `schema`; a missing or non-JSON body is a 422 naming `_schema`."""
    data = request.get_json(silent=True)
    if data is None:
        from marshmallow import ValidationError
        raise ValidationError({"_schema": ["expected a JSON object body (Content-Type: application/json)"]})
    return schema.load(data)


def load_query(schema: Schema) -> Any:
    return schema.load(request.args.to_dict(flat=True))


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", rule)
