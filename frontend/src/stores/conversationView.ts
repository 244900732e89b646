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

/** The seconds' fraction of an ISO 8601 time, apart: Date.parse keeps milliseconds only. */
const FRACTION = /^(.*T\d{2}:\d{2}:\d{2})[.,](\d+)(.*)$/;

/**
 * An ISO 8601 time in microseconds since the epoch (null when there is none): the precision of the server's
 * timestamps (Python, PostgreSQL), which orders its pages by them. Two messages in the same millisecond are in a
 * definite order there, so they must be here too. Microseconds stay exact in a double until the year 2255.
 */
export function instant(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const parts = FRACTION.exec(iso);
  const ms = Date.parse(parts ? `${parts[1]}${parts[3]}` : iso);
  if (Number.isNaN(ms)) return null;
  const micros = parts ? Number((parts[2] ?? "").slice(0, 6).padEnd(6, "0")) : 0;
  return ms * 1000 + micros;
}

const ids = new Intl.Collator("en", { numeric: true });

/** Ids ascending, as numbers (the server's are integers). */
function compareIds(a: Id, b: Id): number {
  const x = Number(a);
  const y = Number(b);
  return Number.isSafeInteger(x) && Number.isSafeInteger(y) ? x - y : ids.compare(String(a), String(b));
}

/** Descending, a missing value first: PostgreSQL's `DESC`, whose NULLs come first. */
function descendingNullsFirst(x: number | null, y: number | null): number {
  if (x === null || y === null) return x === y ? 0 : x === null ? -1 : 1;
  return y - x;
}

/** The API's last_message.at is the column last_message_at (last_message is null when it is). */
const lastMessageAt = (c: Conversation): number | null => instant(c.last_message?.at);

/** Most recent message first, a conversation without any first; the same time by id descending. */
const byNewest = (a: Conversation, b: Conversation): number =>
  descendingNullsFirst(lastMessageAt(a), lastMessageAt(b)) || compareIds(b.id, a.id);

/**
 * The order of the list, exactly the server's, ties included (inbox/services/conversations.py, _page_waiting and
 * _page_newest): the store inserts a live conversation only where no page after those loaded will bring it
 * (canInsert), so a tie broken the other way than the server's would show a row twice or never.
 * - newest (and a text search): last_message_at descending, NULLs first, then id descending;
 * - waiting: the customers who wait first, longest-waiting first (waiting_since ascending, then id ascending),
 *   then the others as in newest.
 */
export function compareConversations(sort: ConversationSort): (a: Conversation, b: Conversation) => number {
  if (sort === "newest") return byNewest;
  return (a, b) => {
    const wa = instant(a.waiting_since);
    const wb = instant(b.waiting_since);
    if (wa !== null && wb !== null) return wa - wb || compareIds(a.id, b.id);
    if (wa !== null) return -1;
    if (wb !== null) return 1;
    return byNewest(a, b);
  };
}

/**
 * True when `incoming` is older than what we already have (by updated_at, to the microsecond like the server's:
 * two versions written in the same millisecond are still in order, so an API answer carrying the older one, which
 * has no seq to check, cannot overwrite the newer one).
 */
export function isStale(incoming: Conversation, existing: Conversation | null | undefined): boolean {
  if (!existing) return false;
  const a = instant(incoming.updated_at);
  const b = instant(existing.updated_at);
  return a !== null && b !== null && a < b;
}
