"""Reports (CM KPIs) as JSON, or as a CSV file for Excel (`format=csv`: UTF-8 with BOM, a header row, one row
per group, the same figures as the JSON rows). Definitions: `inbox.services.reports`.

Supervisors (their teams' brands) and administrators (every brand); agents get 403.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from flask import Response
from marshmallow import Schema, fields, validate

from inbox.api.schemas import StrictSchema
from inbox.api.security import current_agent
from inbox.api.spec import api_route, load_query
from inbox.db import db
from inbox.services import access, reports

READERS = "supervisors (their teams' brands), administrators"


class ReportQuerySchema(StrictSchema):
    date_from = fields.Date(required=True, data_key="from", metadata={"description": "first local day, YYYY-MM-DD"})
    date_to = fields.Date(required=True, data_key="to",
                          metadata={"description": f"last local day (inclusive), at most {reports.MAX_DAYS} days"})
    timezone = fields.String(load_default="UTC", validate=validate.Length(min=1, max=64),
                             metadata={"description": "IANA timezone of the day and hour boundaries"})
    group_by = fields.String(load_default=None, validate=validate.Length(min=1, max=20),
                             metadata={"description": "overview: day | hour | brand | channel | team | agent "
                                                      "(assignee); backlog: day | hour; busiest_hours: "
                                                      "weekday_hour"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))
    brand_id = fields.Integer(strict=False)
    channel_id = fields.Integer(strict=False)
    team_id = fields.Integer(strict=False)


class ReportSchema(Schema):
    report = fields.String()
    from_ = fields.String(data_key="from")
    to = fields.String()
    timezone = fields.String()
    group_by = fields.String()
    columns = fields.List(fields.String(), metadata={"description": "the keys of each row, in CSV order"})
    rows = fields.List(fields.Dict(), metadata={"description": "one per group (every day / hour of the period)"})
    totals = fields.Dict(metadata={"description": "overview only: the figures over every group"})


def _report(name: str) -> Any:
    agent = current_agent()
    access.require_supervisor(agent)  # before the query: agents learn nothing from validation errors
    params = load_query(ReportQuerySchema())
    result = reports.run_report(db.session, agent, name, params)
    if params["format"] == "csv":
        return _csv(result)
    return result


def _csv(result: dict[str, Any]) -> Response:
    buffer = io.StringIO()
    buffer.write("\ufeff")  # Excel reads UTF-8 only with a BOM
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(result["columns"])
    for row in result["rows"]:
        writer.writerow(["" if row[column] is None else row[column] for column in result["columns"]])
    filename = f"relais-{result['report']}-{result['from']}-{result['to']}-{result['group_by']}.csv"
    return Response(buffer.getvalue().encode("utf-8"), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@api_route("/reports/overview", "GET", tags=["reports"], query=ReportQuerySchema, response=ReportSchema,
           roles=READERS, errors=[422],
           summary="Volumes, conversations opened and resolved, first / next response and resolution times "
                   "(median, p90; business and calendar seconds), SLA attainment and breaches, per group")
def overview_report():
    return _report("overview")


@api_route("/reports/backlog", "GET", tags=["reports"], query=ReportQuerySchema, response=ReportSchema,
           roles=READERS, errors=[422],
           summary="Unresolved, open, pending, snoozed, waiting and unassigned conversations at the end of each "
                   "local day or hour")
def backlog_report():
    return _report("backlog")


@api_route("/reports/busiest_hours", "GET", tags=["reports"], query=ReportQuerySchema, response=ReportSchema,
           roles=READERS, errors=[422], summary="Customer messages by local weekday and hour")
def busiest_hours_report():
    return _report("busiest_hours")
