"""SLA administration (business-hours calendars, policies) and each conversation's SLA log.

Administrators write; supervisors read. Any agent who sees a conversation reads its SLA log.
"""
from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, ValidationError, fields, validate

from inbox.api.schemas import UTC, DottedStrictSchema, _NotEmpty, _Stripped
from inbox.api.security import commit_after, current_agent
from inbox.api.spec import api_route, load_body
from inbox.db import db
from inbox.models.channel import CHANNEL_KINDS
from inbox.models.conversation import CONVERSATION_KINDS, PRIORITIES
from inbox.services import access, sla

ADMINS = "administrators"
READERS = "supervisors, administrators"
_NAME = validate.Length(min=1, max=200)
_HHMM = validate.Regexp(r"^\d{1,2}:\d{2}$", error="a local time of day like '09:30'")
_DATE = validate.Regexp(r"^\d{4}-\d{2}-\d{2}$", error="a date like '2026-12-25'")
_SECONDS = validate.Range(min=1, max=365 * 86400)


# ---------- outputs ----------
class SlaClockSchema(Schema):
    """The current clock of one metric (its latest cycle / customer turn)."""
    metric = fields.String()
    state = fields.String(metadata={"description": "running | paused | warning | breached | met"})
    cycle = fields.Integer()
    turn = fields.Integer()
    due_at = UTC(allow_none=True)
    warning_at = UTC(allow_none=True)
    started_at = UTC()
    stopped_at = UTC(allow_none=True)
    business_seconds_left = fields.Float(allow_none=True, metadata={"description": "negative when overdue"})
    calendar_seconds_left = fields.Float(allow_none=True, metadata={"description": "negative when overdue"})


class SlaEventSchema(Schema):
    id = fields.Integer()
    metric = fields.String()
    cycle = fields.Integer()
    turn = fields.Integer()
    kind = fields.String(metadata={"description": "started | paused | resumed | warned | breached | met | stopped"})
    at = UTC()
    cause = fields.String(metadata={"description": 'message:<id> | status:<status> | timer | policy:changed'})
    policy_id = fields.Integer(allow_none=True)


class IntervalSchema(DottedStrictSchema):
    weekday = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=6),
                             metadata={"description": "0 = Monday"})
    start = fields.String(required=True, validate=_HHMM)
    end = fields.String(required=True, validate=_HHMM,
                        metadata={"description": "at or before start: runs past midnight"})


class CalendarSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    timezone = fields.String()
    intervals = fields.List(fields.Nested(IntervalSchema))
    holidays = fields.List(fields.String())
    created_at = UTC()
    updated_at = UTC()


class CalendarImportSchema(CalendarSchema):
    imported = fields.Integer(metadata={"description": "holidays added by this import"})


class ConditionsSchema(DottedStrictSchema):
    brand_ids = fields.List(fields.Integer(strict=True), validate=validate.Length(max=500))
    channel_kinds = fields.List(fields.String(validate=validate.OneOf(CHANNEL_KINDS)))
    conversation_kinds = fields.List(fields.String(validate=validate.OneOf(CONVERSATION_KINDS)))
    priorities = fields.List(fields.String(validate=validate.OneOf(PRIORITIES)))
    labels = fields.List(fields.String(validate=validate.Length(min=1, max=100)), validate=validate.Length(max=100))


class SlaPolicySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    position = fields.Integer()
    calendar_id = fields.Integer(allow_none=True)
    first_response_seconds = fields.Integer(allow_none=True)
    next_response_seconds = fields.Integer(allow_none=True)
    resolution_seconds = fields.Integer(allow_none=True)
    warning_ratio = fields.Float()
    pause_on = fields.List(fields.String())
    conditions = fields.Dict()
    archived = fields.Boolean()
    created_at = UTC()
    updated_at = UTC()


# ---------- inputs ----------
class CalendarCreateSchema(_Stripped, DottedStrictSchema):
    name = fields.String(required=True, validate=_NAME)
    timezone = fields.String(required=True, validate=validate.Length(min=1, max=64))
    intervals = fields.List(fields.Nested(IntervalSchema), required=True, validate=validate.Length(min=1, max=100))
    holidays = fields.List(fields.String(validate=_DATE), load_default=list, validate=validate.Length(max=5000))


class CalendarPatchSchema(_NotEmpty, _Stripped, DottedStrictSchema):
    name = fields.String(validate=_NAME)
    timezone = fields.String(validate=validate.Length(min=1, max=64))
    intervals = fields.List(fields.Nested(IntervalSchema), validate=validate.Length(min=1, max=100))
    holidays = fields.List(fields.String(validate=_DATE), validate=validate.Length(max=5000))


class IcsBodySchema(DottedStrictSchema):
    ics = fields.String(required=True, validate=validate.Length(min=1, max=4 * 1024 * 1024))


def _seconds() -> fields.Field:
    return fields.Integer(strict=True, allow_none=True, validate=_SECONDS)


class SlaPolicyPatchSchema(_NotEmpty, _Stripped, DottedStrictSchema):
    name = fields.String(validate=_NAME)
    position = fields.Integer(strict=True, validate=validate.Range(min=-1_000_000, max=1_000_000))
    calendar_id = fields.Integer(strict=True, allow_none=True, metadata={"description": "null: calendar time"})
    first_response_seconds = _seconds()
    next_response_seconds = _seconds()
    resolution_seconds = _seconds()
    warning_ratio = fields.Float(validate=validate.Range(min=0, max=1, min_inclusive=False),
                                 metadata={"description": "share of the target that warns; 1 = no warning"})
    pause_on = fields.List(fields.String(validate=validate.OneOf(["pending", "snoozed"])))
    conditions = fields.Nested(ConditionsSchema, metadata={"description": "every list given must match"})


class SlaPolicyCreateSchema(SlaPolicyPatchSchema):
    name = fields.String(required=True, validate=_NAME)
    position = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=-1_000_000, max=1_000_000))
    calendar_id = fields.Integer(strict=True, allow_none=True, load_default=None,
                                 metadata={"description": "null: calendar time"})
    warning_ratio = fields.Float(load_default=0.8, validate=validate.Range(min=0, max=1, min_inclusive=False),
                                 metadata={"description": "share of the target that warns; 1 = no warning"})
    pause_on = fields.List(fields.String(validate=validate.OneOf(["pending", "snoozed"])), load_default=list)
    conditions = fields.Nested(ConditionsSchema, load_default=dict,
                               metadata={"description": "every list given must match"})


def policy_data(data: dict[str, Any]) -> dict[str, Any]:
    if "pause_on" in data:
        data["pause_on"] = sorted(set(data["pause_on"]))
    if "conditions" in data:
        data["conditions"] = {key: value for key, value in data["conditions"].items() if value}
    return data


# ---------- calendars ----------
@api_route("/calendars", "GET", summary="Business-hours calendars", tags=["sla"],
           response=CalendarSchema(many=True), roles=READERS)
def list_calendars():
    return CalendarSchema(many=True).dump(sla.list_calendars(db.session, current_agent()))


@api_route("/calendars/<int:calendar_id>", "GET", summary="One calendar", tags=["sla"], response=CalendarSchema,
           roles=READERS, errors=[404])
def get_calendar(calendar_id: int):
    return CalendarSchema().dump(sla.get_calendar(db.session, current_agent(), calendar_id))


@api_route("/calendars", "POST", summary="Create a calendar (weekly intervals in a timezone, holidays)",
           tags=["sla"], body=CalendarCreateSchema, response=CalendarSchema, status=201, roles=ADMINS)
@commit_after
def create_calendar():
    data = load_body(CalendarCreateSchema())
    return CalendarSchema().dump(sla.create_calendar(db.session, current_agent(), **data)), 201


@api_route("/calendars/<int:calendar_id>", "PATCH",
           summary="Change a calendar; running clocks of the policies using it are re-evaluated", tags=["sla"],
           body=CalendarPatchSchema, response=CalendarSchema, roles=ADMINS, errors=[404])
@commit_after
def update_calendar(calendar_id: int):
    data = load_body(CalendarPatchSchema())
    return CalendarSchema().dump(sla.update_calendar(db.session, current_agent(), calendar_id, data))


@api_route("/calendars/<int:calendar_id>/holidays/import", "POST",
           summary="Add the dates of an iCalendar feed (text/calendar body, or JSON {\"ics\"}) to the holidays",
           tags=["sla"], response=CalendarImportSchema, roles=ADMINS, errors=[404])
@commit_after
def import_holidays(calendar_id: int):
    if request.mimetype == "application/json":
        ics = load_body(IcsBodySchema())["ics"].encode()
    else:
        ics = request.get_data()
        if not ics:
            raise ValidationError({"ics": ["send an iCalendar file (Content-Type: text/calendar)"]})
    calendar, added = sla.import_holidays(db.session, current_agent(), calendar_id, ics)
    body = CalendarSchema().dump(calendar)
    body["imported"] = added
    return body


# ---------- policies ----------
@api_route("/sla-policies", "GET", summary="SLA policies by position (the first match applies)", tags=["sla"],
           response=SlaPolicySchema(many=True), roles=READERS)
def list_policies():
    return SlaPolicySchema(many=True).dump(sla.list_policies(db.session, current_agent()))


@api_route("/sla-policies/<int:policy_id>", "GET", summary="One SLA policy", tags=["sla"],
           response=SlaPolicySchema, roles=READERS, errors=[404])
def get_policy(policy_id: int):
    return SlaPolicySchema().dump(sla.get_policy(db.session, current_agent(), policy_id))


@api_route("/sla-policies", "POST", summary="Create an SLA policy", tags=["sla"], body=SlaPolicyCreateSchema,
           response=SlaPolicySchema, status=201, roles=ADMINS)
@commit_after
def create_policy():
    data = policy_data(load_body(SlaPolicyCreateSchema()))
    return SlaPolicySchema().dump(sla.create_policy(db.session, current_agent(), data)), 201


@api_route("/sla-policies/<int:policy_id>", "PATCH",
           summary="Change an SLA policy; running clocks are re-evaluated and the change logged", tags=["sla"],
           body=SlaPolicyPatchSchema, response=SlaPolicySchema, roles=ADMINS, errors=[404])
@commit_after
def update_policy(policy_id: int):
    data = policy_data(load_body(SlaPolicyPatchSchema()))
    return SlaPolicySchema().dump(sla.update_policy(db.session, current_agent(), policy_id, data))


@api_route("/sla-policies/<int:policy_id>", "DELETE", summary="Archive an SLA policy (it stops applying)",
           tags=["sla"], status=204, roles=ADMINS, errors=[404])
@commit_after
def archive_policy(policy_id: int):
    sla.archive_policy(db.session, current_agent(), policy_id)
    return "", 204


# ---------- a conversation's log ----------
@api_route("/conversations/<int:conversation_id>/sla-events", "GET", tags=["sla", "conversations"],
           summary="The SLA clocks' log of a conversation, oldest first", response=SlaEventSchema(many=True),
           errors=[404])
def list_sla_events(conversation_id: int):
    conversation = access.get_conversation_for(db.session, current_agent(), conversation_id)
    return SlaEventSchema(many=True).dump(sla.list_events(db.session, conversation.id))
