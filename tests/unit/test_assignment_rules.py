"""Pure rules of triage: the language guess, language codes, the default policy and the policy input."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from inbox.api.assignment import AssignmentPolicySchema, HandoffSchema, LinkSchema
from inbox.models import Agent, AgentState
from inbox.models.assignment import policy_dict
from inbox.services.assignment import agent_languages, detect_language, language_code


@pytest.mark.parametrize("text", [
    "Bonjour, où est ma commande ? 📦",
    "Je n'ai toujours pas reçu mon colis",
    "Vous livrez en Belgique ? 🇧🇪",
    "c'est très décevant, merci de me répondre",
    "Commande numéro 1234 reçue cassée",
])
def test_french_texts_are_french(text):
    assert detect_language(text) == "fr"


@pytest.mark.parametrize("text", [
    "Hello, where is my order?",
    "I still have not received the package",
    "Do you ship to Belgium?",
    "thanks for your help",
])
def test_english_texts_are_english(text):
    assert detect_language(text) == "en"


@pytest.mark.parametrize("text", [None, "", "ok", "👍👍", "1234", "Paris"])
def test_texts_that_do_not_tell_give_none(text):
    assert detect_language(text) is None


def test_an_accent_tips_a_short_text_to_french():
    assert detect_language("Déçu") == "fr"


@pytest.mark.parametrize("value, code", [("fr", "fr"), ("fr-FR", "fr"), ("EN_gb", "en"), (" de ", "de"),
                                         (None, None), ("", None)])
def test_language_codes_keep_the_language_only(value, code):
    assert language_code(value) == code


def test_agent_languages_join_the_interface_language_and_the_spoken_ones():
    agent = Agent(language="fr-FR")
    assert agent_languages(agent, None) == {"fr"}
    assert agent_languages(agent, AgentState(languages=["en", "es-ES"])) == {"fr", "en", "es"}
    assert agent_languages(Agent(language=None), AgentState(languages=[])) == set()


def test_no_policy_means_manual():
    assert policy_dict(None) == {"mode": "manual", "capacity_by_channel_kind": {}, "match_language": False,
                                 "unassign_after_offline_minutes": None}


def test_policy_input_defaults_and_field_errors():
    assert AssignmentPolicySchema().load({"mode": "round_robin"}) == {
        "mode": "round_robin", "capacity_by_channel_kind": {}, "match_language": False,
        "unassign_after_offline_minutes": None}
    with pytest.raises(ValidationError) as err:
        AssignmentPolicySchema().load({"mode": "random", "capacity_by_channel_kind": {"fax": 2},
                                       "unassign_after_offline_minutes": 0, "extra": 1})
    assert set(err.value.messages) == {"mode", "capacity_by_channel_kind", "unassign_after_offline_minutes",
                                       "extra"}
    with pytest.raises(ValidationError) as err:
        AssignmentPolicySchema().load({"mode": "least_loaded", "capacity_by_channel_kind": {"api": -1}})
    assert "capacity_by_channel_kind" in err.value.messages


def test_handoff_needs_a_team_and_a_real_note():
    with pytest.raises(ValidationError) as err:
        HandoffSchema().load({"team_id": 3, "note": "   "})
    assert err.value.messages == {"note": ["must not be blank"]}
    with pytest.raises(ValidationError) as err:
        HandoffSchema().load({"note": "refund"})
    assert "team_id" in err.value.messages
    assert HandoffSchema().load({"team_id": 3, "note": "refund please"}) == {"team_id": 3, "note": "refund please"}


def test_link_confirm_defaults_to_false():
    assert LinkSchema().load({"conversation_id": 9}) == {"conversation_id": 9, "confirm": False}
