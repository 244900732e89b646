"""Platform reply windows: what the platform still lets us send in a conversation, and until when."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from inbox.db import utcnow

MESSENGER_STANDARD = timedelta(hours=24)
MESSENGER_HUMAN_AGENT = timedelta(days=7)
PRIVATE_REPLY = timedelta(days=7)


def reply_window(conversation: Any, now: datetime | None = None) -> dict[str, Any]:
    """{"open", "closes_at", "human_agent_until", "mode"}: mode "standard", "human_agent" or "closed".

    Messenger DMs: standard replies within 24 h of the customer's last message, then the HUMAN_AGENT tag
    until 7 days. Public comment replies and the API channel have no window."""
    now = now or utcnow()
    if conversation.kind != "dm" or conversation.channel.kind != "facebook_page":
        return {"open": True, "closes_at": None, "human_agent_until": None, "mode": "standard"}
    last = conversation.last_inbound_at
    if last is None:
        return {"open": False, "closes_at": None, "human_agent_until": None, "mode": "closed"}
    standard_until, human_until = last + MESSENGER_STANDARD, last + MESSENGER_HUMAN_AGENT
    if now < standard_until:
        mode = "standard"
    elif now < human_until:
        mode = "human_agent"
    else:
        mode = "closed"
    return {"open": mode != "closed", "closes_at": standard_until, "human_agent_until": human_until, "mode": mode}


def private_reply_open(comment_time: datetime, now: datetime | None = None) -> bool:
    return (now or utcnow()) < comment_time + PRIVATE_REPLY
