import type { Conversation } from "@/api/types";

/**
 * Conversation events travel in a wire form (inbox/realtime/wire.py): the conversation's JSON without its null
 * members (at any depth), its empty lists and `last_message.at` (always `last_message_at`). Every agent of a
 * brand receives one per inbound message, so this is most of what a busy console parses. `expandConversation`
 * gives back the REST API's JSON before any store sees it: the stores and components never meet the wire form.
 * A full conversation comes back unchanged. tests/fixtures/live_conversations.json holds the server's pairs.
 */

/** Top-level members the wire form leaves out when null. */
const NULLABLE = [
  "snoozed_until",
  "team_id",
  "team",
  "assignee",
  "post",
  "last_message",
  "last_inbound_at",
  "last_outbound_at",
  "last_message_at",
  "waiting_since",
  "resolved_at",
  "language",
] as const;

/** Top-level lists the wire form leaves out when empty. */
const LISTS = ["labels", "sla", "linked_conversation_ids"] as const;

/** Members of the nested objects (and of each SLA clock) the wire form leaves out when null. */
const NESTED_NULLABLE: Record<string, readonly string[]> = {
  contact: ["name", "handle", "avatar_url"],
  post: ["text", "permalink"],
  last_message: ["text", "direction", "at"],
  reply_window: ["closes_at", "human_agent_until"],
  sla: ["due_at", "warning_at", "started_at", "stopped_at", "business_seconds_left", "calendar_seconds_left"],
};

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function withNulls(value: Json, keys: readonly string[]): Json {
  const out: Json = { ...value };
  for (const key of keys) if (out[key] === undefined) out[key] = null;
  return out;
}

/** The REST API's conversation JSON from a conversation event's data (wire form or full). */
export function expandConversation(data: unknown): Conversation {
  if (!isObject(data)) return data as unknown as Conversation;
  const out: Json = { ...data };
  for (const key of NULLABLE) if (out[key] === undefined) out[key] = null;
  for (const key of LISTS) if (out[key] === undefined) out[key] = [];
  for (const [key, keys] of Object.entries(NESTED_NULLABLE)) {
    const value = out[key];
    if (isObject(value)) out[key] = withNulls(value, keys);
    else if (Array.isArray(value)) out[key] = value.map((item) => (isObject(item) ? withNulls(item, keys) : item));
  }
  const last = out.last_message;
  if (isObject(last) && last.at === null) last.at = out.last_message_at ?? null;
  return out as unknown as Conversation;
}
