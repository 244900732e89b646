import type { Conversation, ConversationKind, ConversationQuery, ConversationStatus, Id } from "@/api/types";

/** The three inbox views of the sidebar. */
export type InboxView = "mine" | "unassigned" | "all";
export const INBOX_VIEWS: readonly InboxView[] = ["mine", "unassigned", "all"];

export type ConversationSort = "waiting" | "newest";

export interface ConversationFilters {
  view: InboxView;
  status: ConversationStatus;
  sort: ConversationSort;
  kind: ConversationKind | null;
  brandId: string | null;
  channelId: string | null;
  q: string;
}

export const DEFAULT_FILTERS: ConversationFilters = {
  view: "mine",
  status: "open",
  sort: "waiting",
  kind: null,
  brandId: null,
  channelId: null,
  q: "",
};

export const sameId = (a: Id | null | undefined, b: Id | null | undefined): boolean =>
  a !== null && a !== undefined && b !== null && b !== undefined && String(a) === String(b);

/** The API searches from 3 to 200 characters (code points, as the server counts them); shorter is no search. */
export const SEARCH_MIN_CHARACTERS = 3;
export const SEARCH_MAX_CHARACTERS = 200;

/** The text the API is asked to search for `text`: trimmed, at most 200 characters, "" when under 3. */
export function searchTerm(text: string | null | undefined): string {
  const characters = [...(text ?? "").trim()];
  if (characters.length < SEARCH_MIN_CHARACTERS) return "";
  return characters.slice(0, SEARCH_MAX_CHARACTERS).join("").trimEnd();
}

/** The search of a URL's `?q=` (a repeated parameter counts as none). */
export const searchFromQuery = (value: unknown): string => searchTerm(typeof value === "string" ? value : "");

export const isSearch = (filters: ConversationFilters): boolean => searchTerm(filters.q) !== "";

export function toQuery(filters: ConversationFilters): ConversationQuery {
  const assignee = { mine: "me", unassigned: "none", all: undefined }[filters.view];
  return {
    status: filters.status,
    assignee,
    kind: filters.kind ?? undefined,
    brand_id: filters.brandId ?? undefined,
    channel_id: filters.channelId ?? undefined,
    q: searchTerm(filters.q) || undefined,
    sort: filters.sort,
  };
}

/**
 * The query of the sidebar counts: the filters without the text search, whose pages carry no counts (the
 * views keep theirs while the CM searches).
 */
export function countsQuery(filters: ConversationFilters): ConversationQuery {
  return toQuery({ ...filters, q: "" });
}

/** Counts do not depend on the view (they are the three views') nor on the sort or the search. */
export function countsKey(filters: ConversationFilters): string {
  return JSON.stringify([filters.status, filters.kind, filters.brandId, filters.channelId]);
}

/** The order of the list on screen: a search answers newest first, whatever the view's sort. */
export const listOrder = (filters: ConversationFilters): ConversationSort => (isSearch(filters) ? "newest" : filters.sort);

/** Whether the conversation belongs to the list described by the filters, view aside. */
export function matchesFilters(conversation: Conversation, filters: ConversationFilters): boolean {
  if (conversation.status !== filters.status) return false;
  if (filters.kind && conversation.kind !== filters.kind) return false;
  if (filters.brandId && !sameId(conversation.brand?.id, filters.brandId)) return false;
  if (filters.channelId && !sameId(conversation.channel?.id, filters.channelId)) return false;
  return true;
}

/** Which of the views (for the current filters) a conversation counts in, for agent `meId`. */
export function viewsOf(conversation: Conversation, filters: ConversationFilters, meId: Id | null): Set<InboxView> {
  const views = new Set<InboxView>();
  if (!matchesFilters(conversation, filters)) return views;
  views.add("all");
  if (conversation.assignee === null) views.add("unassigned");
  else if (sameId(conversation.assignee.id, meId)) views.add("mine");
  return views;
}

/** Whether a conversation belongs in the list on screen (a text search `q` is left to the server). */
export function belongsToView(conversation: Conversation, filters: ConversationFilters, meId: Id | null): boolean {
  return viewsOf(conversation, filters, meId).has(filters.view);
}

const time = (iso: string | null | undefined): number | null => {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
};

const byId = (a: Conversation, b: Conversation) => String(a.id).localeCompare(String(b.id), "en", { numeric: true });

/**
 * The order of the list, the same as the server's:
 * - waiting: longest-waiting customer first (waiting_since ascending), conversations not waiting
 *   last, most recently active first among those;
 * - newest: most recent activity first (last message time, else updated_at).
 */
export function compareConversations(sort: ConversationSort): (a: Conversation, b: Conversation) => number {
  const activity = (c: Conversation) => time(c.last_message?.at) ?? time(c.updated_at) ?? 0;
  if (sort === "newest") {
    return (a, b) => activity(b) - activity(a) || byId(a, b);
  }
  return (a, b) => {
    const wa = time(a.waiting_since);
    const wb = time(b.waiting_since);
    if (wa !== null && wb !== null) return wa - wb || byId(a, b);
    if (wa !== null) return -1;
    if (wb !== null) return 1;
    return activity(b) - activity(a) || byId(a, b);
  };
}

/** True when `incoming` is older than what we already have (by updated_at). */
export function isStale(incoming: Conversation, existing: Conversation | null | undefined): boolean {
  if (!existing) return false;
  const a = time(incoming.updated_at);
  const b = time(existing.updated_at);
  return a !== null && b !== null && a < b;
}
