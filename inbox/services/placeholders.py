"""Placeholders of canned replies: `{{contact.first_name}}` filled with what we know of a conversation.

Syntax (whitespace inside the braces is ignored, names are case-insensitive):

    {{contact.first_name}}                 the value, or "" and the name reported in `missing`
    {{ contact.first_name | "client" }}    the value, or the fallback text when the value is unknown
    {{contact.first_name | 'client'}}      single quotes work too; the fallback is plain text

Known names are `PLACEHOLDERS`. An unknown name (`{{contact.frist_name}}`), a malformed placeholder
(`{{contact.name | client}}`, no quotes) or an unclosed `{{` is an error, raised as ValidationFailed on
`body` and naming the placeholder, so a canned reply with a typo cannot be saved.

Values are inserted as plain text, in one pass: a value that itself looks like a placeholder (a contact
named "{{agent.name}}") or contains braces stays literally what it is. Nothing is evaluated (no
str.format, no Jinja), so a template cannot reach anything but the values it is given.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import date
from typing import NamedTuple

from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.errors import ValidationFailed
from inbox.models import Agent, Brand, Channel, Contact, Conversation

PLACEHOLDERS: dict[str, str] = {
    "contact.first_name": "the customer's first name",
    "contact.name": "the customer's full name",
    "contact.handle": "the customer's handle (@name) on the network",
    "agent.first_name": "your first name",
    "agent.name": "your full name",
    "brand.name": "the brand's name",
    "channel.name": "the channel's name (page, account...)",
    "conversation.id": "the conversation number",
    "today": "today's date (UTC), written in the conversation's language",
}

# `{{`, then quoted strings or anything but a closing `}}`, then `}}`
_PLACEHOLDER = re.compile(r"""\{\{((?:"[^"]*"|'[^']*'|[^"'}]|\}(?!\}))*)\}\}""")
_INSIDE = re.compile(r"""\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*"""
                     r"""(?:\|\s*(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)')\s*)?""")


class RenderResult(NamedTuple):
    text: str
    missing: list[str]      # names without a value nor a fallback, in order of first appearance


class _Placeholder(NamedTuple):
    name: str
    fallback: str | None


def _parse(inside: str) -> _Placeholder | None:
    match = _INSIDE.fullmatch(inside)
    if match is None:
        return None
    fallback = match.group("double") if match.group("double") is not None else match.group("single")
    return _Placeholder(match.group("name").lower(), fallback)


def problems(template: str) -> list[str]:
    """What is wrong with the placeholders of `template`, one message each; [] when it can be rendered."""
    found: list[str] = []
    for match in _PLACEHOLDER.finditer(template):
        placeholder = _parse(match.group(1))
        if placeholder is None:
            found.append(f'malformed placeholder {match.group(0)}: write {{{{name}}}} or {{{{name | "fallback"}}}}')
        elif placeholder.name not in PLACEHOLDERS:
            message = f"unknown placeholder {{{{{placeholder.name}}}}}"
            close = difflib.get_close_matches(placeholder.name, PLACEHOLDERS, n=1)
            if close:
                message += f"; did you mean {{{{{close[0]}}}}}?"
            found.append(message)
    if "{{" in _PLACEHOLDER.sub("", template):
        found.append("unclosed {{: a placeholder ends with }}")
    return found


def check(template: str, field: str = "body") -> None:
    """Raise ValidationFailed on `field` when the template has an unknown or malformed placeholder."""
    found = problems(template)
    if found:
        raise ValidationFailed(found[0], fields={field: found})


def names_in(template: str) -> list[str]:
    """The known placeholder names a template uses, in order of first appearance."""
    names: list[str] = []
    for match in _PLACEHOLDER.finditer(template):
        placeholder = _parse(match.group(1))
        if placeholder is not None and placeholder.name in PLACEHOLDERS and placeholder.name not in names:
            names.append(placeholder.name)
    return names


def render(template: str, values: Mapping[str, str | None]) -> RenderResult:
    """Fill the placeholders of `template` with `values` (None or "" = unknown). Pure; raises
    ValidationFailed (field `body`) on an unknown or malformed placeholder."""
    check(template)
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        placeholder = _parse(match.group(1))
        assert placeholder is not None      # check() refused malformed ones
        value = values.get(placeholder.name)
        if value:
            return value
        if placeholder.fallback is not None:
            return placeholder.fallback
        if placeholder.name not in missing:
            missing.append(placeholder.name)
        return ""

    # re.sub with a function: the returned text is inserted as is (no backreferences, no second pass)
    return RenderResult(_PLACEHOLDER.sub(fill, template), missing)


_MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
}


def format_date(day: date, language: str | None) -> str:
    """`22 novembre 2026` in French, `November 22, 2026` in English, ISO 8601 otherwise."""
    base = (language or "").split("-")[0].lower()
    if base == "fr":
        return f"{'1er' if day.day == 1 else day.day} {_MONTHS['fr'][day.month - 1]} {day.year}"
    if base == "en":
        return f"{_MONTHS['en'][day.month - 1]} {day.day}, {day.year}"
    return day.isoformat()


def conversation_language(conversation: Conversation) -> str | None:
    """The customer's language when detected (kept in `extra`), else None."""
    language = (conversation.extra or {}).get("language")
    return language if isinstance(language, str) and language else None


def context_for(session: Session, conversation: Conversation, agent: Agent) -> dict[str, str | None]:
    """The value of every placeholder for `agent` answering in `conversation`. Reads only."""
    contact = session.get(Contact, conversation.contact_id)
    brand = session.get(Brand, conversation.brand_id)
    channel = session.get(Channel, conversation.channel_id)
    return {
        "contact.first_name": contact.first_name if contact else None,
        "contact.name": contact.name if contact else None,
        "contact.handle": contact.handle if contact else None,
        "agent.first_name": agent.first_name or None,
        "agent.name": agent.name or None,
        "brand.name": brand.name if brand else None,
        "channel.name": channel.name if channel else None,
        "conversation.id": str(conversation.id),
        "today": format_date(utcnow().date(), conversation_language(conversation) or agent.language),
    }
