"""The conversation list's search box in a real browser: "/" focuses it, under 3 characters it only hints, a
term narrows the list to the matching conversations (message text or contact name) and goes into the URL,
nothing matching says so (the term shown as text), Escape and the clear button bring the whole view back. The
list's shortcuts ("/", j / k) stay off while a modal dialog is open, wherever its focus is."""
from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from inbox.demo.fake_meta import messenger_message_payload
from tests.factories import PAGE_ID, PASSWORD
from tests.helpers import signed_meta

pytestmark = pytest.mark.e2e
SCREENSHOT = "/tmp/relais-e2e-search.png"

# psid -> what the customer wrote; the fake Graph API names a customer it does not know "Client <last 4 digits>"
CUSTOMERS = {
    "psid-search-1001": "Ma commande FR000777 est bloquée à la douane",
    "psid-search-2002": "Bonjour, une question sur la taille des chaussures",
    "psid-search-4821": "Le colis est arrivé abîmé",
}


def _post_webhook(live_server: str, payload: dict) -> None:
    raw, headers = signed_meta(payload)
    response = requests.post(live_server + "/webhooks/meta", data=raw, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def _signed_in_with_customers(page, live_server, world, jobs_done, mid_prefix: str) -> None:
    """The three CUSTOMERS have written in (one webhook each, drained); the agent signs in on the "all" view."""
    for number, (psid, text) in enumerate(CUSTOMERS.items()):
        _post_webhook(live_server, messenger_message_payload(PAGE_ID, psid, text, mid=f"{mid_prefix}{number}"))
    jobs_done()
    page.goto("/login?redirect=/inbox/all")
    page.get_by_test_id("login-email").fill(world.agent)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()


def test_search_narrows_the_list_and_clears(page, live_server, world, fake_meta, jobs_done) -> None:
    _signed_in_with_customers(page, live_server, world, jobs_done, "m_search_")
    expect(page).to_have_url(re.compile(r"/inbox/all(\?|$)"))
    rows = page.get_by_test_id("conversation-row")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="Client 4821")).to_have_count(1)  # the contact's name came from the profile

    search = page.get_by_test_id("conversation-search-input")
    status = page.get_by_test_id("conversation-search-status")
    page.locator("body").click(position={"x": 5, "y": 5})  # nothing focused: "/" is a shortcut
    page.keyboard.press("/")
    expect(search).to_be_focused()
    page.keyboard.type("fr")
    expect(search).to_have_value("fr")  # the "/" itself was not typed
    expect(status).to_have_text("Type at least 3 characters to search.")
    expect(rows).to_have_count(3)

    page.keyboard.type("000777")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("FR000777")
    expect(page).to_have_url(re.compile(r"[?&]q=fr000777(&|$)"))
    expect(status).to_contain_text("newest first")
    page.screenshot(path=SCREENSHOT)

    search.fill("Client 4821")  # a contact's name, not in any message
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Le colis est arrivé abîmé")

    search.fill("<b>introuvable</b>")
    empty = page.get_by_test_id("conversation-list-empty")
    expect(empty).to_have_text("No conversation matches “<b>introuvable</b>”.")
    expect(rows).to_have_count(0)
    assert page.locator("[data-testid=conversation-list-empty] b").count() == 0

    search.press("Escape")
    expect(search).to_have_value("")
    expect(rows).to_have_count(3)
    expect(page).not_to_have_url(re.compile(r"[?&]q="))

    # The search is in the URL: a reload (or a shared link) opens it, and the clear button empties it.
    page.goto("/inbox/all?status=open&q=douane")
    expect(search).to_have_value("douane")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("FR000777")
    rows.first.click()
    expect(page).to_have_url(re.compile(r"/inbox/all/conversations/\d+\?.*q=douane"))
    expect(rows).to_have_count(1)  # opening a result keeps the search
    page.get_by_test_id("conversation-search-clear").click()
    expect(rows).to_have_count(3)
    expect(search).to_be_focused()
    assert page.errors == [], page.errors


def test_shortcuts_are_off_behind_the_handoff_dialog(page, live_server, world, fake_meta, jobs_done) -> None:
    _signed_in_with_customers(page, live_server, world, jobs_done, "m_keys_")
    rows = page.get_by_test_id("conversation-row")
    expect(rows).to_have_count(3)
    active = re.compile(r"conversation-row--active")
    rows.first.click()  # opens it: the handoff button is in its header
    expect(page).to_have_url(re.compile(r"/inbox/all/conversations/\d+"))
    expect(rows.first).to_have_class(active)

    with page.expect_response(lambda response: "/handoff-targets" in response.url):
        page.get_by_test_id("handoff-button").click()
    dialog = page.get_by_test_id("handoff-dialog")
    expect(page.get_by_test_id("handoff-team")).to_be_focused()
    note = page.get_by_test_id("handoff-note")
    note.fill("jk/")
    page.locator("#handoff-title").click()  # the dialog's text: the focus stays in the dialog, not on the page
    expect(dialog).to_be_focused()
    for key in ("j", "j", "k", "/"):
        page.keyboard.press(key)
    expect(rows.first).to_have_class(active)
    expect(page.get_by_test_id("conversation-search-input")).not_to_be_focused()
    expect(note).to_have_value("jk/")

    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(page.get_by_test_id("handoff-button")).to_be_focused()
    page.keyboard.press("j")  # the dialog gone, the shortcuts are back
    expect(rows.nth(1)).to_have_class(active)
    assert page.errors == [], page.errors
