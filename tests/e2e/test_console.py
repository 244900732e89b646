"""The agent console in a real browser against the live server: sign in, a webhook shows up live, customer
text is shown as text (never HTML), a reply goes out through the fake Graph API and shows as sent."""
from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from inbox.demo.fake_meta import messenger_message_payload
from tests.factories import PAGE_ID, PASSWORD
from tests.helpers import signed_meta, wait_until

pytestmark = pytest.mark.e2e
SCREENSHOT = "/tmp/relais-e2e.png"


def _post_webhook(live_server: str, payload: dict) -> None:
    raw, headers = signed_meta(payload)
    response = requests.post(live_server + "/webhooks/meta", data=raw, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def test_sign_in_see_a_dm_arrive_live_and_reply(page, live_server, world, fake_meta, jobs_done) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login(\?|$)"))  # signed out: sent to the sign-in page
    page.get_by_test_id("login-email").fill(world.agent)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    # the default view is "mine"; a new conversation is unassigned, so look at "all"
    page.get_by_test_id("view-all").click()
    expect(page).to_have_url(re.compile(r"/inbox/all(\?|$)"))
    rows = page.get_by_test_id("conversation-row")
    expect(rows).to_have_count(0)

    first = "Bonjour, ma commande FR000123 n'est pas arrivée 📦"
    _post_webhook(live_server, messenger_message_payload(PAGE_ID, "psid-e2e", first, mid="m_e2e_1"))
    expect(rows).to_have_count(1)  # pushed live: no reload
    expect(rows.first).to_contain_text(first)
    # the fake Graph API names this new customer "Client -e2e" a moment later: pushed as contact.updated
    expect(rows.first).to_contain_text("Client -e2e")
    rows.first.click()
    texts = page.get_by_test_id("message-list").get_by_test_id("message-text")
    expect(texts.filter(has_text="FR000123")).to_have_text(first)

    markup = "<b>bold</b> & <img src=x onerror=\"document.title='pwned'\">"
    _post_webhook(live_server, messenger_message_payload(PAGE_ID, "psid-e2e", markup, mid="m_e2e_2"))
    literal = texts.filter(has_text="<b>bold</b>")
    expect(literal).to_have_text(markup)  # shown as typed, live, in the open conversation
    assert page.locator("[data-testid=message-list] b, [data-testid=message-list] img").count() == 0
    assert page.title() != "pwned"

    reply = "Bonjour ! Elle arrive demain 🙂"
    page.get_by_test_id("composer-text").fill(reply)
    page.get_by_test_id("composer-send").click()
    wait_until(lambda: [r for r in fake_meta.requests if r.path == f"/{PAGE_ID}/messages"
                        and r.body["message"]["text"] == reply], timeout=15)
    sent = page.locator("[data-testid=message][data-direction=out]").filter(has_text=reply)
    expect(sent).to_have_count(1)
    expect(sent).to_have_attribute("data-delivery-status", "sent")
    jobs_done()
    assert len([r for r in fake_meta.requests if r.path == f"/{PAGE_ID}/messages"]) == 1
    expect(page.get_by_test_id("composer-text")).to_have_value("")
    page.screenshot(path=SCREENSHOT, full_page=True)
    assert page.errors == [], page.errors


def test_a_refused_reply_shows_why_and_is_sent_again_from_the_console(page, live_server, world, fake_meta,
                                                                      jobs_done) -> None:
    """The platform refuses a reply for good: the agent sees "failed" and the platform's reason in the thread,
    sends it again with one click once the cause is gone, and it goes out once more, live back to "sent"."""
    page.goto("/")
    page.get_by_test_id("login-email").fill(world.agent)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    page.get_by_test_id("view-all").click()
    _post_webhook(live_server, messenger_message_payload(PAGE_ID, "psid-again", "Vous êtes là ?", mid="m_again_1"))
    rows = page.get_by_test_id("conversation-row")
    expect(rows).to_have_count(1)
    # the new customer's name lookup (a Graph GET, gathered for up to a second) is done: the failure injected below
    # goes to the next Graph call, which must be the send
    expect(rows.first).to_contain_text("Client gain")
    rows.first.click()

    fake_meta.fail_next(1, code=100, message="(#100) The recipient is not available right now")  # not retryable
    reply = "Oui, nous sommes là !"
    page.get_by_test_id("composer-text").fill(reply)
    page.get_by_test_id("composer-send").click()
    sent = page.locator("[data-testid=message][data-direction=out]").filter(has_text=reply)
    expect(sent).to_have_attribute("data-delivery-status", "failed", timeout=15000)
    expect(sent.get_by_test_id("delivery-error")).to_contain_text("The recipient is not available right now")
    sends = lambda: [r for r in fake_meta.requests if r.path == f"/{PAGE_ID}/messages"  # noqa: E731
                     and r.body["message"]["text"] == reply]
    assert len(sends()) == 1

    sent.get_by_test_id("resend").click()
    expect(sent).to_have_attribute("data-delivery-status", "sent", timeout=15000)
    expect(sent.get_by_test_id("resend")).to_have_count(0)
    jobs_done()
    assert len(sends()) == 2  # refused once, then sent once: never twice
    assert page.errors == [], page.errors
