import type { Agent, Conversation, Message, WebhookEvent } from "@/api/types";

export const ME: Agent = { id: 1, email: "camille@agence.fr", name: "Camille", role: "agent", availability: "online" };
export const OTHER = { id: 2, name: "Mehdi" };

let nextId = 100;

/** A conversation as the API returns it; override what the test is about. */
export function conversation(overrides: Partial<Conversation> = {}): Conversation {
  const id = overrides.id ?? nextId++;
  return {
    id,
    kind: "dm",
    status: "open",
    priority: "normal",
    snoozed_until: null,
    labels: [],
    brand: { id: 1, name: "Maison Lune" },
    channel: { id: 10, name: "Maison Lune (Facebook)", kind: "facebook" },
    team_id: null,
    team: null,
    assignee: null,
    contact: { id: 500, name: "Léa Martin", handle: null, avatar_url: null },
    post: null,
    last_message: { text: "Bonjour", direction: "in", at: "2026-11-23T13:00:00Z" },
    last_inbound_at: "2026-11-23T13:00:00Z",
    last_outbound_at: null,
    waiting_since: "2026-11-23T13:00:00Z",
    created_at: "2026-11-23T12:00:00Z",
    updated_at: "2026-11-23T13:00:00Z",
    reply_window: { open: true, closes_at: "2026-11-24T13:00:00Z", human_agent_until: null },
    sla: [],
    ...overrides,
  };
}

export function message(overrides: Partial<Message> = {}): Message {
  return {
    id: nextId++,
    conversation_id: 1,
    direction: "in",
    kind: "message",
    reply_type: null,
    text: "Bonjour",
    attachments: [],
    author: { type: "contact", id: 500, name: "Léa Martin" },
    platform_time: "2026-11-23T13:00:00Z",
    received_at: "2026-11-23T13:00:01Z",
    delivery_status: null,
    delivery_error: null,
    external_id: "m_1",
    edited: false,
    deleted: false,
    hidden: false,
    liked: false,
    reply_to_id: null,
    ...overrides,
  };
}

/** A stored raw webhook as the admin API returns it; override what the test is about. */
export function webhookEvent(overrides: Partial<WebhookEvent> = {}): WebhookEvent {
  return {
    id: 41,
    source: "meta",
    channel_id: null,
    received_at: "2026-11-23T13:00:00Z",
    remote_addr: "203.0.113.9",
    headers: { "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=abc" },
    body: '{"object":"page"}',
    body_size: 17,
    body_truncated: false,
    verification: "valid",
    verification_detail: null,
    status: "processed",
    attempts: 1,
    next_attempt_at: null,
    error: null,
    processed_at: "2026-11-23T13:00:01Z",
    stats: {},
    ...overrides,
  };
}
