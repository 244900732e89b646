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

export type ReplyWindowMode = "standard" | "human_agent" | "closed";

export interface ReplyWindow {
  open: boolean;
  closes_at: IsoDateTime | null;
  human_agent_until: IsoDateTime | null;
  mode?: ReplyWindowMode;
}

export type SlaMetric = "first_response" | "next_response" | "resolution";
export type SlaState = "running" | "paused" | "warning" | "breached" | "met";
export const SLA_METRICS: readonly SlaMetric[] = ["first_response", "next_response", "resolution"];

/** The current clock of one SLA metric, as the conversation JSON carries it. */
export interface SlaClock {
  metric: SlaMetric | string;
  state: SlaState | string;
  cycle?: number;
  turn?: number;
  due_at: IsoDateTime | null;
  warning_at: IsoDateTime | null;
  started_at: IsoDateTime | null;
  stopped_at: IsoDateTime | null;
  /** Negative when overdue; null when stopped (or, for business time, without a calendar). */
  business_seconds_left?: number | null;
  calendar_seconds_left?: number | null;
}

export interface SlaEvent {
  id?: Id;
  metric: string;
  cycle: number;
  turn: number;
  kind: string;
  at: IsoDateTime;
  cause: string | null;
  policy_id?: Id | null;
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
  /** The team holding it (after a handoff: the team it was handed to). */
  team: NamedRef | null;
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
  sla: SlaClock[];
  linked_conversation_ids?: Id[];
  language?: string | null;
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
  /** Present on the first page (no cursor) only. */
  counts?: ConversationCounts;
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
/** `unknown`: the send was interrupted after the request left (a timeout, a crash): the platform may have it. */
export type DeliveryStatus = "queued" | "sending" | "sent" | "delivered" | "read" | "failed" | "unknown";
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
  /** What the API shows of the message's platform and history details; `activity` on activity rows. */
  extra?: { activity?: ActivityDetails; quick_reply_payload?: string; postback_payload?: string; tag?: string };
}

/** An activity row's structured details (`extra.activity`): its type and the names its sentence shows. Rows written
 * before the names were kept have only ids: the console then shows the row's English `text`. */
export interface ActivityDetails {
  type: string;
  [key: string]: unknown;
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

// ---------- triage: canned replies, SLA administration, assignment ----------

export type CannedScope = "global" | "brand" | "team";
export const CANNED_SCOPES: readonly CannedScope[] = ["global", "brand", "team"];

export interface CannedReply {
  id: Id;
  shortcut: string;
  title: string;
  body: string;
  placeholders?: string[];
  scope: CannedScope;
  brand_id: Id | null;
  team_id: Id | null;
  language: string | null;
  usage_count?: number;
  archived?: boolean;
}

export interface CannedReplyInput {
  shortcut: string;
  title: string;
  body: string;
  scope: CannedScope;
  brand_id: number | null;
  team_id: number | null;
  language: string | null;
}

export interface RenderedReply {
  text: string;
  missing: string[];
}

export interface CalendarInterval {
  /** 0 = Monday. */
  weekday: number;
  start: string;
  end: string;
}

export interface BusinessCalendar {
  id: Id;
  name: string;
  timezone: string;
  intervals: CalendarInterval[];
  holidays: string[];
}

export type CalendarInput = Omit<BusinessCalendar, "id">;

export interface SlaConditions {
  brand_ids?: number[];
  channel_kinds?: string[];
  conversation_kinds?: string[];
  priorities?: string[];
  labels?: string[];
}

export interface SlaPolicy {
  id: Id;
  name: string;
  position: number;
  calendar_id: Id | null;
  first_response_seconds: number | null;
  next_response_seconds: number | null;
  resolution_seconds: number | null;
  warning_ratio: number;
  pause_on: string[];
  conditions: SlaConditions;
  archived?: boolean;
}

export type SlaPolicyInput = Omit<SlaPolicy, "id" | "archived" | "calendar_id"> & { calendar_id: number | null };

export type AssignmentMode = "manual" | "round_robin" | "least_loaded";
export const ASSIGNMENT_MODES: readonly AssignmentMode[] = ["manual", "round_robin", "least_loaded"];

export interface AssignmentPolicy {
  mode: AssignmentMode;
  capacity_by_channel_kind: Record<string, number>;
  match_language: boolean;
  unassign_after_offline_minutes: number | null;
}

export interface Team {
  id: Id;
  name: string;
  brand_ids?: Id[];
  member_ids?: Id[];
}

export interface Brand {
  id: Id;
  name: string;
  created_at?: IsoDateTime;
}

export interface AgentBrief {
  id: Id;
  name: string;
  availability: Availability;
  role?: Role;
  email?: string;
}

/** Channel kinds the backend knows (inbox/models/channel.py CHANNEL_KINDS). */
export const CHANNEL_KINDS: readonly string[] = ["facebook_page", "api"];

// ---------- administration: brands, channels, teams, agents, raw webhook log (admins) ----------

export type ChannelKind = "facebook_page" | "api";
export type ChannelStatus = "active" | "disabled" | "error";

/** A channel as admins see it: credentials masked (`abcd…yz`), never in clear. */
export interface Channel {
  id: Id;
  brand: NamedRef;
  brand_id: Id;
  kind: ChannelKind | string;
  name: string;
  external_id: string | null;
  status: ChannelStatus | string;
  status_detail: string | null;
  config: Record<string, unknown>;
  credentials: Record<string, string | null>;
  /** `callback_url` (Meta) or `inbound_url` (API). */
  webhook: { callback_url?: string; inbound_url?: string };
  created_at: IsoDateTime;
  updated_at: IsoDateTime;
}

/** The create / rotate-secret answer: the only time the clear secrets are ever sent. */
export interface ChannelCreated extends Channel {
  /** `verify_token` (Facebook page) or `webhook_secret` (API). */
  secrets: Record<string, string>;
}

export interface FacebookPageConfig {
  page_id: string;
  access_token: string;
  app_secret: string;
  verify_token?: string;
}

export interface ApiChannelConfig {
  webhook_url?: string | null;
}

export type ChannelCreateInput =
  | { brand_id: number; kind: "facebook_page"; name: string; config: FacebookPageConfig }
  | { brand_id: number; kind: "api"; name: string; config: ApiChannelConfig };

export interface ChannelPatch {
  name?: string;
  status?: "active" | "disabled";
  config?: Partial<Omit<FacebookPageConfig, "page_id">> & ApiChannelConfig;
}

export interface TeamInput {
  name: string;
  brand_ids: number[];
  member_ids: number[];
}

/** An agent as admins (and supervisors, for their teams) see them. */
export interface AdminAgent extends Agent {
  is_active: boolean;
  language: string | null;
  capacity: number;
  team_ids: Id[];
}

export interface AgentInput {
  email: string;
  name: string;
  role: Role;
  password?: string;
  team_ids: number[];
  capacity: number;
  language: string | null;
}

export type AgentPatch = Partial<Omit<AgentInput, "email">> & { is_active?: boolean };

/** The create answer: `password` is the generated one (shown once), null when the admin chose it. */
export interface AgentCreated extends AdminAgent {
  password: string | null;
}

export interface BrandRouting {
  brand_id: Id;
  default_team_id: Id | null;
}

export interface AgentRouting {
  agent_id: Id;
  /** Languages spoken besides the agent's interface language. */
  languages: string[];
  all_languages: string[];
}

export type WebhookEventStatus = "pending" | "processed" | "unroutable" | "failed" | "dead" | "rejected" | "invalid";
export const WEBHOOK_EVENT_STATUSES: readonly WebhookEventStatus[] = [
  "pending",
  "processed",
  "unroutable",
  "failed",
  "dead",
  "rejected",
  "invalid",
];
/** Statuses an admin should look at (highlighted, counted on the tab). */
export const WEBHOOK_ALERT_STATUSES: readonly WebhookEventStatus[] = ["unroutable", "failed", "dead"];

/** A raw webhook as received; `body` is UTF-8 text (invalid bytes replaced), cut at 64 KiB. */
export interface WebhookEvent {
  id: Id;
  source: string;
  channel_id: Id | null;
  received_at: IsoDateTime;
  remote_addr: string | null;
  headers: Record<string, string>;
  body: string;
  body_size: number;
  body_truncated: boolean;
  verification: "valid" | "invalid" | string;
  verification_detail: string | null;
  status: WebhookEventStatus | string;
  attempts: number;
  next_attempt_at: IsoDateTime | null;
  error: string | null;
  processed_at: IsoDateTime | null;
  stats: Record<string, unknown>;
}

export type WebhookEventQuery = Partial<{
  status: WebhookEventStatus;
  source: string;
  limit: number;
  cursor: string;
}>;
