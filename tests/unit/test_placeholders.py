"""Placeholders of canned replies: what an agent's customer ends up reading."""
from __future__ import annotations

from datetime import date

import pytest

from inbox.errors import ValidationFailed
from inbox.services.placeholders import PLACEHOLDERS, format_date, names_in, problems, render

VALUES = {
    "contact.first_name": "Amélie",
    "contact.name": "Amélie Poulain",
    "contact.handle": "@amelie",
    "agent.first_name": "Karim",
    "agent.name": "Karim Benali",
    "brand.name": "Maison Lune",
    "channel.name": "Maison Lune FB",
    "conversation.id": "42",
    "today": "22 novembre 2026",
}


@pytest.mark.parametrize("name", sorted(PLACEHOLDERS))
def test_each_placeholder_is_filled(name):
    result = render(f"<{{{{{name}}}}}>", VALUES)
    assert result.text == f"<{VALUES[name]}>" and result.missing == []


def test_a_whole_reply():
    body = ("Bonjour {{contact.first_name}}, ici {{agent.first_name}} de {{brand.name}} "
            "(dossier n° {{conversation.id}}).")
    assert render(body, VALUES).text == "Bonjour Amélie, ici Karim de Maison Lune (dossier n° 42)."


def test_whitespace_and_case_inside_the_braces_do_not_matter():
    assert render("{{  contact.first_name  }}|{{\tAgent.Name\t}}", VALUES).text == "Amélie|Karim Benali"


def test_fallback_when_the_value_is_unknown_and_only_then():
    body = 'Bonjour {{ contact.first_name | "cher client" }} !'
    assert render(body, {**VALUES, "contact.first_name": None}) == ("Bonjour cher client !", [])
    assert render(body, {**VALUES, "contact.first_name": ""}).text == "Bonjour cher client !"
    assert render(body, VALUES).text == "Bonjour Amélie !"
    assert render("{{contact.first_name|'toi'}}", {}).text == "toi"


def test_fallback_may_be_empty_and_may_hold_braces_and_pipes():
    assert render('{{contact.handle | ""}}', {}) == ("", [])
    assert render('{{contact.name | "a | b }} {{c}}"}}', {}).text == "a | b }} {{c}}"


def test_missing_values_are_reported_once_in_order():
    result = render("{{agent.name}} {{contact.first_name}} {{agent.name}} {{brand.name}}",
                    {"brand.name": "Maison Lune"})
    assert result.text == "   Maison Lune" and result.missing == ["agent.name", "contact.first_name"]


def test_unknown_placeholder_is_refused_naming_it_with_a_suggestion():
    with pytest.raises(ValidationFailed) as raised:
        render("Bonjour {{contact.frist_name}}", VALUES)
    assert "{{contact.frist_name}}" in raised.value.message
    assert raised.value.fields == {"body": ["unknown placeholder {{contact.frist_name}}; "
                                            "did you mean {{contact.first_name}}?"]}


@pytest.mark.parametrize("body", ["{{contact.name | client}}", "{{}}", "{{contact.}}", "{{ a b }}",
                                  "Bonjour {{contact.name", '{{contact.name | "client}}'])
def test_malformed_placeholders_are_refused(body):
    assert problems(body)
    with pytest.raises(ValidationFailed):
        render(body, VALUES)


def test_text_without_placeholders_is_unchanged_even_with_single_braces():
    body = "Code promo {PROMO} ; emoji 🎉 ; } et { ; 100 % ; \\1 $1"
    assert render(body, VALUES) == (body, [])
    assert problems(body) == []


def test_values_are_never_expanded_again():
    # a customer who names themselves like a placeholder stays literally that name
    values = {**VALUES, "contact.first_name": "{{agent.name}}", "contact.name": "{{ contact.frist_name }}"}
    result = render("Bonjour {{contact.first_name}} / {{contact.name}}", values)
    assert result.text == "Bonjour {{agent.name}} / {{ contact.frist_name }}" and result.missing == []


def test_fallbacks_are_never_expanded_either():
    assert render('{{contact.first_name | "{{agent.name}}"}}', {}).text == "{{agent.name}}"


def test_values_with_format_and_regex_syntax_are_kept_literally():
    weird = "{0} {agent.name!r} %s %(x)s \\1 \\g<0> $& ${x} {% raw %}"
    assert render("[{{contact.name}}]", {"contact.name": weird}).text == f"[{weird}]"


def test_emoji_and_right_to_left_values():
    values = {"contact.first_name": "مريم", "contact.name": "👩🏽‍💻 Zoë", "brand.name": "שלום"}
    result = render("مرحبا {{contact.first_name}}! {{contact.name}} @ {{brand.name}} 🙂", values)
    assert result.text == "مرحبا مريم! 👩🏽‍💻 Zoë @ שלום 🙂"


def test_names_in_lists_the_known_placeholders_used():
    assert names_in('{{agent.name}} {{ contact.first_name | "x" }} {{agent.name}}') == ["agent.name",
                                                                                     "contact.first_name"]


@pytest.mark.parametrize("language, expected", [("fr", "22 novembre 2026"), ("fr-CA", "22 novembre 2026"),
                                                ("en", "November 22, 2026"), ("de", "2026-11-22"),
                                                (None, "2026-11-22")])
def test_today_is_written_in_the_conversation_language(language, expected):
    assert format_date(date(2026, 11, 22), language) == expected


def test_first_of_the_month_in_french():
    assert format_date(date(2026, 12, 1), "fr") == "1er décembre 2026"
