"""All tables. Import models from here: `from inbox.models import Conversation`."""
from inbox.models.assignment import AgentState, AssignmentPolicy, BrandRouting, ConversationLink
from inbox.models.base import Base
from inbox.models.canned_reply import CannedReply
from inbox.models.channel import Channel
from inbox.models.contact import Contact, ContactIdentity
from inbox.models.conversation import Conversation, ConversationLabel, Post
from inbox.models.message import Message
from inbox.models.org import Agent, ApiToken, Brand, Team, TeamBrand, TeamMember
from inbox.models.realtime_event import RealtimeEvent
from inbox.models.sla import Calendar, SlaClock, SlaEvent, SlaPolicy
from inbox.models.view_count import ConversationCount, ConversationCountDelta
from inbox.models.webhook_event import WebhookEvent

__all__ = ["Base", "Brand", "Team", "Agent", "TeamMember", "TeamBrand", "ApiToken", "Channel", "Contact",
           "ContactIdentity", "Post", "Conversation", "ConversationLabel", "Message", "WebhookEvent",
           "RealtimeEvent", "CannedReply", "Calendar", "SlaPolicy", "SlaClock", "SlaEvent"]
__all__ += ["AssignmentPolicy", "BrandRouting", "AgentState", "ConversationLink"]
__all__ += ["ConversationCount", "ConversationCountDelta"]
