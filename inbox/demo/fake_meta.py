"""A local fake of Meta for tests, benchmarks and the demo.

- `FakeMeta`: the Graph API endpoints our senders call (send API, comment replies, moderation, user
  profile, batch requests), on 127.0.0.1, recording every call and failing on demand.
- Payload builders (`messenger_message_payload`, `feed_comment_payload`, `page_entry`, `batch_payloads`...),
  `meta_json` (serialises like Meta: escaped unicode and slashes) and `sign_meta`.
- `WebhookPoster`: posts a steady stream of realistic signed webhooks (French and English customers, stable
  PSIDs so threads continue, comments under a few brand posts) to a Relais instance.

CLI (serves the fake Graph API and posts until killed):
    python -m inbox.demo.fake_meta --port 5055 --webhook-url http://127.0.0.1:5000/webhooks/meta \\
        --app-secret S --page-id P [--page-id P2] --rate 0.3

This module is a stand-in for Meta, so it deliberately shares no code with `adapters.meta`: a bug there
must not be mirrored here and go unnoticed.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import secrets
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import requests

GRAPH_VERSION = "v21.0"
BATCH_LIMIT = 50  # calls in one Graph batch request
DEFAULT_APP_ID = "1517776481860111"
MESSENGER_TEXT_LIMIT = 2000

# ----------------------------------------------------------------------------------------------------------
# Payload builders

def sign_meta(app_secret: str, raw_body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta sends: "sha256=<hex HMAC-SHA256(app_secret, raw body)>"."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


def meta_json(payload: Any) -> bytes:
    """Serialise like Meta does: compact, non-ASCII escaped (emoji as surrogate pairs), "/" escaped as "\\/"."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


def now_ms() -> int:
    return int(time.time() * 1000)


def new_mid() -> str:
    """A fresh Messenger message id, shaped like Meta's."""
    return "m_" + secrets.token_urlsafe(32)


def messaging_message(page_id: str, psid: str, text: str | None = None, *, mid: str | None = None,
                      ts_ms: int | None = None, attachments: Sequence[dict[str, Any]] | None = None,
                      quick_reply_payload: str | None = None, reply_to_mid: str | None = None) -> dict[str, Any]:
    """A messaging[] item: the customer `psid` wrote to the page."""
    message: dict[str, Any] = {"mid": mid or new_mid()}
    if text is not None:
        message["text"] = text
    if quick_reply_payload is not None:
        message["quick_reply"] = {"payload": quick_reply_payload}
    if reply_to_mid is not None:
        message["reply_to"] = {"mid": reply_to_mid, "is_self_reply": False}
    if attachments:
        message["attachments"] = list(attachments)
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms or now_ms(),
            "message": message}


def messaging_echo(page_id: str, psid: str, text: str | None, *, mid: str | None = None, ts_ms: int | None = None,
                   app_id: str | int | None = DEFAULT_APP_ID, metadata: str | None = None) -> dict[str, Any]:
    """A messaging[] echo: the page wrote to `psid` (through our app, or natively when app_id differs)."""
    message: dict[str, Any] = {"is_echo": True, "mid": mid or new_mid()}
    if app_id is not None:
        message["app_id"] = int(app_id)
    if metadata is not None:
        message["metadata"] = metadata
    if text is not None:
        message["text"] = text
    return {"sender": {"id": page_id}, "recipient": {"id": psid}, "timestamp": ts_ms or now_ms(),
            "message": message}


def messaging_postback(page_id: str, psid: str, title: str, payload: str, *, mid: str | None = None,
                       ts_ms: int | None = None) -> dict[str, Any]:
    """A messaging[] postback (button press); `mid=""` leaves the mid out, as older payloads do."""
    postback: dict[str, Any] = {"title": title, "payload": payload}
    if mid != "":
        postback["mid"] = mid or new_mid()
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms or now_ms(),
            "postback": postback}


def messaging_read(page_id: str, psid: str, watermark_ms: int, *, ts_ms: int | None = None) -> dict[str, Any]:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms or now_ms(),
            "read": {"watermark": watermark_ms}}


def messaging_delivery(page_id: str, psid: str, mids: Sequence[str], watermark_ms: int, *,
                       ts_ms: int | None = None) -> dict[str, Any]:
    delivery: dict[str, Any] = {"watermark": watermark_ms}
    if mids:
        delivery["mids"] = list(mids)
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms or now_ms(),
            "delivery": delivery}


def messaging_edit(page_id: str, psid: str, mid: str, text: str, num_edit: int = 1, *,
                   ts_ms: int | None = None) -> dict[str, Any]:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms or now_ms(),
            "message_edit": {"mid": mid, "text": text, "num_edit": num_edit}}


def messaging_reaction(page_id: str, psid: str, mid: str, reaction: str = "love", emoji: str = "\u2764\ufe0f",
                       action: str = "react", *, ts_ms: int | None = None) -> dict[str, Any]:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": ts_ms or now_ms(),
            "reaction": {"mid": mid, "action": action, "reaction": reaction, "emoji": emoji}}


def feed_comment_change(page_id: str, post_id: str, comment_id: str, from_id: str | None, from_name: str | None,
                        text: str | None, *, verb: str = "add", parent_id: str | None = None,
                        created_time: int | None = None, post_permalink: str | None = None,
                        post_message: str | None = None, photo: str | None = None) -> dict[str, Any]:
    """A changes[] item of field "feed", item "comment". A top-level comment has parent_id == post_id (the
    default); `from_id=None` leaves `from` out, as some remove events do; verb "remove" drops the text."""
    value: dict[str, Any] = {
        "item": "comment", "verb": verb, "comment_id": comment_id, "post_id": post_id,
        "parent_id": parent_id or post_id, "created_time": created_time or int(time.time()),
        "post": {"id": post_id, "status_type": "added_photos", "is_published": True,
                 "updated_time": _iso_now(),
                 "permalink_url": post_permalink or f"https://www.facebook.com/{page_id}/posts/{post_id}"},
    }
    if from_id is not None:
        value["from"] = {"id": from_id, **({"name": from_name} if from_name is not None else {})}
    if text is not None and verb != "remove":
        value["message"] = text
    if post_message is not None:
        value["post"]["message"] = post_message
    if photo:
        value["photo"] = photo
    return {"field": "feed", "value": value}


def feed_item_change(item: str, verb: str = "add", **value: Any) -> dict[str, Any]:
    """Any other feed change (reaction, like, status, post, share, photo, video...)."""
    return {"field": "feed", "value": {"item": item, "verb": verb, "created_time": int(time.time()), **value}}


def page_entry(page_id: str, *, messaging: Iterable[dict[str, Any]] = (), changes: Iterable[dict[str, Any]] = (),
               standby: Iterable[dict[str, Any]] = (), time_value: int | None = None) -> dict[str, Any]:
    """One entry of a page; `time` defaults to now, in ms for messaging entries and seconds for feed ones."""
    entry: dict[str, Any] = {"id": page_id}
    messaging, changes, standby = list(messaging), list(changes), list(standby)
    entry["time"] = time_value if time_value is not None else (
        now_ms() if messaging or standby else int(time.time()))
    if messaging:
        entry["messaging"] = messaging
    if standby:
        entry["standby"] = standby
    if changes:
        entry["changes"] = changes
    return entry


def page_payload(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "page", "entry": list(entries)}


def batch_payloads(*payloads: dict[str, Any]) -> dict[str, Any]:
    """One body carrying the entries of several payloads (Meta batches entries, across pages too)."""
    return page_payload(*(entry for payload in payloads for entry in payload["entry"]))


def messenger_message_payload(page_id: str, psid: str, text: str | None, mid: str | None = None,
                              ts_ms: int | None = None, **message_fields: Any) -> dict[str, Any]:
    """A whole webhook body with one customer message; `message_fields` go to `messaging_message`."""
    item = messaging_message(page_id, psid, text, mid=mid, ts_ms=ts_ms, **message_fields)
    return page_payload(page_entry(page_id, messaging=[item]))


def feed_comment_payload(page_id: str, post_id: str, comment_id: str, from_id: str | None,
                         from_name: str | None, text: str | None, **comment_fields: Any) -> dict[str, Any]:
    """A whole webhook body with one feed comment change; `comment_fields` go to `feed_comment_change`."""
    change = feed_comment_change(page_id, post_id, comment_id, from_id, from_name, text, **comment_fields)
    return page_payload(page_entry(page_id, changes=[change]))


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


# ----------------------------------------------------------------------------------------------------------
# Demo content: stable people, brand posts, things customers say

@dataclass(frozen=True)
class Persona:
    first_name: str
    last_name: str
    language: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


PERSONAS: tuple[Persona, ...] = (
    Persona("Camille", "Dubois", "fr"), Persona("Lucas", "Martin", "fr"), Persona("Chloé", "Bernard", "fr"),
    Persona("Hugo", "Lefèvre", "fr"), Persona("Léa", "Moreau", "fr"), Persona("Nathan", "Girard", "fr"),
    Persona("Inès", "Haddad", "fr"), Persona("Thomas", "Petit", "fr"), Persona("Sarah", "Johnson", "en"),
    Persona("James", "Miller", "en"), Persona("Olivia", "Brown", "en"), Persona("Yasmine", "Benali", "ar"),
    Persona("Noa", "Cohen", "he"), Persona("Zoé", "Fontaine", "fr"),
)

DM_TEXTS: dict[str, tuple[str, ...]] = {
    "fr": (
        "Bonjour, ma commande n°{order} n'est toujours pas arrivée 😕 vous pouvez vérifier ?",
        "Bonjour ! Le colis est indiqué livré mais je n'ai rien reçu…",
        "Salut, est-ce que je peux encore modifier l'adresse de livraison ? 🙏",
        "Je voudrais me faire rembourser la commande {order}, l'article est arrivé cassé 😡",
        "Ça fait 3 semaines que j'attends mon remboursement. C'est inadmissible !!! 😤",
        "Merci beaucoup pour votre réactivité, super service 👏😊",
        "Vous avez un magasin à Lyon ? Ouvert le dimanche ?",
        "Quel est le prix du pull en laine bleu en taille M ? 💙",
        "Est-ce que la taille 38 sera bientôt de nouveau en stock ?",
        "Bonjour, le code promo BIENVENUE10 ne fonctionne pas 🤔",
        "Trois appels au SAV et toujours aucune réponse. Je vais porter plainte.",
        "Top, j'ai bien reçu le colis, tout est parfait 🎉",
        "Bonsoir, vous livrez en Belgique ? 🇧🇪",
        "J'ai reçu la mauvaise couleur 😩 comment je fais pour l'échange ?",
    ),
    "en": (
        "Hi, my order #{order} still hasn't shipped. Any update? 📦",
        "Hello! Do you ship to the UK? 🇬🇧",
        "I was charged twice for the same order 😠 please fix this ASAP",
        "Just got my package, love it!! ❤️😍",
        "What time does the Paris store close on Saturdays?",
        "Is the blue sweater available in size L? How much is it?",
        "Still waiting for my refund after 2 weeks. This is ridiculous.",
        "Thanks for the quick answer, you guys rock 🙌",
    ),
    "ar": (
        "مرحبا، طلبي رقم {order} لم يصل بعد 😕",
        "Bonjour, est-ce que vous avez la taille 40 ? شكرا 🙏",
    ),
    "he": (
        "שלום, ההזמנה שלי {order} עדיין לא הגיעה 😕",
        "Hi! תודה רבה, the delivery was fast 👍",
    ),
}

COMMENT_TEXTS: dict[str, tuple[str, ...]] = {
    "fr": (
        "Trop beau 😍 c'est dispo en magasin ?", "Prix ?", "Toujours pas reçu ma commande... 😤",
        "Livraison en combien de temps ?", "J'adore cette collection 🔥🔥", "Ça existe en rouge ?",
        "Service client inexistant, je déconseille 👎", "@Camille Dubois regarde ça 👀",
        "C'est quand les soldes ? 😅", "Magnifique 💕",
    ),
    "en": (
        "How much is this? 😍", "Do you ship internationally?", "Still no answer to my DM...",
        "Love it!! 🔥", "Available in XL?",
    ),
    "ar": ("جميل جدا 😍 كم السعر؟",),
    "he": ("מהמם! 😍 יש במידה M?",),
}

BRAND_POSTS: tuple[str, ...] = (
    "🌸 Nouvelle collection printemps : découvrez nos pulls en laine légère !",
    "Black Friday : -30 % sur tout le site jusqu'à dimanche minuit 🛍️",
    "Notre boutique de Lyon rouvre ses portes samedi ! On vous attend 🎉",
    "Concours 🎁 : tentez de gagner un bon d'achat de 100 € en commentant ce post !",
)


def _digits(seed: str, count: int) -> str:
    return str(int(hashlib.sha256(seed.encode("utf-8")).hexdigest(), 16))[:count].rjust(count, "0")


def psid_for(page_id: str, persona_index: int) -> str:
    """The stable page-scoped id of a demo persona on a page: 16 digits, ending with the persona index."""
    return f"7{_digits(page_id, 12)}{persona_index:03d}"


def commenter_id_for(persona_index: int) -> str:
    return f"1{_digits(PERSONAS[persona_index].name, 12)}{persona_index:03d}"


def persona_for_user_id(user_id: str) -> Persona | None:
    """The persona behind a demo PSID or commenter id, if it is one."""
    if len(user_id) == 16 and user_id.isdigit() and int(user_id[-3:]) < len(PERSONAS):
        return PERSONAS[int(user_id[-3:])]
    return None


def post_ids_for(page_id: str) -> list[str]:
    return [f"{page_id}_{_digits(page_id + str(index), 15)}" for index in range(len(BRAND_POSTS))]


# ----------------------------------------------------------------------------------------------------------
# The fake Graph API

@dataclass(frozen=True)
class RecordedRequest:
    """One call the fake received. `path` is relative to `FakeMeta.base_url` (e.g. "/PAGE_ID/messages")."""
    method: str
    path: str
    query: dict[str, str]
    body: Any           # decoded JSON, a dict for forms, text otherwise; None when empty
    status: int         # what the fake answered

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Failure:
    code: int
    http_status: int
    message: str
    subcode: int | None
    error_type: str
    retry_after: float | None
    body: str | None
    delay: float
    unfinished: bool = False  # a batch call Graph did not finish: null in the batch's answer


DEFAULT_ERROR_MESSAGES: dict[int, str] = {
    1: "An unknown error has occurred.",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    10: "(#10) This message is sent outside of allowed window.",
    32: "(#32) Page request limit reached",
    100: "(#100) Invalid parameter",
    190: "Error validating access token: The session has been invalidated because the user changed their "
         "password or Facebook has changed the session for security reasons.",
    551: "(#551) This person isn't available right now.",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    10900: "Activity already replied to",
}

# (status, JSON body, or raw text sent as HTML, headers)
Answer = tuple[int, dict[str, Any] | list[Any] | str, dict[str, str]]
SendListener = Callable[[str, dict[str, Any]], None]


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 refuses connections when many senders call at once (benchmarks,
    # concurrent tests on a loaded machine); Graph itself never does
    request_queue_size = 256
    connections = 0  # TCP connections accepted (HTTP/1.1 keep-alive: one carries many calls, as with Graph)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1  # the serving thread alone accepts
        super().process_request(request, client_address)


class FakeMeta:
    """A fake Graph API on `host`, port `port` (0: any free port), serving in a daemon thread from creation.

    `base_url` is e.g. "http://127.0.0.1:PORT/v21.0". Every Graph call is checked for access_token and
    appsecret_proof (and the proof's value when `app_secret` is given) and recorded in `requests`.
    `on_event(kind, details)` is told about sends ("message_sent", "comment_reply") so the demo can post the
    echoes Meta would. Control endpoints: GET /_fake/requests, POST /_fake/reset, POST /_fake/fail (JSON
    with the arguments of `fail_next`), POST /_fake/latency ({"seconds": s}, `set_latency`). Thread-safe. Use
    as a context manager or call `stop()`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, graph_version: str = GRAPH_VERSION,
                 app_secret: str | None = None, on_event: SendListener | None = None,
                 log: Callable[[str], None] | None = None):
        self.graph_version = graph_version
        self.app_secret = app_secret
        self.on_event = on_event
        self.log = log
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._item_failures: deque[_Failure] = deque()  # the next calls inside batch requests
        self._privately_replied: set[str] = set()
        self._counter = 0
        self.latency = 0.0
        self._server = _Server((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-meta", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/{self.graph_version}"

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (a client that keeps its connection alive opens one)."""
        return self._server.connections

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the Graph calls received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def profile_lookups(self) -> list[str]:
        """The user ids whose profile was asked so far, in order: by a GET of their own or inside a batch request."""
        return [user for r in self.requests for user in profiles_asked(r.method, r.path, r.body)]

    def fail_next(self, n: int = 1, code: int = 613, http_status: int = 400, message: str | None = None, *,
                  subcode: int | None = None, error_type: str = "OAuthException", retry_after: float | None = None,
                  body: str | None = None, delay: float = 0.0, in_batch: bool = False,
                  unfinished: bool = False) -> None:
        """Make the next `n` Graph calls fail with a Graph error envelope of `code`/`subcode`.

        e.g. rate limits (613, 4, 32), transient (2, http_status=500), outside the window (10,
        subcode=2018278). `retry_after` adds a Retry-After header; `body` replaces the JSON envelope with
        that raw text (an HTML proxy page...); `delay` sleeps first (for client timeouts). `in_batch`: the next
        `n` calls inside batch requests instead (each answers its failure in the batch's array; with
        `unfinished`, null, as for a call Graph did not finish).
        """
        failure = _Failure(code, http_status, message or DEFAULT_ERROR_MESSAGES.get(code, f"(#{code}) Error"),
                           subcode, error_type, retry_after, body, delay, unfinished)
        with self._lock:
            (self._item_failures if in_batch or unfinished else self._failures).extend([failure] * n)

    def set_latency(self, seconds: float) -> None:
        """Answer every Graph call `seconds` late from now on, as a real platform does (hundreds of milliseconds;
        the fake otherwise answers in about one). Each call waits on its own connection's thread."""
        self.latency = max(0.0, float(seconds))

    def reset(self) -> None:
        """Forget recorded calls, pending failures, which comments were privately answered, and the latency."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._item_failures.clear()
            self._privately_replied.clear()
            self.latency = 0.0

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- request handling (called from the server's threads)

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[Answer, float]:
        """Answer one HTTP call; returns ((status, json body, headers), seconds to wait before answering)."""
        url = urlsplit(raw_path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path.startswith("/_fake/"):
            return self._control(method, url.path, body), 0.0
        prefix = f"/{self.graph_version}"
        versioned = url.path == prefix or url.path.startswith(prefix + "/")  # the root: batch requests
        path = url.path[len(prefix):] if versioned else url.path
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            answer, delay = _failure_answer(failure), failure.delay
        elif not versioned:
            answer, delay = _graph_error(100, f"Unknown path components: {url.path}", http_status=404), 0.0
        else:
            answer, delay = self._graph(method, path, query, body), 0.0
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, body, answer[0]))
        if self.log:
            self.log(f"graph {method} {path} -> {answer[0]}")
        return answer, delay + self.latency

    def _control(self, method: str, path: str, body: Any) -> Answer:
        if method == "GET" and path == "/_fake/requests":
            return 200, {"requests": [request.as_dict() for request in self.requests]}, {}
        if method == "POST" and path == "/_fake/reset":
            self.reset()
            return 200, {"success": True}, {}
        if method == "POST" and path == "/_fake/fail":
            try:
                self.fail_next(**(body if isinstance(body, dict) else {}))
            except TypeError as exc:
                return 400, {"error": {"message": f"bad fail_next arguments: {exc}"}}, {}
            return 200, {"success": True}, {}
        if method == "POST" and path == "/_fake/latency":
            try:
                self.set_latency((body if isinstance(body, dict) else {})["seconds"])
            except (KeyError, TypeError, ValueError) as exc:
                return 400, {"error": {"message": f"bad latency: {exc!r}"}}, {}
            return 200, {"latency": self.latency}, {}
        return 404, {"error": {"message": f"unknown control endpoint {method} {path}"}}, {}

    def _graph(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        params = {**query, **(body if isinstance(body, dict) else {})}
        refusal = self._check_auth(params)
        if refusal is not None:
            return refusal
        segments = [segment for segment in path.split("/") if segment]
        if method == "POST" and not segments and "batch" in params:
            return self._batch(params)
        if method == "POST" and len(segments) == 2 and segments[1] == "messages":
            return self._send_api(segments[0], params)
        if method == "POST" and len(segments) == 2 and segments[1] == "comments":
            return self._reply_to_comment(segments[0], params)
        if method in ("POST", "DELETE") and len(segments) == 2 and segments[1] == "likes":
            return 200, {"success": True}, {}
        if method == "POST" and len(segments) == 1:
            if "is_hidden" not in params:
                return _graph_error(100, "(#100) No fields to update", error_type="GraphMethodException")
            return 200, {"success": True}, {}
        if method == "DELETE" and len(segments) == 1:
            return 200, {"success": True}, {}
        if method == "GET" and len(segments) == 1:
            return 200, _profile(segments[0]), {}
        return _graph_error(100, f"Unsupported {method.lower()} request. Object with ID "
                                 f"'{segments[0] if segments else ''}' does not exist or does not support "
                                 "this operation", subcode=33, error_type="GraphMethodException")

    def _batch(self, params: dict[str, Any]) -> Answer:
        """A Graph batch request: each call of the `batch` JSON array ({"method", "relative_url"}) answered as the
        fake answers it alone, with the request's access token and proof; the answer is an array in the same
        order of {"code", "body": the call's JSON as a string} (`include_headers=false`), a call failed by
        `fail_next(..., in_batch=True)` answering its failure, and null for one failed with `unfinished=True`."""
        try:
            calls = json.loads(str(params["batch"]))
        except ValueError:
            calls = None
        if not isinstance(calls, list) or not calls:
            return _graph_error(100, "(#100) The parameter batch is required and must be a JSON array")
        if len(calls) > BATCH_LIMIT:
            return _graph_error(100, f"(#100) Too many requests in batch message. Maximum batch size is {BATCH_LIMIT}")
        auth = {key: params[key] for key in ("access_token", "appsecret_proof") if key in params}
        answers: list[dict[str, Any] | None] = []
        for call in calls:
            with self._lock:
                failure = self._item_failures.popleft() if self._item_failures else None
            if failure is not None and failure.unfinished:
                answers.append(None)
                continue
            if failure is not None:
                status, body, _headers = _failure_answer(failure)
            elif not isinstance(call, dict) or not isinstance(call.get("relative_url"), str):
                status, body, _headers = _graph_error(100, "(#100) Each batch call needs a relative_url")
            else:
                url = urlsplit("/" + call["relative_url"].lstrip("/"))
                query = {**auth, **dict(parse_qsl(url.query, keep_blank_values=True))}
                status, body, _headers = self._graph(str(call.get("method") or "GET").upper(), url.path, query, None)
            answers.append({"code": status, "body": body if isinstance(body, str) else json.dumps(body)})
        return 200, answers, {}

    def _check_auth(self, params: dict[str, Any]) -> Answer | None:
        token, proof = params.get("access_token"), params.get("appsecret_proof")
        if not token:
            return _graph_error(2500, "An active access token must be used to query information about the "
                                      "current user.")
        if not proof:
            return _graph_error(100, "API calls from the server require an appsecret_proof argument",
                                error_type="GraphMethodException")
        if self.app_secret is not None:
            expected = hmac.new(self.app_secret.encode(), str(token).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, str(proof)):
                return _graph_error(100, "Invalid appsecret_proof provided in the API argument",
                                    error_type="GraphMethodException")
        return None

    def _send_api(self, page_id: str, params: dict[str, Any]) -> Answer:
        recipient, message = _json_field(params.get("recipient")), _json_field(params.get("message"))
        if not isinstance(recipient, dict) or not (recipient.get("id") or recipient.get("comment_id")):
            return _graph_error(100, "(#100) The parameter recipient is required")
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            return _graph_error(100, "(#100) The parameter message is required")
        text = message.get("text") or ""
        if len(text) > MESSENGER_TEXT_LIMIT:
            return _graph_error(100, "(#100) Length of param message[text] must be less than or equal to 2000")
        if params.get("messaging_type") == "MESSAGE_TAG" and not params.get("tag"):
            return _graph_error(100, "(#100) Tag is required for MESSAGE_TAG messaging type")
        comment_id = recipient.get("comment_id")
        if comment_id:
            with self._lock:
                already = comment_id in self._privately_replied
                self._privately_replied.add(comment_id)
            if already:
                return _graph_error(10900, DEFAULT_ERROR_MESSAGES[10900])
        psid = str(recipient.get("id") or f"7{_digits(str(comment_id), 15)}")
        mid = new_mid()
        self._notify("message_sent", {"page_id": page_id, "psid": psid, "text": text, "mid": mid,
                                      "metadata": message.get("metadata"), "comment_id": comment_id})
        return 200, {"recipient_id": psid, "message_id": mid}, {}

    def _reply_to_comment(self, comment_id: str, params: dict[str, Any]) -> Answer:
        text = params.get("message")
        if not text:
            return _graph_error(100, "(#100) The parameter message is required")
        with self._lock:
            self._counter += 1
            reply_id = f"{comment_id.split('_')[0]}_{9000000000000000 + self._counter}"
        self._notify("comment_reply", {"comment_id": comment_id, "reply_id": reply_id, "text": text})
        return 200, {"id": reply_id}, {}

    def _notify(self, kind: str, details: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(kind, details)


def profiles_asked(method: str, path: str, body: Any) -> list[str]:
    """The user ids whose profile one Graph call asks (`path` after the version): a GET of one object, or each GET
    of a batch request's `batch`; [] for any other call."""
    segments = [segment for segment in path.split("/") if segment]
    if method == "GET" and len(segments) == 1:
        return segments
    if method != "POST" or segments or not isinstance(body, dict) or "batch" not in body:
        return []
    try:
        calls = json.loads(str(body["batch"]))
    except ValueError:
        return []
    return [urlsplit(call["relative_url"]).path.strip("/") for call in (calls if isinstance(calls, list) else [])
            if isinstance(call, dict) and isinstance(call.get("relative_url"), str)
            and str(call.get("method") or "GET").upper() == "GET"]


def _profile(user_id: str) -> dict[str, Any]:
    persona = persona_for_user_id(user_id)
    first, last = (persona.first_name, persona.last_name) if persona else ("Client", user_id[-4:])
    return {"first_name": first, "last_name": last, "id": user_id,
            "profile_pic": f"https://example.invalid/avatars/{user_id}.jpg"}


def _json_field(value: Any) -> Any:
    """Graph takes recipient/message as objects in JSON bodies and as JSON strings in forms."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _graph_error(code: int, message: str, *, subcode: int | None = None, error_type: str = "OAuthException",
                 http_status: int = 400) -> Answer:
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code,
                             "fbtrace_id": secrets.token_urlsafe(8)}
    if subcode is not None:
        error["error_subcode"] = subcode
    return http_status, {"error": error}, {}


def _failure_answer(failure: _Failure) -> Answer:
    headers = {} if failure.retry_after is None else {"Retry-After": f"{failure.retry_after:g}"}
    if failure.body is not None:
        return failure.http_status, failure.body, headers
    status, body, _ = _graph_error(failure.code, failure.message, subcode=failure.subcode,
                                   error_type=failure.error_type, http_status=failure.http_status)
    return status, body, headers


def _handler_class(fake: FakeMeta) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeMeta/1"
        # Graph keeps connections alive (HTTP/1.1): every answer has a Content-Length, so a client's next call
        # can reuse the connection; an idle one is closed after `timeout` seconds
        protocol_version = "HTTP/1.1"
        timeout = 30
        # the headers and the body leave in two writes: without TCP_NODELAY, on a kept-alive connection the body
        # waits for the client's delayed ACK of the headers (~40 ms a call)
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def _answer(self, method: str) -> None:
            (status, body, headers), delay = fake.handle(method, self.path, self._body())
            if delay:
                time.sleep(delay)
            if isinstance(body, str):
                data, content_type = body.encode("utf-8"), "text/html; charset=utf-8"
            else:
                data, content_type = json.dumps(body).encode("utf-8"), "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests): nothing to answer

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            content_type = self.headers.get("Content-Type", "")
            text = raw.decode("utf-8", errors="replace")
            if "application/x-www-form-urlencoded" in content_type:
                return dict(parse_qsl(text, keep_blank_values=True))
            try:
                return json.loads(text)
            except ValueError:
                return text

        def log_message(self, format: str, *args: Any) -> None:
            pass  # FakeMeta(log=...) reports calls; the default stderr lines would flood test output

    return Handler


# ----------------------------------------------------------------------------------------------------------
# The webhook poster

@dataclass
class _Comment:
    page_id: str
    post_id: str
    comment_id: str
    persona_index: int


@dataclass
class WebhookPoster:
    """Posts realistic signed Meta webhooks to `webhook_url` at `rate_per_second`.

    The same personas come back (stable PSIDs per page, stable commenter ids) so conversations continue;
    comments go under the brand posts of `post_ids_for(page_id)` and sometimes answer an earlier comment.
    `run()` tolerates the app not being up yet: it retries each post (network errors, 5xx, 429) with a
    growing pause, and prints one line per post through `out`.
    """
    webhook_url: str
    app_secret: str
    page_ids: Sequence[str]
    rate_per_second: float = 0.3
    comment_share: float = 0.35
    seed: int | None = None
    timeout: float = 5.0
    retry_pause: float = 0.5      # first pause between attempts; doubles, at most 10 s
    receipt_pause: float = 1.0    # between an echo and its delivery receipt, and again before the read
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        if not self.page_ids:
            raise ValueError("at least one page id is needed")
        if self.rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self._random = random.Random(self.seed)
        self._comments: deque[_Comment] = deque(maxlen=200)
        self._comments_lock = threading.Lock()
        self._stop = threading.Event()
        self._order = 1000

    # --- building

    def next_payload(self) -> tuple[dict[str, Any], str]:
        """The next random event as (payload, one-line description)."""
        page_id = self._random.choice(list(self.page_ids))
        persona_index = self._random.randrange(len(PERSONAS))
        if self._random.random() < self.comment_share:
            return self._comment_payload(page_id, persona_index)
        persona = PERSONAS[persona_index]
        text = self._say(DM_TEXTS, persona.language)
        payload = messenger_message_payload(page_id, psid_for(page_id, persona_index), text)
        return payload, f"DM      page={page_id} {persona.name}: {text}"

    def _comment_payload(self, page_id: str, persona_index: int) -> tuple[dict[str, Any], str]:
        persona = PERSONAS[persona_index]
        text = self._say(COMMENT_TEXTS, persona.language)
        with self._comments_lock:
            earlier = [c for c in self._comments if c.page_id == page_id and c.persona_index != persona_index]
        parent = self._random.choice(earlier) if earlier and self._random.random() < 0.2 else None
        post_id = parent.post_id if parent else self._random.choice(post_ids_for(page_id))
        post_index = post_ids_for(page_id).index(post_id)
        comment_id = f"{post_id.split('_')[1]}_{_digits(secrets.token_hex(8), 15)}"
        payload = feed_comment_payload(
            page_id, post_id, comment_id, commenter_id_for(persona_index), persona.name, text,
            parent_id=parent.comment_id if parent else None, post_message=BRAND_POSTS[post_index])
        with self._comments_lock:
            self._comments.append(_Comment(page_id, post_id, comment_id, persona_index))
        kind = "REPLY  " if parent else "COMMENT"
        return payload, f"{kind} page={page_id} post=…{post_id[-4:]} {persona.name}: {text}"

    def _say(self, pool: dict[str, tuple[str, ...]], language: str) -> str:
        # mostly the persona's language, sometimes French (the brand's market)
        texts = pool[language] if self._random.random() < 0.8 else pool["fr"]
        self._order += self._random.randrange(1, 7)
        return self._random.choice(texts).format(order=f"FR{self._order:06d}")

    # --- posting

    def post(self, payload: dict[str, Any]) -> int | None:
        """Sign and post once; the HTTP status, or None when the app could not be reached."""
        raw_body = meta_json(payload)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_meta(self.app_secret, raw_body),
                   "User-Agent": "facebookexternalua"}
        try:
            response = self.session.post(self.webhook_url, data=raw_body, headers=headers, timeout=self.timeout)
        except requests.RequestException:
            return None
        return response.status_code

    def deliver(self, payload: dict[str, Any], description: str, *, max_attempts: int | None = None) -> bool:
        """Post until the app answers 2xx (True), refuses with another 4xx (False), `max_attempts` is
        reached or the poster is stopped (False). Prints a line per attempt."""
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            started = time.monotonic()
            status = self.post(payload)
            took = f"{(time.monotonic() - started) * 1000:.0f} ms"
            outcome = "app unreachable" if status is None else f"HTTP {status}"
            self.out(f"{datetime.now().strftime('%H:%M:%S')} {description[:110]} -> {outcome} ({took})")
            if status is not None and 200 <= status < 300:
                return True
            if status is not None and 400 <= status < 500 and status != 429:
                return False
            if max_attempts is not None and attempt >= max_attempts:
                return False
            self._stop.wait(min(10.0, self.retry_pause * 2 ** min(attempt - 1, 5)))
        return False

    def run(self, *, max_posts: int | None = None) -> int:
        """Post at a steady rate until `stop()` (or `max_posts` posts); returns how many were delivered."""
        interval, delivered, posted = 1.0 / self.rate_per_second, 0, 0
        next_at = time.monotonic()
        while not self._stop.is_set() and (max_posts is None or posted < max_posts):
            payload, description = self.next_payload()
            delivered += self.deliver(payload, description)
            posted += 1
            next_at = max(next_at + interval, time.monotonic())
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        return delivered

    def stop(self) -> None:
        self._stop.set()

    # --- what Meta sends back after our own sends

    def on_fake_event(self, kind: str, details: dict[str, Any]) -> None:
        """FakeMeta listener: post the echo (then delivery and read receipts) Meta sends after a send."""
        if kind == "message_sent" and not details.get("comment_id"):
            threading.Thread(target=self._echo_message, args=(details,), daemon=True).start()
        elif kind == "comment_reply":
            threading.Thread(target=self._echo_comment_reply, args=(details,), daemon=True).start()

    def _echo_message(self, sent: dict[str, Any]) -> None:
        page_id, psid, mid = sent["page_id"], sent["psid"], sent["mid"]
        echo = messaging_echo(page_id, psid, sent["text"], mid=mid, metadata=sent.get("metadata"))
        self.deliver(page_payload(page_entry(page_id, messaging=[echo])), f"ECHO    page={page_id} to {psid}",
                     max_attempts=5)
        if self._stop.wait(self.receipt_pause):
            return
        delivery = messaging_delivery(page_id, psid, [mid], now_ms())
        self.deliver(page_payload(page_entry(page_id, messaging=[delivery])), f"DELIVERY page={page_id} {psid}",
                     max_attempts=5)
        if self._stop.wait(self.receipt_pause):
            return
        read = messaging_read(page_id, psid, now_ms())
        self.deliver(page_payload(page_entry(page_id, messaging=[read])), f"READ     page={page_id} {psid}",
                     max_attempts=5)

    def _echo_comment_reply(self, reply: dict[str, Any]) -> None:
        with self._comments_lock:
            parent = next((c for c in self._comments if c.comment_id == reply["comment_id"]), None)
        if parent is None:
            return  # not one of ours: we do not know its post
        payload = feed_comment_payload(parent.page_id, parent.post_id, reply["reply_id"], parent.page_id,
                                       "Brand", reply["text"], parent_id=parent.comment_id)
        self.deliver(payload, f"PAGE    page={parent.page_id} reply {reply['reply_id']}", max_attempts=5)


# ----------------------------------------------------------------------------------------------------------
# CLI

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inbox.demo.fake_meta", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--graph-version", default=GRAPH_VERSION)
    parser.add_argument("--webhook-url", help="post webhooks here; without it only the Graph API is served")
    parser.add_argument("--app-secret", help="signs webhooks and checks appsecret_proof")
    parser.add_argument("--page-id", action="append", default=[], dest="page_ids")
    parser.add_argument("--rate", type=float, default=0.3, help="webhooks per second")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if args.webhook_url and (not args.app_secret or not args.page_ids):
        parser.error("--webhook-url needs --app-secret and at least one --page-id")

    poster = WebhookPoster(args.webhook_url, args.app_secret, args.page_ids, args.rate,
                           seed=args.seed) if args.webhook_url else None
    fake = FakeMeta(args.host, args.port, graph_version=args.graph_version, app_secret=args.app_secret,
                    on_event=poster.on_fake_event if poster else None, log=lambda line: print(line, flush=True))
    stopped = threading.Event()

    def shut_down(*_: object) -> None:
        stopped.set()
        if poster:
            poster.stop()

    signal.signal(signal.SIGTERM, shut_down)
    print(f"fake Graph API at {fake.base_url}", flush=True)
    try:
        if poster:
            print(f"posting to {args.webhook_url} at {args.rate}/s for pages {', '.join(args.page_ids)}", flush=True)
            poster.run()
        else:
            stopped.wait()
    except KeyboardInterrupt:
        shut_down()
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
