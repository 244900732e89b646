/** Shapes returned by the Relais REST API (/api/v1). Times are ISO 8601 UTC strings. */

export type Id = number | string;
export type IsoDateTime = string;

export type Role = "admin" | "supervisor" | "agent";
export type Availability = "online" | "busy" | "offline";

export interface Agent {
  id: Id;
  email: string;
  name: string;
  role: Role;
  availability: Availability;
}

export interface Session {
  agent: Agent;
  csrf_token: string;
}

export type ConversationKind = "dm" | "comment";
export type ConversationStatus = "open" | "pending" | "snoozed" | "resolved";
export type Priority = "low" | "normal" | "high" | "urgent";

export const CONVERSATION_STATUSES: readonly ConversationStatus[] = ["open", "pending", "snoozed", "resolved"];
export const PRIORITIES: readonly Priority[] = ["low", "normal", "high", "urgent"];

export interface NamedRef {
  id: Id;
  name: string;
}

export interface ChannelRef extends NamedRef {
  kind: string;
}

export interface ContactRef {
  id: Id;
  name: string | null;
  handle: string | null;
  avatar_url: string | null;
}

export interface PostRef {
  id: Id;
  external_id: string;
  text: string | null;
  permalink: string | null;
}

export interface LastMessage {
  text: string | null;
  direction: "in" | "out";
  at: IsoDateTime;
}

export interface ReplyWindow {
  open: boolean;
  closes_at: IsoDateTime | null;
  human_agent_until: IsoDateTime | null;
}

export interface Conversation {
  id: Id;
  kind: ConversationKind;
  status: ConversationStatus;
  priority: Priority;
  snoozed_until: IsoDateTime | null;
  labels: string[];
  brand: NamedRef;
  channel: ChannelRef;
  team_id: Id | null;
  assignee: NamedRef | null;
  contact: ContactRef;
  post: PostRef | null;
  last_message: LastMessage | null;
  last_inbound_at: IsoDateTime | null;
  last_outbound_at: IsoDateTime | null;
  waiting_since: IsoDateTime | null;
  created_at: IsoDateTime;
  updated_at: IsoDateTime;
  reply_window: ReplyWindow;
  sla: unknown[];
}

export interface ConversationCounts {
  mine: number;
  unassigned: number;
  all: number;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface ConversationPage extends Page<Conversation> {
  counts: ConversationCounts;
}

export type ConversationPatch = Partial<{
  status: ConversationStatus;
  snoozed_until: IsoDateTime | null;
  priority: Priority;
  labels: string[];
  assignee_id: Id | null;
  team_id: Id | null;
}>;

export type MessageDirection = "in" | "out";
export type MessageKind = "message" | "comment" | "note" | "activity";
export type DeliveryStatus = "queued" | "sending" | "sent" | "delivered" | "read" | "failed";
export type AuthorType = "contact" | "agent" | "page" | "system";

export interface Attachment {
  type: string;
  url: string;
}

export interface Message {
  id: Id;
  conversation_id: Id;
  direction: MessageDirection;
  kind: MessageKind;
  reply_type: "reply" | "private_reply" | null;
  text: string | null;
  attachments: Attachment[];
  author: { type: AuthorType; id: Id | null; name: string | null };
  platform_time: IsoDateTime | null;
  received_at: IsoDateTime | null;
  delivery_status: DeliveryStatus | null;
  delivery_error: string | null;
  external_id: string | null;
  edited: boolean;
  deleted: boolean;
  hidden: boolean;
  liked: boolean;
  reply_to_id: Id | null;
}

/** What the composer can send: a public reply, a private reply to a comment, or an internal note. */
export type ComposerKind = "reply" | "private_reply" | "note";

export interface NewMessage {
  text: string;
  kind: ComposerKind;
  reply_to_message_id?: Id;
}

export type ModerationAction = "hide" | "unhide" | "delete" | "like";

export type ConversationQuery = Partial<{
  status: ConversationStatus;
  assignee: "me" | "none" | string;
  kind: ConversationKind;
  brand_id: string;
  channel_id: string;
  q: string;
  sort: "waiting" | "newest";
  limit: number;
  cursor: string;
}>;
