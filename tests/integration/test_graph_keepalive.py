"""Graph API calls keep their connection alive (inbox.services.delivery.meta_client): a worker's sends and a batch
of name lookups reuse one TCP connection (one TLS handshake with the real Graph) instead of one per call, and a
connection idle longer than GRAPH_KEEPALIVE_IDLE_S is not reused."""
from __future__ import annotations

import pytest

from adapters import meta
from inbox.services import delivery


@pytest.fixture(autouse=True)
def _fresh_graph_session() -> None:
    """This thread's kept session may hold a connection from an earlier test: start without one."""
    session = getattr(delivery._graph, "session", None)
    if session is not None:
        session.close()
    delivery._graph.__dict__.clear()


def _creds() -> meta.MetaCredentials:
    return meta.MetaCredentials(page_id="1000", access_token="page-token", app_secret="secret")


def test_consecutive_calls_share_one_connection(app, fake_meta):
    before = fake_meta.connections
    with app.app_context():
        for psid in ("psid-keep-1", "psid-keep-2", "psid-keep-3"):
            assert meta.get_user_profile(delivery.meta_client(), _creds(), psid).name
    assert fake_meta.connections - before == 1
    assert [r.path for r in fake_meta.requests] == ["/psid-keep-1", "/psid-keep-2", "/psid-keep-3"]


def test_a_connection_idle_too_long_is_not_reused(app, fake_meta, monkeypatch):
    monkeypatch.setattr(delivery, "GRAPH_KEEPALIVE_IDLE_S", -1.0)  # every previous client counts as idle
    before = fake_meta.connections
    with app.app_context():
        for psid in ("psid-idle-1", "psid-idle-2"):
            assert meta.get_user_profile(delivery.meta_client(), _creds(), psid).name
    assert fake_meta.connections - before == 2


def test_name_lookup_jobs_in_a_row_share_one_connection(app, world, fake_meta, monkeypatch):
    """Two gathered lookup jobs one after the other (three new customers), their calls made by one lookup thread
    (LOOKUP_CONCURRENCY 1 here): a batch request for the first two, a GET for the third, over one connection."""
    from inbox.services import profiles

    monkeypatch.setattr(profiles, "LOOKUP_CONCURRENCY", 1)
    monkeypatch.setattr(profiles, "_lookups", None)  # a pool of one thread for this test
    from inbox.demo.fake_meta import messenger_message_payload
    from inbox.jobs import tasks
    from tests.factories import PAGE_ID
    from tests.helpers import captured_lookups, post_meta, wait_until

    jobs = captured_lookups(monkeypatch)
    client = app.test_client()
    psids = ("psid-batch-1", "psid-batch-2", "psid-batch-3")
    for psid in psids:
        post_meta(client, messenger_message_payload(PAGE_ID, psid, "bonjour"))
    wait_until(lambda: sum(map(len, jobs)) == 3, timeout=10)
    lookups = [pair for job in jobs for pair in job]
    fake_meta.reset()
    before = fake_meta.connections
    with app.app_context():
        assert tasks.fetch_contact_profiles(lookups[:2]) == 2
        assert tasks.fetch_contact_profiles(lookups[2:]) == 1
    assert sorted(fake_meta.profile_lookups) == sorted(psids)
    assert [r.method for r in fake_meta.requests] == ["POST", "GET"]
    profiles._lookups.shutdown()
    assert fake_meta.connections - before == 1

