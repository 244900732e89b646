"""Team names by id, kept a few seconds per process, for the `team` of a conversation's JSON built from a loaded
conversation (its live events, the API's answers about one conversation).

A list page reads each row's team name in its own statement (services.conversations' item query). A live event is
built from the conversation the drain or the request holds, and its team was not loaded with it: one statement for
every team of the database (a handful of rows) when a name is missing or the copy is older than `TTL`, instead of a
lazy load for each conversation, which would have cost every drain a round trip. This process's own renames and
deletions are seen at once (`forget`, called by the team services); another process's within `TTL` seconds.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.models import Team

TTL = 5.0

_lock = threading.Lock()
_names: dict[int, str] = {}
_loaded_at = float("-inf")


def team_ref(session: Session, team_id: int | None) -> dict[str, Any] | None:
    """{"id", "name"} of the team (ConversationSchema's `team`); None without one (or for a team deleted since)."""
    global _names, _loaded_at
    if team_id is None:
        return None
    names, now = _names, time.monotonic()
    if team_id not in names or now - _loaded_at >= TTL:
        names = {id_: name for id_, name in session.execute(select(Team.id, Team.name))}
        with _lock:
            _names, _loaded_at = names, now
    name = names.get(team_id)
    return None if name is None else {"id": team_id, "name": name}


def forget() -> None:
    """Drops the copy: a team was renamed or deleted (by this process), or the tests emptied the tables."""
    global _loaded_at
    with _lock:
        _loaded_at = float("-inf")
