"""Meta adapter: signatures, handshake, every Messenger and Page feed shape, senders against FakeMeta."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import meta
from adapters.base import Author, InboundEvent, PayloadError, PlatformError, SignatureError
from adapters.http import PlatformClient
from inbox.demo import fake_meta as fm

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "meta"
PAGE = "104358921234567"
PAGE2 = "209876543210987"
PSID = "7071234567890123"
PSID2 = "7079876543210456"
POST = "137542570280222_139560936744456"
SECRET = "app-secret"


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def parse_fixture(name: str) -> list[InboundEvent]:
    return meta.parse(raw(name))


def hub_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def seconds(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


# ----------------------------------------------------------------------------------------------------------
# Signature


class TestVerifySignature:
    body = raw("messenger_message")

    def test_valid_signature_returns_the_matching_secret(self) -> None:
        header = hub_signature("second", self.body)
        assert meta.verify_signature(self.body, header, ["first", "second"]) == "second"

    def test_missing_header(self) -> None:
        with pytest.raises(SignatureError) as caught:
            meta.verify_signature(self.body, None, [SECRET])
        assert caught.value.reason == "missing X-Hub-Signature-256 header"

    @pytest.mark.parametrize("header", [
        "abc", "sha256=", "sha256=xyz", "sha256=" + "a" * 63, "sha256=" + "g" * 64,
        "sha1=" + "a" * 64, "md5=" + "a" * 64, "sha256" + "a" * 64,
    ])
    def test_malformed_header(self, header: str) -> None:
        with pytest.raises(SignatureError) as caught:
            meta.verify_signature(self.body, header, [SECRET])
        assert caught.value.reason == "malformed signature header"

    def test_wrong_secret_does_not_match(self) -> None:
        with pytest.raises(SignatureError) as caught:
            meta.verify_signature(self.body, hub_signature("other", self.body), [SECRET])
        assert caught.value.reason == "signature does not match"

    def test_one_changed_byte_does_not_match(self) -> None:
        header = hub_signature(SECRET, self.body)
        tampered = self.body.replace(b"hello", b"hellO")
        with pytest.raises(SignatureError, match="does not match"):
            meta.verify_signature(tampered, header, [SECRET])

    def test_last_hex_digit_matters(self) -> None:
        header = hub_signature(SECRET, self.body)
        forged = header[:-1] + ("0" if header[-1] != "0" else "1")
        with pytest.raises(SignatureError, match="does not match"):
            meta.verify_signature(self.body, forged, [SECRET])

    def test_uppercase_hex_is_accepted(self) -> None:
        header = "sha256=" + hub_signature(SECRET, self.body).split("=", 1)[1].upper()
        assert meta.verify_signature(self.body, header, [SECRET]) == SECRET

    def test_no_secret_configured_rejects(self) -> None:
        with pytest.raises(SignatureError, match="no app secret"):
            meta.verify_signature(self.body, hub_signature("", self.body), ["", ""])

    def test_escaped_unicode_body_verifies_only_as_received(self) -> None:
        body = raw("messenger_unicode")
        assert b"\\u00e9" in body and b"\\ud83d\\ude00" in body and b"\\/" in body
        header = hub_signature(SECRET, body)
        assert meta.verify_signature(body, header, [SECRET]) == SECRET
        decoded = json.loads(body)
        for reserialised in (json.dumps(decoded).encode(),
                             json.dumps(decoded, ensure_ascii=False).encode("utf-8"),
                             json.dumps(decoded, separators=(",", ":")).encode()):
            with pytest.raises(SignatureError, match="does not match"):
                meta.verify_signature(reserialised, header, [SECRET])

    def test_meta_style_serialisation_keeps_text_exact(self) -> None:
        text = "Café 😀 مرحبا שלום a/b \\ \"q\""
        body = fm.meta_json(fm.messenger_message_payload(PAGE, PSID, text, mid="m_1", ts_ms=1))
        assert b"\\ud83d\\ude00" in body and b"a\\/b" in body and body.isascii()
        assert meta.verify_signature(body, fm.sign_meta(SECRET, body), [SECRET]) == SECRET
        assert meta.parse(body)[0].text == text

    def test_legacy_sha1_only_when_sha256_absent(self) -> None:
        sha1 = "sha1=" + hmac.new(SECRET.encode(), self.body, hashlib.sha1).hexdigest()
        assert meta.verify_signature(self.body, None, [SECRET], legacy_sha1_header=sha1) == SECRET
        wrong_sha256 = hub_signature("other", self.body)
        with pytest.raises(SignatureError, match="does not match"):
            meta.verify_signature(self.body, wrong_sha256, [SECRET], legacy_sha1_header=sha1)

    def test_verify_reads_headers_case_insensitively(self) -> None:
        headers = {"x-hub-signature-256": hub_signature(SECRET, self.body)}
        assert meta.verify(self.body, headers, [SECRET]) == SECRET
        sha1_only = {"X-Hub-Signature": "sha1=" + hmac.new(SECRET.encode(), self.body, hashlib.sha1).hexdigest()}
        with pytest.raises(SignatureError, match="missing"):
            meta.verify(self.body, sha1_only, [SECRET])
        assert meta.verify(self.body, sha1_only, [SECRET], accept_legacy_sha1=True) == SECRET


class TestHandshake:
    def test_subscribe_with_matching_token_returns_challenge(self) -> None:
        params = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "T2"}
        assert meta.verify_handshake(params, ["T1", "T2"]) == "1158201444"

    @pytest.mark.parametrize("params", [
        {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "wrong"},
        {"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": "T1"},
        {"hub.mode": "subscribe", "hub.verify_token": "T1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": ""},
        {},
    ])
    def test_anything_else_is_refused(self, params: dict[str, str]) -> None:
        assert meta.verify_handshake(params, ["T1", ""]) is None


# ----------------------------------------------------------------------------------------------------------
# Parsing: envelope


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (b'{"object": "page"}', "missing entry list"),
    (b'{"object": "page", "entry": {}}', "missing entry list"),
    (b'{"entry": []}', "not supported yet"),
    (b'{"object": "instagram", "entry": []}', "'instagram' is not supported yet"),
    (b'{"object": "whatsapp_business_account", "entry": []}', "not supported yet"),
])
def test_unreadable_envelopes_raise_payload_error(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        meta.parse(body)


def test_empty_entry_list_gives_no_events() -> None:
    assert meta.parse(b'{"object":"page","entry":[]}') == []


def test_entry_without_id_is_kept_as_malformed() -> None:
    events = meta.parse(b'{"object":"page","entry":[{"time":1,"messaging":[]},{"id":"P","messaging":[]}]}')
    assert events[0].kind == "ignored" and events[0].route_key == ""
    assert events[0].extra["item"] == "malformed" and events[0].extra["reason"] == "entry without id"
    assert events[1].route_key == "P" and events[1].extra["item"] == "unknown"


def test_messaging_that_is_not_a_list_is_kept_as_malformed() -> None:
    [event] = meta.parse(b'{"object":"page","entry":[{"id":"P","time":1,"messaging":{"a":1}}]}')
    assert event.extra == {"item": "malformed", "reason": "entry.messaging is not a list", "raw": {"a": 1}}


# ----------------------------------------------------------------------------------------------------------
# Parsing: Messenger


def test_message_with_quick_reply_reply_to_and_attachment() -> None:
    [event] = parse_fixture("messenger_message")
    assert event.route_key == PAGE
    assert event.kind == "message" and event.conversation_kind == "dm"
    assert event.external_id == "m_AbC" and event.dedupe_key == "m_AbC"
    assert event.thread_key == f"dm:{PSID}"
    assert event.author is not None and event.author.external_id == PSID
    assert event.text == "hello, world!"
    assert event.reply_to == "m_prev"
    assert event.extra["quick_reply_payload"] == "DEV_PAYLOAD"
    assert [(a.type, a.url) for a in event.attachments] == [("image", "https://example.invalid/a.jpg")]
    assert event.platform_time == ms(1518479195308)
    assert event.platform_time.tzinfo is UTC


def test_every_attachment_type_is_kept() -> None:
    [event] = parse_fixture("messenger_attachments")
    assert event.kind == "message" and event.text is None
    assert [a.type for a in event.attachments] == [
        "image", "audio", "video", "file", "sticker", "reel", "ig_reel", "post", "ig_post", "fallback", "image"]
    by_type = {a.type: a for a in event.attachments[:-1]}
    assert by_type["file"].url == "https://example.invalid/facture.pdf"
    assert by_type["sticker"].payload["sticker_id"] == 369239263222822
    assert by_type["ig_post"].payload["ig_post_media_id"] == "1790"
    fallback = by_type["fallback"]
    assert fallback.url == "https://example.invalid/suivi" and fallback.payload["title"] == "Suivi de colis"
    assert event.attachments[-1].url is None  # image without a payload url


def test_echoes_are_outbound_with_page_author_and_customer_thread() -> None:
    ours, native = parse_fixture("messenger_echo")
    assert ours.kind == "echo" and ours.external_id == "mid.1457764197618:41d102a3e1ae206a38"
    assert ours.thread_key == f"dm:{PSID}"
    assert ours.author is not None and ours.author.external_id == PAGE
    assert ours.extra == {"metadata": "relais:msg:42", "app_id": "1517776481860111"}
    assert ours.text == "Bonjour, je regarde ça."
    assert native.kind == "echo" and native.extra == {"metadata": None, "app_id": "263902037430900"}
    assert native.text == "Répondu depuis la boîte de réception de la Page"


def test_postbacks_with_and_without_mid() -> None:
    with_mid, without_mid = parse_fixture("messenger_postback")
    assert with_mid.kind == "postback" and with_mid.external_id == "m_postback_1"
    assert with_mid.text == "Suivre ma commande" and with_mid.extra["payload"] == "TRACK_ORDER"
    assert with_mid.extra["referral"]["ref"] == "summer"
    assert with_mid.thread_key == f"dm:{PSID}"
    assert without_mid.kind == "postback" and without_mid.thread_key == f"dm:{PSID2}"
    assert without_mid.external_id is not None and without_mid.external_id.startswith("postback:")
    assert without_mid.extra["synthetic_id"] is True
    # a redelivery of the same postback gets the same id; another press (other time) another one
    assert meta.parse(raw("messenger_postback"))[1].external_id == without_mid.external_id
    later = json.loads(raw("messenger_postback"))
    later["entry"][1]["messaging"][0]["timestamp"] += 1
    assert meta.parse(json.dumps(later).encode())[1].external_id != without_mid.external_id


def test_read_receipt() -> None:
    [event] = parse_fixture("messenger_read")
    assert (event.kind, event.status) == ("status", "read")
    assert event.watermark == ms(1458668856253)
    assert event.thread_key == f"dm:{PSID}" and event.external_id is None


def test_delivery_receipts_with_and_without_mids() -> None:
    with_mids, without_mids = parse_fixture("messenger_delivery")
    assert (with_mids.kind, with_mids.status) == ("status", "delivered")
    assert with_mids.target_external_ids == ["mid.1458668856218:ed81099e15d3f4f233", "m_second"]
    assert with_mids.watermark == ms(1458668856253)
    assert without_mids.target_external_ids == [] and without_mids.watermark == ms(1458668856900)


def test_message_edit() -> None:
    [event] = parse_fixture("messenger_edit")
    assert event.kind == "edit" and event.target_external_id == "m_AbC" and event.external_id is None
    assert event.text == "hello, world! (corrigé)" and event.extra["num_edit"] == 2
    assert event.dedupe_key is not None and "m_AbC" in event.dedupe_key


def test_reaction_is_ignored_but_counted() -> None:
    [event] = parse_fixture("messenger_reaction")
    assert event.kind == "ignored" and event.extra["item"] == "reaction"
    assert event.extra["reaction"]["emoji"] == "❤️"


def test_unknown_messaging_items_are_kept_with_their_raw_shape() -> None:
    optin, handover = parse_fixture("messenger_unknown")
    assert optin.kind == "ignored" and optin.extra["item"] == "unknown"
    assert optin.extra["raw"]["optin"]["payload"] == "NEWS"
    assert handover.extra["raw"]["pass_thread_control"]["new_owner_app_id"] == "123456789"


def test_malformed_items_do_not_kill_the_batch() -> None:
    events = parse_fixture("messenger_malformed")
    assert len(events) == 6
    *bad, good = events
    assert [e.extra["item"] for e in bad] == ["malformed"] * 5
    assert [e.extra["reason"] for e in bad] == [
        "missing sender.id", "missing message.mid", "messaging item is not an object",
        "missing recipient.id", "message is not an object"]
    assert bad[0].extra["raw"]["message"]["mid"] == "m_nosender"
    assert all(e.kind == "ignored" and e.route_key == PAGE for e in bad)
    assert good.kind == "message" and good.external_id == "m_good" and good.text == "still here"


def test_standby_items_are_parsed_and_flagged() -> None:
    echo, customer = parse_fixture("messenger_standby")
    assert echo.kind == "echo" and echo.extra["standby"] is True and echo.thread_key == f"dm:{PSID}"
    assert customer.kind == "message" and customer.extra["standby"] is True
    assert customer.text == "Je veux parler à un humain"


def test_batched_entries_for_two_pages_keep_their_order_and_routes() -> None:
    events = parse_fixture("batch_two_pages")
    assert [(e.route_key, e.kind) for e in events] == [
        (PAGE, "message"), (PAGE2, "message"), (PAGE2, "status"), (PAGE2, "comment"), (PAGE, "message")]
    assert [e.external_id for e in events if e.kind == "message"] == ["m_batch_1", "m_batch_2", "m_batch_3"]
    assert events[3].platform_time == seconds(1700000012)
    assert events[4].text == "Troisième"


def test_unicode_fixture_decodes_escapes_and_surrogate_pairs() -> None:
    [event] = parse_fixture("messenger_unicode")
    assert event.text == 'Café crème 😀 مرحبا שלום "cité" \\ https://example.invalid/suivi'
    assert event.attachments[0].url == "https://example.invalid/photoé.jpg"


@pytest.mark.parametrize("text", [
    "Bonjour 👋🏽 ma commande 📦 n'est pas arrivée 😡🇫🇷",
    "مرحبا، طلبي لم يصل بعد",
    "שלום, ההזמנה שלי לא הגיעה",
    "x" * 10_000,
    "é" * 5_000 + "😀" * 2_500,
    "",
])
def test_text_survives_meta_serialisation(text: str) -> None:
    body = fm.meta_json(fm.messenger_message_payload(PAGE, PSID, text, mid="m_t", ts_ms=1_700_000_000_000))
    [event] = meta.parse(body)
    assert event.text == text


# slow generation on a loaded machine is not a failure of the adapter
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300))
def test_any_text_round_trips_and_stays_signed(text: str) -> None:
    body = fm.meta_json(fm.messenger_message_payload(PAGE, PSID, text, mid="m_p", ts_ms=1))
    assert meta.verify_signature(body, fm.sign_meta(SECRET, body), [SECRET]) == SECRET
    assert meta.parse(body)[0].text == text


def test_missing_optional_messaging_fields_never_crash() -> None:
    item = {"sender": {"id": PSID}, "message": {"mid": "m_bare", "attachments": [
        {"type": "image"}, {"payload": {"url": 5}}, "weird"]}}
    body = json.dumps({"object": "page", "entry": [{"id": PAGE, "time": 1700000000123, "messaging": [item]}]})
    [event] = meta.parse(body.encode())
    assert event.kind == "message" and event.text is None and event.reply_to is None
    assert [(a.type, a.url) for a in event.attachments] == [("image", None), ("unknown", None), ("unknown", None)]
    assert event.platform_time == ms(1700000000123)  # no timestamp: the entry's time


def test_integer_ids_are_read_as_strings() -> None:
    item = {"sender": {"id": 7071234567890123}, "recipient": {"id": 104358921234567},
            "timestamp": 1700000000000, "message": {"mid": "m_int", "text": "ok"}}
    body = json.dumps({"object": "page", "entry": [{"id": 104358921234567, "messaging": [item]}]})
    [event] = meta.parse(body.encode())
    assert event.route_key == PAGE and event.thread_key == f"dm:{PSID}"


def test_unsent_message_becomes_a_delete() -> None:
    item = {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": 1700000000000,
            "message": {"mid": "m_gone", "is_deleted": True}}
    [event] = meta.parse(json.dumps(fm.page_payload(fm.page_entry(PAGE, messaging=[item]))).encode())
    assert event.kind == "delete" and event.target_external_id == "m_gone" and event.external_id is None


# ----------------------------------------------------------------------------------------------------------
# Parsing: Page feed


def test_top_level_comment() -> None:
    [event] = parse_fixture("feed_comment_add")
    assert event.kind == "comment" and event.conversation_kind == "comment"
    assert event.route_key == PAGE
    assert event.external_id == "139560936744456_139620233405726"
    assert event.thread_key == f"comment:{POST}:139560936744123"
    assert event.reply_to is None
    assert event.author is not None and event.author.name == "Camille Dubois"
    assert event.text == "C'est dispo en magasin ? 😍"
    assert event.post is not None and event.post.external_id == POST
    assert event.post.permalink == "https://example.invalid/p" and event.post.text is None
    assert event.extra == {"verb": "add", "parent_id": POST, "post_id": POST}
    assert event.platform_time == seconds(1511951015)
    assert event.dedupe_key == "comment:139560936744456_139620233405726:add:1511951015"


def test_reply_to_a_comment_points_at_its_parent() -> None:
    [event] = parse_fixture("feed_comment_reply")
    assert event.kind == "comment"
    assert event.reply_to == "139560936744456_139562213411528"
    assert event.thread_key == f"comment:{POST}:139560936744123"
    assert event.post is not None and event.post.text == "Notre nouvelle vidéo"


def test_page_own_comment_is_an_echo_found_through_its_parent() -> None:
    [event] = parse_fixture("feed_comment_page_echo")
    assert event.kind == "echo" and event.external_id == "139560936744456_139699999999999"
    assert event.author is not None and event.author.external_id == PAGE
    assert event.reply_to == "139560936744456_139620233405726"
    assert event.thread_key is None


def test_comment_edit_and_remove_target_the_comment() -> None:
    [edit] = parse_fixture("feed_comment_edited")
    assert edit.kind == "edit" and edit.target_external_id == "139560936744456_139620233405726"
    assert edit.text == "C'est dispo en magasin à Lyon ?" and edit.external_id is None
    assert edit.thread_key == f"comment:{POST}:139560936744123" and edit.post is not None
    assert edit.dedupe_key == "comment:139560936744456_139620233405726:edited:1511951200"
    [remove] = parse_fixture("feed_comment_remove")
    assert remove.kind == "delete" and remove.target_external_id == "139560936744456_139620233405726"
    assert remove.author is None and remove.text is None
    assert remove.platform_time == seconds(1511951300)


def test_other_feed_items_are_ignored_with_item_and_verb() -> None:
    events = parse_fixture("feed_other_items")
    assert all(e.kind == "ignored" and e.route_key == PAGE for e in events)
    assert [(e.extra.get("item"), e.extra.get("verb")) for e in events[:-1]] == [
        ("reaction", "add"), ("like", "add"), ("status", "add"), ("post", "edited"), ("share", "add"),
        ("photo", "add"), ("video", "add"), ("comment", "hide")]
    assert events[0].platform_time == seconds(1511951400)
    assert events[-1].extra["item"] == "unknown" and events[-1].extra["field"] == "mention"


def test_comments_with_missing_fields() -> None:
    photo_only, no_author, no_post, no_time = parse_fixture("feed_comment_minimal")
    assert photo_only.kind == "comment" and photo_only.text is None
    assert photo_only.author is not None and photo_only.author.name is None
    assert [(a.type, a.url) for a in photo_only.attachments] == [("image", "https://example.invalid/c.jpg")]
    assert photo_only.post is not None and photo_only.post.permalink is None
    assert no_author.kind == "comment" and no_author.author is None
    assert no_author.thread_key == f"comment:{POST}:anonymous:139560936744456_1000"
    assert no_author.reply_to == "139560936744456_1000"
    assert no_post.kind == "ignored" and no_post.extra["reason"] == "comment without post_id"
    assert no_time.kind == "comment" and no_time.text is None
    assert no_time.platform_time == seconds(1511951500)  # the entry's time


def test_feed_helpers_build_what_the_parser_reads() -> None:
    body = fm.batch_payloads(
        fm.feed_comment_payload(PAGE, POST, "1_2", "42", "Léa", "Prix ? 😍", created_time=1700000000),
        fm.feed_comment_payload(PAGE2, "9_8", "8_7", "43", None, None, verb="remove"),
        fm.messenger_message_payload(PAGE2, PSID2, "hi", mid="m_x", ts_ms=1700000000000))
    events = meta.parse(fm.meta_json(body))
    assert [(e.route_key, e.kind) for e in events] == [(PAGE, "comment"), (PAGE2, "delete"), (PAGE2, "message")]
    assert events[0].platform_time == seconds(1700000000) and events[0].text == "Prix ? 😍"


# ----------------------------------------------------------------------------------------------------------
# Senders against the fake Graph API


@pytest.fixture
def graph(fake_graph: fm.FakeMeta) -> PlatformClient:
    return PlatformClient(fake_graph.base_url, timeout=5)


CREDS = meta.MetaCredentials(page_id=PAGE, access_token="page-token", app_secret="app-secret")
PROOF = hmac.new(b"app-secret", b"page-token", hashlib.sha256).hexdigest()


def test_credentials_repr_hides_secrets() -> None:
    assert "page-token" not in repr(CREDS) and "app-secret" not in repr(CREDS)


def test_send_message_inside_the_window(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    result = meta.send_message(graph, CREDS, PSID, "Bonjour 😀", metadata="relais:msg:7")
    assert result.external_id.startswith("m_") and result.raw["recipient_id"] == PSID
    [call] = fake_graph.requests
    assert (call.method, call.path, call.status) == ("POST", f"/{PAGE}/messages", 200)
    assert call.query == {"access_token": "page-token", "appsecret_proof": PROOF}
    assert call.body == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                         "message": {"text": "Bonjour 😀", "metadata": "relais:msg:7"}}


def test_send_message_with_human_agent_tag(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    meta.send_message(graph, CREDS, PSID, "Suite à votre demande", tag=meta.HUMAN_AGENT_TAG)
    body = fake_graph.requests[0].body
    assert body["messaging_type"] == "MESSAGE_TAG" and body["tag"] == "HUMAN_AGENT"
    assert "metadata" not in body["message"]


@pytest.mark.parametrize(("text", "metadata", "message"), [
    ("x" * 2000, None, "2000 characters"),
    ("😀" * 1000, None, "2000 characters"),  # counted as Meta does, two units per emoji
    ("", None, "empty"),
    ("   ", None, "empty"),
    ("ok", "k" * 1000, "metadata"),
])
def test_send_message_refuses_before_calling(graph: PlatformClient, fake_graph: fm.FakeMeta, text: str,
                                             metadata: str | None, message: str) -> None:
    with pytest.raises(PlatformError, match=message) as caught:
        meta.send_message(graph, CREDS, PSID, text, metadata=metadata)
    assert caught.value.retryable is False
    assert fake_graph.requests == []


def test_longest_accepted_text(graph: PlatformClient) -> None:
    assert meta.send_message(graph, CREDS, PSID, "x" * 1999).external_id.startswith("m_")


def test_private_reply_only_once(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    result = meta.send_private_reply(graph, CREDS, "123_456", "Je vous écris en privé")
    assert result.external_id.startswith("m_")
    assert fake_graph.requests[0].body["recipient"] == {"comment_id": "123_456"}
    with pytest.raises(PlatformError) as caught:
        meta.send_private_reply(graph, CREDS, "123_456", "encore")
    assert meta.is_already_replied(caught.value) and not caught.value.retryable
    assert meta.failure_reason(caught.value) == "already_replied"


def test_reply_to_comment(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    result = meta.reply_to_comment(graph, CREDS, "139560936744456_139620233405726", "Merci ! 🙏")
    assert result.external_id.startswith("139560936744456_")
    [call] = fake_graph.requests
    assert call.path == "/139560936744456_139620233405726/comments" and call.body == {"message": "Merci ! 🙏"}
    assert call.query["appsecret_proof"] == PROOF


@pytest.mark.parametrize(("action", "method", "suffix", "body"), [
    ("hide", "POST", "", {"is_hidden": True}),
    ("unhide", "POST", "", {"is_hidden": False}),
    ("delete", "DELETE", "", None),
    ("like", "POST", "/likes", None),
    ("unlike", "DELETE", "/likes", None),
])
def test_moderation(graph: PlatformClient, fake_graph: fm.FakeMeta, action: meta.ModerationAction,
                    method: str, suffix: str, body: dict[str, bool] | None) -> None:
    assert meta.moderate_comment(graph, CREDS, "1_2", action) is None
    [call] = fake_graph.requests
    assert (call.method, call.path, call.body, call.status) == (method, f"/1_2{suffix}", body, 200)
    assert call.query == {"access_token": "page-token", "appsecret_proof": PROOF}


def test_unknown_moderation_action(graph: PlatformClient) -> None:
    with pytest.raises(ValueError, match="ban"):
        meta.moderate_comment(graph, CREDS, "1_2", "ban")  # type: ignore[arg-type]


def test_ids_cannot_escape_their_path_segment(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    meta.moderate_comment(graph, CREDS, "1/likes?x=", "delete")
    assert fake_graph.requests[0].path == "/1%2Flikes%3Fx%3D"


def test_success_without_an_id_may_have_been_delivered(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    fake_graph.fail_next(1, http_status=200, body='{"recipient_id": "1"}')
    with pytest.raises(PlatformError, match="without message_id") as caught:
        meta.send_message(graph, CREDS, PSID, "hi")
    assert caught.value.maybe_delivered and not caught.value.retryable


def test_wrong_app_secret_is_refused_by_graph(graph: PlatformClient) -> None:
    creds = meta.MetaCredentials(page_id=PAGE, access_token="page-token", app_secret="not-it")
    with pytest.raises(PlatformError, match="appsecret_proof") as caught:
        meta.send_message(graph, creds, PSID, "hi")
    assert caught.value.code == 100 and not caught.value.retryable


def test_user_profile(graph: PlatformClient) -> None:
    psid = fm.psid_for(PAGE, 2)
    author = meta.get_user_profile(graph, CREDS, psid)
    assert author.external_id == psid and author.name == fm.PERSONAS[2].name
    assert author.avatar_url is not None and author.avatar_url.startswith("https://")


def test_user_profiles_in_one_batch_request(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    psids = [fm.psid_for(PAGE, k) for k in range(5)]
    authors = meta.get_user_profiles(graph, CREDS, psids)
    assert [a.external_id for a in authors if isinstance(a, Author)] == psids
    assert [a.name for a in authors if isinstance(a, Author)] == [fm.PERSONAS[k].name for k in range(5)]
    (call,) = fake_graph.requests  # one HTTP call, to the version root, with the page's token and proof
    assert (call.method, call.path, call.status) == ("POST", "", 200)
    assert call.body["access_token"] == "page-token" and call.body["appsecret_proof"] == PROOF
    assert call.body["include_headers"] == "false"
    assert [c["relative_url"] for c in json.loads(call.body["batch"])] == \
        [f"{psid}?fields=first_name,last_name,profile_pic" for psid in psids]


def test_a_batch_calls_own_failures_come_back_in_place(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    fake_graph.fail_next(1, code=613, in_batch=True)  # rate limited
    fake_graph.fail_next(1, code=100, in_batch=True)  # no such user
    fake_graph.fail_next(1, unfinished=True)          # null: Graph did not finish it
    psids = [fm.psid_for(PAGE, k) for k in range(4)]
    limited, refused, unfinished, found = meta.get_user_profiles(graph, CREDS, psids)
    assert isinstance(limited, PlatformError) and limited.code == 613 and limited.retryable
    assert isinstance(refused, PlatformError) and refused.code == 100 and not refused.retryable
    assert isinstance(unfinished, PlatformError) and unfinished.retryable
    assert isinstance(found, Author) and found.name == fm.PERSONAS[3].name


def test_a_failed_batch_request_raises(graph: PlatformClient, fake_graph: fm.FakeMeta) -> None:
    fake_graph.fail_next(1, code=4)
    with pytest.raises(PlatformError) as caught:
        meta.get_user_profiles(graph, CREDS, [fm.psid_for(PAGE, 0), fm.psid_for(PAGE, 1)])
    assert caught.value.code == 4 and caught.value.retryable
    with pytest.raises(ValueError):
        meta.get_user_profiles(graph, CREDS, [f"psid-{k}" for k in range(meta.GRAPH_BATCH_LIMIT + 1)])
    # Graph itself refuses more than 50 calls in a batch
    too_many = json.dumps([{"method": "GET", "relative_url": f"psid-{k}"} for k in range(51)])
    with pytest.raises(PlatformError, match="Maximum batch size is 50"):
        graph.request("POST", "", data={"access_token": "page-token", "appsecret_proof": PROOF, "batch": too_many})


def test_an_answer_that_is_not_the_batchs_array_is_retryable() -> None:
    class Answers:
        def __init__(self, answer: Any) -> None:
            self.answer = answer

        def request(self, *_args: Any, **_kwargs: Any) -> Any:
            return self.answer

    for answer in ({"data": [None]}, {"data": "nope"}, {}):
        with pytest.raises(PlatformError) as caught:
            meta.get_user_profiles(Answers(answer), CREDS, ["a", "b"])  # type: ignore[arg-type]
        assert caught.value.retryable
    odd = meta.get_user_profiles(Answers({"data": [{"code": 200, "body": "not json"}, {"code": 502}]}),  # type: ignore[arg-type]
                                 CREDS, ["a", "b"])
    assert all(isinstance(a, PlatformError) for a in odd)
    assert [a.retryable for a in odd if isinstance(a, PlatformError)] == [False, True]


@pytest.mark.parametrize(("code", "subcode", "http_status", "reason", "retryable"), [
    (10, 2018278, 400, "outside_window", False),
    (613, None, 400, "rate_limited", True),
    (4, None, 400, "rate_limited", True),
    (32, None, 400, "rate_limited", True),
    (2, None, 500, "transient", True),
    (190, None, 400, "token_invalid", False),
    (551, None, 400, "recipient_unavailable", False),
    (200, None, 403, "permission_denied", False),
    (100, None, 400, "rejected", False),
])
def test_graph_failures_are_classified(graph: PlatformClient, fake_graph: fm.FakeMeta, code: int,
                                       subcode: int | None, http_status: int, reason: str,
                                       retryable: bool) -> None:
    fake_graph.fail_next(1, code=code, subcode=subcode, http_status=http_status)
    with pytest.raises(PlatformError) as caught:
        meta.send_message(graph, CREDS, PSID, "hello")
    assert (caught.value.code, caught.value.subcode) == (code, subcode)
    assert caught.value.retryable is retryable
    assert meta.failure_reason(caught.value) == reason
    assert meta.send_message(graph, CREDS, PSID, "hello").external_id.startswith("m_")  # only n=1 failed


def test_error_helpers_on_messages_and_codes() -> None:
    assert meta.is_outside_window(PlatformError("(#10) This message is sent outside of allowed window."))
    assert not meta.is_outside_window(PlatformError("x", code=10))
    assert meta.is_permission_denied(PlatformError("x", code=10))
    assert not meta.is_permission_denied(PlatformError("x", code=10, subcode=2018278))
    assert meta.is_rate_limited(PlatformError("x", code=80007))
    assert meta.is_rate_limited(PlatformError("x", http_status=429))
    assert not meta.is_rate_limited(PlatformError("x", code=80015))


def test_appsecret_proof_matches_hmac_of_the_token() -> None:
    assert meta.appsecret_proof("app-secret", "page-token") == PROOF


# ----------------------------------------------------------------------------------------------------------
# The demo poster


def test_poster_posts_signed_payloads_the_adapter_reads(receiver) -> None:
    poster = fm.WebhookPoster(receiver.url, SECRET, [PAGE, PAGE2], rate_per_second=200, seed=7,
                              out=lambda line: None)
    assert poster.run(max_posts=12) == 12
    assert len(receiver.received) == 12
    kinds = set()
    for post in receiver.received:
        assert meta.verify(post.body, post.headers, [SECRET]) == SECRET
        [event] = meta.parse(post.body)
        assert event.route_key in (PAGE, PAGE2) and event.text
        kinds.add(event.kind)
        if event.kind == "message":
            assert event.thread_key in {f"dm:{fm.psid_for(event.route_key, i)}" for i in range(len(fm.PERSONAS))}
    assert kinds == {"message", "comment"}


def test_poster_retries_until_the_app_is_up(receiver) -> None:
    receiver.answer(503)
    lines: list[str] = []
    poster = fm.WebhookPoster(receiver.url, SECRET, [PAGE], retry_pause=0.01, out=lines.append)
    payload, description = poster.next_payload()
    assert poster.deliver(payload, description) is True
    assert len(receiver.received) == 2 and "HTTP 503" in lines[0] and "HTTP 200" in lines[1]


def test_poster_reports_an_unreachable_app(closed_port_url: str) -> None:
    lines: list[str] = []
    poster = fm.WebhookPoster(closed_port_url, SECRET, [PAGE], retry_pause=0.01, out=lines.append)
    assert poster.deliver(*poster.next_payload(), max_attempts=2) is False
    assert len(lines) == 2 and all("app unreachable" in line for line in lines)


def test_sends_come_back_as_echo_delivery_and_read(receiver) -> None:
    poster = fm.WebhookPoster(receiver.url, SECRET, [PAGE], receipt_pause=0.01, out=lambda line: None)
    with fm.FakeMeta(app_secret="app-secret", on_event=poster.on_fake_event) as fake:
        sent = meta.send_message(PlatformClient(fake.base_url), CREDS, PSID, "Bonjour", metadata="relais:9")
        deadline = time.monotonic() + 5
        while len(receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    events = [meta.parse(post.body)[0] for post in receiver.received]
    assert [(e.kind, e.status) for e in events] == [("echo", None), ("status", "delivered"), ("status", "read")]
    assert events[0].external_id == sent.external_id and events[0].extra["metadata"] == "relais:9"
    assert events[1].target_external_ids == [sent.external_id]
    assert all(e.thread_key == f"dm:{PSID}" for e in events)


def test_demo_personas_are_stable() -> None:
    assert fm.psid_for(PAGE, 3) == fm.psid_for(PAGE, 3) != fm.psid_for(PAGE2, 3)
    assert fm.persona_for_user_id(fm.psid_for(PAGE, 3)) == fm.PERSONAS[3]
    assert fm.persona_for_user_id(fm.commenter_id_for(5)) == fm.PERSONAS[5]
