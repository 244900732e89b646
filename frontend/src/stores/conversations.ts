import { defineStore } from "pinia";
import { computed, ref, shallowRef } from "vue";
import {
  conversationsApi,
  isApiError,
  type ApiError,
  type ContactRef,
  type Conversation,
  type ConversationCounts,
  type ConversationPage,
  type ConversationPatch,
  type Id,
  type NamedRef,
} from "@/api";
import { useAuthStore } from "./auth";
import { BoundedMap } from "./boundedMap";
import {
  DEFAULT_FILTERS,
  INBOX_VIEWS,
  belongsToView,
  compareConversations,
  countsKey,
  countsQuery,
  isSearch,
  isStale,
  listOrder,
  sameId,
  toQuery,
  viewsOf,
  type ConversationFilters,
} from "./conversationView";

export const PAGE_SIZE = 50;
/**
 * A search page examines a bounded slice of the view on the server (about 100 conversations), so it may come
 * back short, even empty, with a next_cursor. One round of a search (the first load, or one "search further")
 * asks up to this many pages while they have brought fewer than PAGE_SIZE matches; then the CM chooses to
 * search older conversations or not.
 */
export const SEARCH_ROUND_PAGES = 5;
/**
 * The sidebar counts move locally with every event (adjustCounts); the server is asked again only when
 * a local move could not be exact, and then no sooner than this plus up to COUNTS_JITTER_MS. A busy
 * brand sends hundreds of events a second to each of its hundreds of consoles: one counts request per
 * burst per console would cost more server CPU than the machine has, and the jitter keeps the consoles
 * that saw the same event from asking in step.
 */
export const COUNTS_MIN_INTERVAL_MS = 10_000;
export const COUNTS_JITTER_MS = 5_000;
/**
 * A counts answer is a snapshot: events of the changes it already holds may still be on their way
 * (delivery takes seconds under load), and moving the counts for them once more would count them twice.
 */
export const COUNTS_SETTLE_MS = 5_000;

/** A claim refused because someone else holds the conversation; `holder` says who, when known. */
export class ClaimConflictError extends Error {
  constructor(
    readonly holder: NamedRef | null,
    readonly cause: ApiError,
  ) {
    super(cause.message);
    this.name = "ClaimConflictError";
  }
}

export type ConversationChange = "created" | "updated";

export const useConversationStore = defineStore("conversations", () => {
  const auth = useAuthStore();

  const filters = ref<ConversationFilters>({ ...DEFAULT_FILTERS });
  const items = ref<Conversation[]>([]);
  const nextCursor = ref<string | null>(null);
  const counts = ref<ConversationCounts>({ mine: 0, unassigned: 0, all: 0 });
  const loading = ref(false);
  const loadingMore = ref(false);
  const loaded = ref(false);
  const error = shallowRef<ApiError | null>(null);

  /** The conversation open in the right-hand pane, whether or not it is in the list. */
  const current = ref<Conversation | null>(null);
  const currentError = shallowRef<ApiError | null>(null);

  /** Live SLA alerts (sla.warning / sla.breached) per conversation id, until a version shows the clock moved on. */
  const slaAlerts = ref<Record<string, { metric: string; kind: "warning" | "breached" }>>({});

  /** Latest version seen of every conversation, for staleness checks and count deltas. */
  const known = new BoundedMap<string, Conversation>(5000);
  /** Highest event seq applied per conversation: a replayed older event never overwrites a newer one. */
  const seqById = new BoundedMap<string, number>(5000);
  /**
   * The latest facts of the contacts a contact.updated event named, per contact id, with its seq. A conversation
   * read before the lookup stored the name (an event or API answer with the same updated_at) still carries none:
   * names are only ever filled in, never cleared, so the remembered name wins over a missing one.
   */
  const contactFacts = new BoundedMap<string, { contact: ContactRef; seq: number | null }>(5000);

  let loadToken = 0;
  let loadController: AbortController | null = null;
  let moreController: AbortController | null = null;
  let bufferedDuringLoad: Conversation[] | null = null;
  /**
   * The last row of the last page, as the server sent it: next_cursor is its sort key, and the next page starts
   * after it whatever happened to the row since (a new message may have moved it up the list). Null when there is
   * no next page.
   */
  let pageEnd: Conversation | null = null;
  let openToken = 0;

  // Counts corrections (see COUNTS_MIN_INTERVAL_MS). Every request that brings counts (load,
  // refreshCounts) is numbered; a doubt about the local counts is settled by the answer of a request
  // numbered after it arose, and only the answer of the latest request shown is kept.
  let countsTimer: ReturnType<typeof setTimeout> | null = null;
  let countsAsked = 0;
  let countsShown = 0;
  let countsPending = 0;
  let countsSettleUntil = 0;
  /** The last request number that does not cover a doubt about the counts on screen; null when there is none. */
  let countsDoubtBefore: number | null = null;
  /** countsKey of the filters of the counts on screen (a search page brings none); null before any. */
  let countsShownFor: string | null = null;

  const meId = computed<Id | null>(() => auth.agent?.id ?? null);
  const hasMore = computed(() => nextCursor.value !== null);

  function remember(conversation: Conversation): void {
    known.set(String(conversation.id), conversation);
  }

  /** The conversation with the remembered facts of its contact when it carries no name but they do (contactFacts). */
  function withKnownContact(conversation: Conversation): Conversation {
    const key = String(conversation.contact.id);
    const remembered = contactFacts.get(key);
    if (!remembered) return conversation;
    if (conversation.contact.name) {
      // A name from the server wins, and is what a later snapshot without one must keep.
      if (!sameContact(conversation.contact, remembered.contact)) {
        contactFacts.set(key, { contact: conversation.contact, seq: remembered.seq });
      }
      return conversation;
    }
    if (!remembered.contact.name || sameContact(conversation.contact, remembered.contact)) return conversation;
    return { ...conversation, contact: remembered.contact };
  }

  function sortItems(): void {
    items.value = [...items.value].sort(compareConversations(listOrder(filters.value)));
  }

  async function load(): Promise<void> {
    const token = ++loadToken;
    loadController?.abort();
    stopLoadingMore();
    const controller = new AbortController();
    loadController = controller;
    loading.value = true;
    error.value = null;
    bufferedDuringLoad = [];
    const searching = isSearch(filters.value);
    const key = countsKey(filters.value);
    // A search page brings no counts: the views' counts come from their own request when they are not on screen.
    const countsRequest = searching ? null : startCountsRequest();
    if (searching && countsShownFor !== key) void refreshCounts();
    try {
      const page = await conversationsApi.list({ ...toQuery(filters.value), limit: PAGE_SIZE }, controller.signal);
      if (token !== loadToken) return;
      const seen = new Set<string>();
      const fresh: Conversation[] = [];
      for (const served of page.items) {
        const key = String(served.id);
        if (seen.has(key)) continue;
        seen.add(key);
        const conversation = withKnownContact(served);
        // A live event may have brought a newer version while the page was in flight.
        const newer = known.get(key);
        const version = newer && isStale(conversation, newer) ? newer : conversation;
        remember(version);
        if (version === conversation || belongsToView(version, filters.value, meId.value)) fresh.push(version);
      }
      items.value = fresh;
      sortItems();
      nextCursor.value = page.next_cursor;
      pageEnd = lastOf(page);
      if (page.counts && countsRequest !== null) showCounts(countsRequest, page.counts, key);
      loaded.value = true;
      // Conversations that joined the view while the page was in flight.
      const buffered = bufferedDuringLoad ?? [];
      bufferedDuringLoad = null;
      for (const conversation of buffered) {
        if (!isStale(conversation, known.get(String(conversation.id)))) place(conversation);
      }
      if (searching) await continueSearch(token, controller.signal, fresh.length, 1);
    } catch (cause) {
      if (token !== loadToken || isAbort(cause)) return;
      error.value = isApiError(cause) ? cause : null;
      if (!isApiError(cause)) throw cause;
    } finally {
      if (token === loadToken) {
        loading.value = false;
        bufferedDuringLoad = null;
        loadController = null;
      }
      if (countsRequest !== null) endCountsRequest();
    }
  }

  /** The next page (during a search, the next round of pages: see SEARCH_ROUND_PAGES). */
  async function loadMore(): Promise<void> {
    if (!nextCursor.value || loading.value || loadingMore.value) return;
    const token = loadToken;
    const controller = new AbortController();
    moreController = controller;
    loadingMore.value = true;
    try {
      const found = await appendNextPage(token, controller.signal);
      if (isSearch(filters.value)) await continueSearch(token, controller.signal, found, 1);
    } catch (cause) {
      if (isAbort(cause)) return;
      if (token === loadToken) error.value = isApiError(cause) ? cause : null;
      if (!isApiError(cause)) throw cause;
    } finally {
      if (moreController === controller) {
        moreController = null;
        loadingMore.value = false;
      }
    }
  }

  function stopLoadingMore(): void {
    moreController?.abort();
    moreController = null;
    loadingMore.value = false;
  }

  /** Asks the pages after a short search page, while the round has found fewer than PAGE_SIZE matches. */
  async function continueSearch(token: number, signal: AbortSignal, found: number, asked: number): Promise<void> {
    while (token === loadToken && nextCursor.value !== null && found < PAGE_SIZE && asked < SEARCH_ROUND_PAGES) {
      found += await appendNextPage(token, signal);
      asked++;
    }
  }

  /** Fetches the page after nextCursor and adds its conversations to the list; returns how many were new. */
  async function appendNextPage(token: number, signal: AbortSignal): Promise<number> {
    const cursor = nextCursor.value;
    if (cursor === null) return 0;
    const page = await conversationsApi.list({ ...toQuery(filters.value), limit: PAGE_SIZE, cursor }, signal);
    if (token !== loadToken) return 0;
    const byKey = new Map(items.value.map((conversation, index) => [String(conversation.id), index]));
    const next = [...items.value];
    let added = 0;
    for (const served of page.items) {
      const key = String(served.id);
      const conversation = withKnownContact(served);
      const newer = known.get(key);
      const version = newer && isStale(conversation, newer) ? newer : conversation;
      remember(version);
      const index = byKey.get(key);
      if (index !== undefined) next[index] = version;
      else if (version === conversation || belongsToView(version, filters.value, meId.value)) {
        byKey.set(key, next.push(version) - 1);
        added++;
      }
    }
    items.value = next;
    sortItems();
    nextCursor.value = page.next_cursor;
    pageEnd = lastOf(page);
    return added;
  }

  /** Changes filters (view, status, sort...) and reloads the list when they differ. */
  async function setFilters(partial: Partial<ConversationFilters>): Promise<void> {
    const next = { ...filters.value, ...partial };
    const changed = (Object.keys(next) as (keyof ConversationFilters)[]).some((key) => next[key] !== filters.value[key]);
    if (!changed && loaded.value) return;
    filters.value = next;
    if (changed) {
      items.value = [];
      nextCursor.value = null;
      pageEnd = null;
    }
    await load();
  }

  /**
   * Applies a conversation coming from a live event (with its seq) or from an API answer.
   * Idempotent: applying the same version twice, or an older version after a newer one, changes nothing.
   * Returns whether anything was applied.
   */
  function applyConversation(received: Conversation, seq?: number, change: ConversationChange = "updated"): boolean {
    const key = String(received.id);
    if (seq !== undefined) {
      const lastSeq = seqById.get(key);
      if (lastSeq !== undefined && seq <= lastSeq) return false;
      seqById.set(key, seq);
    }
    const conversation = withKnownContact(received);
    const previous = known.get(key) ?? null;
    if (isStale(conversation, previous)) return false;
    remember(conversation);
    clearSettledAlert(conversation);

    if (current.value && sameId(current.value.id, conversation.id)) current.value = conversation;
    if (bufferedDuringLoad) bufferedDuringLoad.push(conversation);

    const counted = adjustCounts(previous, conversation, change);
    // A move while counts are being fetched, or just after, may already be in the server's answer.
    const racing = countsPending > 0 || Date.now() < countsSettleUntil;
    if (counted === "unknown" || (counted === "moved" && racing)) doubtCounts();
    place(conversation);
    return true;
  }

  /**
   * Applies a contact.updated event: the contact's new name, handle and picture replace the contact of every
   * conversation held (known versions, list rows, the open one, those buffered during a load). Only how the
   * contact is shown changes: updated_at, seqs, counts, order and the rows held stay as they were, and a
   * contact none of them has is only remembered (contactFacts). A replayed older event changes nothing.
   */
  function applyContact(contact: ContactRef, seq?: number): boolean {
    const contactKey = String(contact.id);
    const lastSeq = contactFacts.get(contactKey)?.seq;
    if (seq !== undefined && lastSeq != null && seq <= lastSeq) return false;
    contactFacts.set(contactKey, { contact, seq: seq ?? lastSeq ?? null });

    const patch = (conversation: Conversation): Conversation =>
      sameId(conversation.contact.id, contact.id) && !sameContact(conversation.contact, contact)
        ? { ...conversation, contact }
        : conversation;
    const patchedKnown: [string, Conversation][] = [];
    for (const [key, conversation] of known.entries()) {
      const next = patch(conversation);
      if (next !== conversation) patchedKnown.push([key, next]);
    }
    for (const [key, next] of patchedKnown) known.replace(key, next);

    const rows = items.value.map(patch);
    if (rows.some((row, index) => row !== items.value[index])) items.value = rows;
    if (current.value) {
      const open = patch(current.value);
      if (open !== current.value) current.value = open;
    }
    if (bufferedDuringLoad) bufferedDuringLoad = bufferedDuringLoad.map(patch);
    return true;
  }

  /** Marks the row of a conversation whose SLA clock just warned or breached (a breach wins over a warning). */
  function markSlaAlert(id: Id, metric: string, kind: "warning" | "breached"): void {
    const key = String(id);
    const existing = slaAlerts.value[key];
    if (existing?.kind === "breached" && kind === "warning") return;
    slaAlerts.value = { ...slaAlerts.value, [key]: { metric, kind } };
  }

  function clearSettledAlert(conversation: Conversation): void {
    const key = String(conversation.id);
    const alert = slaAlerts.value[key];
    if (!alert) return;
    const clock = (conversation.sla ?? []).find((c) => c.metric === alert.metric);
    if (clock && (clock.state === "warning" || clock.state === "breached")) return;
    if (!clock && conversation.status !== "resolved") return;
    const next = { ...slaAlerts.value };
    delete next[key];
    slaAlerts.value = next;
  }

  /** Inserts, replaces or removes the conversation in the list on screen, then re-sorts. */
  function place(conversation: Conversation): void {
    const index = items.value.findIndex((item) => sameId(item.id, conversation.id));
    const existing = index >= 0 ? items.value[index] : undefined;
    if (existing && isStale(conversation, existing)) return;
    const belongs = belongsToView(conversation, filters.value, meId.value);
    if (belongs && existing) {
      const next = [...items.value];
      next[index] = conversation;
      items.value = next;
    } else if (belongs && canInsert(conversation)) {
      items.value = [...items.value, conversation];
    } else if (!belongs && existing) {
      items.value = items.value.filter((_, i) => i !== index);
      return;
    } else {
      return;
    }
    sortItems();
  }

  /**
   * A new row is shown only where the server would have put it in the pages loaded so far, and
   * never during a text search, whose matching only the server knows. The next page brings the rows
   * that sort after its cursor's row (pageEnd): those are left to it, the others no page will bring
   * (the cursor's row itself included, when it comes back to the view). compareConversations is the
   * server's order to the last tie, so a row is never left to both sides, nor to neither.
   */
  function canInsert(conversation: Conversation): boolean {
    if (!loaded.value && !bufferedDuringLoad) return false;
    if (isSearch(filters.value)) return false;
    if (nextCursor.value === null) return true;
    // a cursor set without its page (none comes from the server so) has only the last row on screen to go by
    const end = pageEnd ?? items.value[items.value.length - 1];
    return end === undefined || compareConversations(listOrder(filters.value))(conversation, end) <= 0;
  }

  /**
   * Moves the sidebar counts at once when we know what changed: exactly, from the previous version we
   * know, or from none for a `created` event. Says "unknown" when it cannot know the delta, and the
   * server has to be asked: an update of a conversation this console never saw (or has forgotten),
   * whose previous views are unknown, and a count that would go below zero, which proves the local counts
   * had drifted. The counts never include a text search (countsQuery), so they move the same during one.
   */
  function adjustCounts(
    previous: Conversation | null,
    next: Conversation,
    change: ConversationChange,
  ): "unchanged" | "moved" | "unknown" {
    if (!previous && change !== "created") return "unknown";
    const before = previous ? viewsOf(previous, filters.value, meId.value) : new Set();
    const after = viewsOf(next, filters.value, meId.value);
    const updated = { ...counts.value };
    let moved = false;
    let drifted = false;
    for (const view of INBOX_VIEWS) {
      const delta = Number(after.has(view)) - Number(before.has(view));
      if (delta !== 0) moved = true;
      if (updated[view] + delta < 0) drifted = true;
      updated[view] = Math.max(0, updated[view] + delta);
    }
    if (!moved) return "unchanged";
    counts.value = updated;
    return drifted ? "unknown" : "moved";
  }

  /** The counts on screen may be off: the next request that brings counts corrects them. */
  function doubtCounts(): void {
    countsDoubtBefore = countsAsked;
    scheduleCountsRefresh();
  }

  /**
   * At most one correction waiting and none while counts are in flight (the answer schedules the next
   * one if it is still needed), COUNTS_MIN_INTERVAL_MS plus jitter after the doubt arose: a burst of
   * doubtful events costs one request, and consoles that saw the same burst spread their requests.
   */
  function scheduleCountsRefresh(): void {
    if (!loaded.value || countsTimer || countsPending > 0 || countsDoubtBefore === null) return;
    countsTimer = setTimeout(
      () => {
        countsTimer = null;
        if (countsDoubtBefore !== null && countsPending === 0) void refreshCounts();
      },
      COUNTS_MIN_INTERVAL_MS + Math.random() * COUNTS_JITTER_MS,
    );
  }

  /** Numbers a request that brings counts; its answer will settle every doubt that arose before now. */
  function startCountsRequest(): number {
    countsPending++;
    // This request covers what the waiting correction was for; a doubt during its flight schedules another.
    if (countsTimer) clearTimeout(countsTimer);
    countsTimer = null;
    return ++countsAsked;
  }

  function showCounts(request: number, answer: ConversationCounts, key: string): void {
    if (request < countsShown) return; // a later request already answered
    countsShown = request;
    countsShownFor = key;
    counts.value = answer;
    countsSettleUntil = Date.now() + COUNTS_SETTLE_MS;
    if (countsDoubtBefore !== null && countsDoubtBefore < request) countsDoubtBefore = null;
  }

  /** Answered, failed or superseded: a doubt still standing gets its correction. */
  function endCountsRequest(): void {
    countsPending = Math.max(0, countsPending - 1);
    scheduleCountsRefresh();
  }

  /** Fetches the counts now (reconnection, access change); live events ask through doubtCounts. */
  async function refreshCounts(): Promise<void> {
    const token = loadToken;
    const key = countsKey(filters.value);
    const request = startCountsRequest();
    try {
      const page = await conversationsApi.list({ ...countsQuery(filters.value), limit: 1 });
      if (token === loadToken && page.counts) showCounts(request, page.counts, key);
    } catch {
      // The doubt stands: endCountsRequest schedules another try. Counts are a hint, the list is the truth.
    } finally {
      endCountsRequest();
    }
  }

  /** Shows the conversation at once from what we know, then fetches its latest version. */
  async function open(id: Id): Promise<void> {
    const token = ++openToken;
    if (!current.value || !sameId(current.value.id, id)) current.value = known.get(String(id)) ?? null;
    currentError.value = null;
    try {
      const fresh = await conversationsApi.get(id);
      if (token !== openToken) return;
      applyConversation(fresh);
      current.value = known.get(String(id)) ?? fresh;
    } catch (cause) {
      if (token !== openToken) return;
      if (!isApiError(cause)) throw cause;
      currentError.value = cause;
    }
  }

  function close(): void {
    openToken++;
    current.value = null;
    currentError.value = null;
  }

  async function update(id: Id, patch: ConversationPatch): Promise<Conversation> {
    const conversation = await conversationsApi.update(id, patch);
    applyConversation(conversation);
    return conversation;
  }

  async function claim(id: Id): Promise<Conversation> {
    try {
      const conversation = await conversationsApi.claim(id);
      applyConversation(conversation);
      return conversation;
    } catch (cause) {
      if (!isApiError(cause, "conflict")) throw cause;
      const fresh = await conversationsApi.get(id).catch(() => null);
      if (fresh) applyConversation(fresh);
      throw new ClaimConflictError(fresh?.assignee ?? null, cause);
    }
  }

  function get(id: Id): Conversation | null {
    return known.get(String(id)) ?? null;
  }

  function reset(): void {
    loadToken++;
    loadController?.abort();
    stopLoadingMore();
    if (countsTimer) clearTimeout(countsTimer);
    countsTimer = null;
    countsDoubtBefore = null;
    countsShownFor = null;
    countsSettleUntil = 0;
    filters.value = { ...DEFAULT_FILTERS };
    items.value = [];
    nextCursor.value = null;
    pageEnd = null;
    counts.value = { mine: 0, unassigned: 0, all: 0 };
    loaded.value = false;
    loading.value = false;
    error.value = null;
    current.value = null;
    currentError.value = null;
    known.clear();
    seqById.clear();
    contactFacts.clear();
    slaAlerts.value = {};
  }

  return {
    filters,
    items,
    nextCursor,
    counts,
    loading,
    loadingMore,
    loaded,
    error,
    current,
    currentError,
    slaAlerts,
    markSlaAlert,
    hasMore,
    load,
    loadMore,
    setFilters,
    applyConversation,
    applyContact,
    refreshCounts,
    open,
    close,
    update,
    claim,
    get,
    reset,
  };
});

/** The row a page's next_cursor stands at (its last), or null when no page follows. */
function lastOf(page: ConversationPage): Conversation | null {
  return page.next_cursor === null ? null : (page.items[page.items.length - 1] ?? null);
}

const sameContact = (a: ContactRef, b: ContactRef): boolean =>
  sameId(a.id, b.id) && a.name === b.name && a.handle === b.handle && a.avatar_url === b.avatar_url;

function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}
