"""Demo conversations for a new installation: what `flask bootstrap` (so `make run` on an empty database) puts in
the queue, so the console shows a CM's morning instead of an empty inbox.

Every message arrives the way live traffic does: a Meta webhook body signed with the demo page's app secret,
POSTed to the app's own `/webhooks/meta` (signature checked over the raw bytes, stored, acknowledged), then
drained by the ingest service. The customers wrote minutes or hours ago (the webhooks carry those times), so the
SLA clocks of the demo policy are running, near their warning or already breached. Replies written before are
the page's own messages coming back as echoes, as when a teammate answered from Meta Business Suite.

Messenger webhooks carry no names (Relais looks them up on the Graph API, which `make run` cannot reach), so the
demo stores the names a lookup would have found, the way the lookup stores them (`profiles.store_names`).
Then an administrator triages a few: assigns, hands one over to after-sales, labels, resolves one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from inbox.db import db
from inbox.demo.fake_meta import (BRAND_POSTS, PERSONAS, commenter_id_for, feed_comment_payload, messaging_echo,
                                  messaging_message, meta_json, page_entry, page_payload, post_ids_for, psid_for,
                                  sign_meta)
from inbox.models import Agent, ContactIdentity, Message, Team, WebhookEvent
from inbox.services import conversations, handoff, ingest
from inbox.services.profiles import store_names


@dataclass(frozen=True)
class DemoThread:
    """One customer's conversation: (minutes ago, "in" from the customer / "out" from the page, text), then what
    the administrator does with it."""
    page: str                       # the brand whose page it is on
    persona: int                    # index in fake_meta.PERSONAS
    lines: tuple[tuple[int, str, str], ...]
    post: int | None = None         # a comment under this post (index in BRAND_POSTS); None: a Messenger DM
    triage: dict[str, Any] = field(default_factory=dict)  # assign (email), handoff (team, note), PATCH changes


THREADS: tuple[DemoThread, ...] = (
    DemoThread("Maison Lune", 0, ((131, "in", "Bonjour, ma commande n°48213 n'est toujours pas arrivée 😕 vous "
                                              "pouvez vérifier ?"),)),
    DemoThread("Maison Lune", 8, ((26, "in", "Hi, my order #48377 still hasn't shipped. Any update? 📦"),),
               triage={"assign": "camille@example.com", "labels": ["livraison"]}),
    DemoThread("Maison Lune", 1, ((52, "in", "Trop beau 😍 c'est dispo en magasin ?"),), post=0),
    DemoThread("Maison Lune", 10, ((6, "in", "How much is this? 😍"),), post=0),
    DemoThread("Maison Lune", 4, (
        (190, "in", "J'ai reçu la mauvaise couleur 😩 comment je fais pour l'échange ?"),
        (176, "out", "Bonjour Léa, désolés pour cette erreur ! Renvoyez-nous l'article avec l'étiquette prépayée "
                     "que nous venons de vous envoyer par e-mail : la bonne couleur part dès réception."),
        (18, "in", "Merci ! Je dépose le colis demain matin 🙏"),
    ), triage={"assign": "camille@example.com", "labels": ["échange"]}),
    DemoThread("Maison Lune", 7, (
        (1200, "in", "Top, j'ai bien reçu le colis, tout est parfait 🎉"),
        (1190, "out", "Merci Thomas, très bonne journée ! 😊"),
    ), triage={"status": "resolved"}),
    DemoThread("Vélo Vert", 3, ((95, "in", "Je voudrais me faire rembourser la commande 48102, le casque est "
                                           "arrivé cassé 😡"),),
               triage={"handoff": ("SAV", "Casque arrivé cassé (commande 48102) : le client demande un "
                                          "remboursement. Lui demander des photos du colis."),
                       "priority": "high", "labels": ["remboursement"]}),
    DemoThread("Vélo Vert", 2, ((13, "in", "Toujours pas reçu ma commande... 😤"),), post=1),
    DemoThread("Vélo Vert", 9, ((3, "in", "I was charged twice for the same order 😠 please fix this ASAP"),),
               triage={"priority": "urgent"}),
    DemoThread("Vélo Vert", 11, ((41, "in", "مرحبا، طلبي رقم 48555 لم يصل بعد 😕"),)),
)


def _external_id(thread: DemoThread, k: int, n: int, page_id: str) -> str:
    """The platform id of line `n` of thread `k`: its comment id under the post, or its Messenger mid."""
    if thread.post is not None:
        return f"{post_ids_for(page_id)[thread.post].split('_')[1]}_{9000 + k * 10 + n}"
    return f"m_demo_{page_id}_{k}_{n}"


def _bodies(thread: DemoThread, k: int, page_id: str, now: float) -> list[bytes]:
    """The webhook bodies of a thread, oldest first."""
    persona = PERSONAS[thread.persona]
    bodies = []
    for n, (minutes, direction, text) in enumerate(thread.lines):
        at = now - minutes * 60
        if thread.post is not None:
            post_id = post_ids_for(page_id)[thread.post]
            payload = feed_comment_payload(page_id, post_id, _external_id(thread, k, n, page_id),
                                           commenter_id_for(thread.persona), persona.name, text,
                                           created_time=int(at), post_message=BRAND_POSTS[thread.post])
        else:
            psid, mid = psid_for(page_id, thread.persona), _external_id(thread, k, n, page_id)
            item = (messaging_message(page_id, psid, text, mid=mid, ts_ms=int(at * 1000)) if direction == "in"
                    else messaging_echo(page_id, psid, text, mid=mid, ts_ms=int(at * 1000), app_id=None))
            payload = page_payload(page_entry(page_id, messaging=[item]))
        bodies.append(meta_json(payload))
    return bodies


def _drained(timeout: float = 30.0) -> None:
    """Drain until no raw event is pending, including those a running worker process has claimed meanwhile
    (`make run` with PostgreSQL and Redis: its worker may take them first, and skip-locked claims do not wait)."""
    deadline = time.monotonic() + timeout
    while True:
        while ingest.drain_webhook_events(linger=0):
            pass
        pending = db.session.scalar(select(func.count()).select_from(WebhookEvent)
                                    .where(WebhookEvent.status == "pending"))
        db.session.remove()
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pending} demo webhook events still pending after {timeout:.0f} s")
        time.sleep(0.05)


def seed_conversations(app: Flask, *, pages: dict[str, str], app_secret: str, admin_email: str) -> list[str]:
    """Post the demo threads to the app's webhook endpoint, drain them, name the Messenger customers and triage
    a few as `admin_email`. Returns the lines to print. Runs in an app context, on a database with the demo
    brands, teams, agents and channels (`cli.seed_demo`)."""
    client, now = app.test_client(), time.time()
    for k, thread in enumerate(THREADS):
        for body in _bodies(thread, k, pages[thread.page], now):
            response = client.post("/webhooks/meta", data=body, content_type="application/json",
                                   headers={"X-Hub-Signature-256": sign_meta(app_secret, body)})
            if response.status_code != 200:
                raise RuntimeError(f"the demo webhook was refused: {response.status_code} {response.get_data(True)}")
            _drained()  # one at a time: a reply lands after what it answers
    session = db.session
    psids = {psid_for(pages[t.page], t.persona): PERSONAS[t.persona].name for t in THREADS if t.post is None}
    identities = session.scalars(select(ContactIdentity).where(ContactIdentity.external_id.in_(sorted(psids))))
    names = {identity.id: (psids[identity.external_id], None) for identity in identities if not identity.name}
    db.session.remove()
    if names:
        store_names(names)
    triaged = 0
    with db.transaction() as session:
        admin = session.scalars(select(Agent).where(Agent.email == admin_email)).one()
        for k, thread in enumerate(THREADS):
            if not thread.triage:
                continue
            conversation_id = session.scalars(select(Message.conversation_id).where(
                Message.external_id == _external_id(thread, k, 0, pages[thread.page]))).one()
            triage = dict(thread.triage)
            if "handoff" in triage:
                team_name, note = triage.pop("handoff")
                team = session.scalars(select(Team).where(Team.name == team_name)).one()
                handoff.handoff(session, admin, conversation_id, team.id, note)
            if "assign" in triage:
                email = triage.pop("assign")
                triage["assignee_id"] = session.scalars(select(Agent.id).where(Agent.email == email)).one()
            if triage:
                conversations.update_conversation(session, admin, conversation_id, triage)
            triaged += 1
    return [f"demo conversations: {len(THREADS)} customers on both pages (DMs and comments, French, English and "
            f"Arabic), {triaged} of them triaged; `make demo` adds live ones"]
