import { beforeEach, describe, expect, it, vi } from "vitest";
import { ApiError, conversationsApi, type ConversationPage } from "@/api";
import {
  COUNTS_JITTER_MS,
  COUNTS_MIN_INTERVAL_MS,
  COUNTS_SETTLE_MS,
  ClaimConflictError,
  useConversationStore,
} from "@/stores/conversations";
import { ME, OTHER, conversation } from "../factories";
import { storeSession } from "../storeSession";

function page(items: ConversationPage["items"], extra: Partial<ConversationPage> = {}): ConversationPage {
  return { items, next_cursor: null, counts: { mine: 0, unassigned: items.length, all: items.length }, ...extra };
}

const ids = (store: ReturnType<typeof useConversationStore>) => store.items.map((c) => c.id);

describe("conversation store: live events", () => {
  const session = storeSession();

  async function unassignedView(items = [conversation({ id: 1, waiting_since: "2026-11-23T10:00:00Z" })]) {
    session.list.mockResolvedValueOnce(page(items, { counts: { mine: 3, unassigned: items.length, all: 10 } }));
    const store = useConversationStore();
    await store.setFilters({ view: "unassigned", status: "open" });
    return store;
  }

  it("inserts a new conversation that matches the view, in waiting order", async () => {
    const store = await unassignedView([
      conversation({ id: 1, waiting_since: "2026-11-23T10:00:00Z" }),
      conversation({ id: 2, waiting_since: "2026-11-23T12:00:00Z" }),
    ]);
    store.applyConversation(conversation({ id: 3, waiting_since: "2026-11-23T11:00:00Z" }), 1, "created");
    expect(ids(store)).toEqual([1, 3, 2]);
    expect(store.counts).toEqual({ mine: 3, unassigned: 3, all: 11 });
  });

  it("applies the same event twice only once", async () => {
    const store = await unassignedView();
    const created = conversation({ id: 3 });
    expect(store.applyConversation(created, 5, "created")).toBe(true);
    expect(store.applyConversation(created, 5, "created")).toBe(false);
    expect(ids(store)).toEqual([1, 3]);
    expect(store.counts.unassigned).toBe(2);
  });

  it("replaces a conversation by id and re-sorts", async () => {
    const store = await unassignedView([
      conversation({ id: 1, waiting_since: "2026-11-23T10:00:00Z" }),
      conversation({ id: 2, waiting_since: "2026-11-23T11:00:00Z" }),
    ]);
    // The customer of #1 got an answer: no longer waiting, goes below those who wait.
    store.applyConversation(
      conversation({ id: 1, waiting_since: null, priority: "high", updated_at: "2026-11-23T14:00:00Z" }),
      7,
    );
    expect(ids(store)).toEqual([2, 1]);
    expect(store.items[1]?.priority).toBe("high");
    expect(store.items).toHaveLength(2);
  });

  it("removes a conversation claimed by someone else while viewing Unassigned", async () => {
    const store = await unassignedView([conversation({ id: 1 }), conversation({ id: 2 })]);
    store.applyConversation(conversation({ id: 1, assignee: OTHER, updated_at: "2026-11-23T14:00:00Z" }), 8);
    expect(ids(store)).toEqual([2]);
    expect(store.counts).toEqual({ mine: 3, unassigned: 1, all: 10 });
  });

  it("adds a conversation to Mine when it is assigned to me, and drops it when resolved", async () => {
    session.list.mockResolvedValueOnce(page([], { counts: { mine: 0, unassigned: 1, all: 1 } }));
    const store = useConversationStore();
    await store.setFilters({ view: "mine" });
    store.applyConversation(conversation({ id: 9, assignee: { id: ME.id, name: ME.name } }), 1);
    expect(ids(store)).toEqual([9]);
    store.applyConversation(
      conversation({ id: 9, assignee: { id: ME.id, name: ME.name }, status: "resolved", updated_at: "2026-11-23T15:00:00Z" }),
      2,
    );
    expect(ids(store)).toEqual([]);
  });

  it("ignores a replayed older event that arrives after a newer one", async () => {
    const store = await unassignedView([conversation({ id: 1 })]);
    store.applyConversation(conversation({ id: 1, assignee: OTHER, updated_at: "2026-11-23T14:00:00Z" }), 10);
    expect(ids(store)).toEqual([]);
    // Replay out of order: seq 9 (still unassigned) must not bring it back.
    expect(store.applyConversation(conversation({ id: 1, updated_at: "2026-11-23T13:30:00Z" }), 9)).toBe(false);
    expect(ids(store)).toEqual([]);
  });

  it("ignores an API answer older than what a live event brought", async () => {
    const store = await unassignedView([conversation({ id: 1 })]);
    store.applyConversation(conversation({ id: 1, priority: "urgent", updated_at: "2026-11-23T14:00:00Z" }), 3);
    expect(store.applyConversation(conversation({ id: 1, priority: "low", updated_at: "2026-11-23T13:59:00Z" }))).toBe(false);
    expect(store.items[0]?.priority).toBe("urgent");
  });

  it("does not insert rows past the loaded pages, nor during a text search", async () => {
    const store = await unassignedView();
    store.nextCursor = "more";
    store.applyConversation(conversation({ id: 20, waiting_since: "2026-11-23T12:00:00Z" }), 1, "created");
    expect(ids(store)).toEqual([1]);
    store.applyConversation(conversation({ id: 21, waiting_since: "2026-11-23T09:00:00Z" }), 2, "created");
    expect(ids(store)).toEqual([21, 1]);

    session.list.mockResolvedValueOnce(page([conversation({ id: 1 })]));
    await store.setFilters({ q: "remboursement" });
    store.applyConversation(conversation({ id: 22, waiting_since: "2026-11-23T08:00:00Z" }), 3, "created");
    expect(ids(store)).toEqual([1]);
  });

  it("sorts by newest activity when asked", async () => {
    session.list.mockResolvedValueOnce(page([]));
    const store = useConversationStore();
    await store.setFilters({ view: "all", sort: "newest" });
    store.applyConversation(conversation({ id: 1, last_message: { text: "a", direction: "in", at: "2026-11-23T10:00:00Z" } }), 1);
    store.applyConversation(conversation({ id: 2, last_message: { text: "b", direction: "in", at: "2026-11-23T11:00:00Z" } }), 2);
    expect(ids(store)).toEqual([2, 1]);
  });

  it("keeps live events that arrive while the first page is in flight", async () => {
    let resolve!: (value: ConversationPage) => void;
    session.list.mockReturnValueOnce(new Promise((r) => (resolve = r)));
    const store = useConversationStore();
    const loading = store.setFilters({ view: "unassigned" });
    store.applyConversation(conversation({ id: 1, assignee: OTHER, updated_at: "2026-11-23T14:00:00Z" }), 4);
    store.applyConversation(conversation({ id: 5 }), 5, "created");
    resolve(page([conversation({ id: 1 }), conversation({ id: 2 })]));
    await loading;
    expect(ids(store).sort()).toEqual([2, 5]);
  });

  it("updates the open conversation even when it is not in the list", async () => {
    const store = await unassignedView([]);
    vi.spyOn(conversationsApi, "get").mockResolvedValueOnce(conversation({ id: 42, assignee: OTHER }));
    await store.open(42);
    store.applyConversation(conversation({ id: 42, status: "resolved", assignee: OTHER, updated_at: "2026-11-23T16:00:00Z" }), 1);
    expect(store.current?.status).toBe("resolved");
    expect(ids(store)).toEqual([]);
  });

  it("says who holds a conversation when a claim conflicts", async () => {
    const store = await unassignedView([conversation({ id: 1 })]);
    vi.spyOn(conversationsApi, "claim").mockRejectedValueOnce(
      new ApiError(409, { code: "conflict", message: "already assigned" }),
    );
    vi.spyOn(conversationsApi, "get").mockResolvedValueOnce(
      conversation({ id: 1, assignee: OTHER, updated_at: "2026-11-23T14:00:00Z" }),
    );
    const claim = store.claim(1);
    await expect(claim).rejects.toBeInstanceOf(ClaimConflictError);
    await expect(claim).rejects.toMatchObject({ holder: OTHER });
    expect(ids(store)).toEqual([]);
  });
});

describe("conversation store: live rows at the end of the loaded pages", () => {
  const session = storeSession();
  const T = "2026-11-23T12:00:00Z";
  const said = (iso: string) => ({ text: "…", direction: "in" as const, at: iso });

  /**
   * A live conversation is inserted when it sorts before the last row of the pages (the cursor's row): the next
   * page starts after that row, so it will not bring it. Otherwise the next page brings it, in its place.
   */
  async function firstPage(sort: "waiting" | "newest", items: ReturnType<typeof conversation>[]) {
    session.list.mockResolvedValueOnce(page(items, { next_cursor: "after-last" }));
    const store = useConversationStore();
    await store.setFilters({ view: "all", sort });
    return store;
  }

  it("newest: inserts a conversation tied with the last row and a higher id (the server puts it before)", async () => {
    const store = await firstPage("newest", [
      conversation({ id: 9, waiting_since: null, last_message: said("2026-11-23T13:00:00Z") }),
      conversation({ id: 5, waiting_since: null, last_message: said(T) }),
    ]);
    store.applyConversation(conversation({ id: 7, waiting_since: null, last_message: said(T) }), 1, "created");
    expect(ids(store)).toEqual([9, 7, 5]);
  });

  it("newest: leaves a conversation tied with the last row and a lower id to the next page, which brings it once", async () => {
    const store = await firstPage("newest", [
      conversation({ id: 9, waiting_since: null, last_message: said("2026-11-23T13:00:00Z") }),
      conversation({ id: 5, waiting_since: null, last_message: said(T) }),
    ]);
    const tied = conversation({ id: 3, waiting_since: null, last_message: said(T) });
    store.applyConversation(tied, 1, "created");
    expect(ids(store)).toEqual([9, 5]);

    session.list.mockResolvedValueOnce(page([tied, conversation({ id: 8, waiting_since: null, last_message: said("2026-11-23T11:00:00Z") })]));
    await store.loadMore();
    expect(ids(store)).toEqual([9, 5, 3, 8]);
  });

  it("waiting: the tail of answered conversations breaks ties by id descending too", async () => {
    const store = await firstPage("waiting", [
      conversation({ id: 1, waiting_since: "2026-11-23T09:00:00Z" }),
      conversation({ id: 5, waiting_since: null, last_message: said(T) }),
    ]);
    store.applyConversation(conversation({ id: 3, waiting_since: null, last_message: said(T) }), 1, "created");
    expect(ids(store)).toEqual([1, 5]);
    store.applyConversation(conversation({ id: 8, waiting_since: null, last_message: said(T) }), 2, "created");
    expect(ids(store)).toEqual([1, 8, 5]);
  });

  it("waiting: the same waiting_since as the last row goes by id ascending", async () => {
    const store = await firstPage("waiting", [
      conversation({ id: 1, waiting_since: "2026-11-23T09:00:00Z" }),
      conversation({ id: 5, waiting_since: "2026-11-23T10:00:00Z" }),
    ]);
    store.applyConversation(conversation({ id: 8, waiting_since: "2026-11-23T10:00:00Z" }), 1, "created");
    expect(ids(store)).toEqual([1, 5]);
    store.applyConversation(conversation({ id: 3, waiting_since: "2026-11-23T10:00:00Z" }), 2, "created");
    expect(ids(store)).toEqual([1, 3, 5]);
  });

  it("compares with the row the next page starts after, even once that row has moved", async () => {
    const store = await firstPage("newest", [
      conversation({ id: 1, waiting_since: null, last_message: said("2026-11-23T12:00:00Z") }),
      conversation({ id: 2, waiting_since: null, last_message: said("2026-11-23T11:00:00Z") }),
    ]);
    // #2 gets a new message and goes to the top; the server's cursor still stands at its old place (11:00)
    store.applyConversation(
      conversation({ id: 2, waiting_since: null, last_message: said("2026-11-23T13:00:00Z"), updated_at: "2026-11-23T13:00:00Z" }),
      1,
    );
    expect(ids(store)).toEqual([2, 1]);
    // 11:30 is before the cursor: no page will bring it
    store.applyConversation(conversation({ id: 3, waiting_since: null, last_message: said("2026-11-23T11:30:00Z") }), 2, "created");
    expect(ids(store)).toEqual([2, 1, 3]);
    // 10:30 is after it: the next page will
    store.applyConversation(conversation({ id: 4, waiting_since: null, last_message: said("2026-11-23T10:30:00Z") }), 3, "created");
    expect(ids(store)).toEqual([2, 1, 3]);
  });

  it("waiting: a last row that stopped waiting does not let in conversations the next page will bring", async () => {
    const store = await firstPage("waiting", [
      conversation({ id: 1, waiting_since: "2026-11-23T09:00:00Z" }),
      conversation({ id: 2, waiting_since: "2026-11-23T10:00:00Z" }),
    ]);
    store.applyConversation(conversation({ id: 2, waiting_since: null, updated_at: "2026-11-23T14:00:00Z" }), 1);
    expect(ids(store)).toEqual([1, 2]);
    store.applyConversation(conversation({ id: 3, waiting_since: "2026-11-23T10:30:00Z" }), 2, "created");
    expect(ids(store)).toEqual([1, 2]);
    store.applyConversation(conversation({ id: 4, waiting_since: "2026-11-23T09:30:00Z" }), 3, "created");
    expect(ids(store)).toEqual([1, 4, 2]);
  });
});

describe("conversation store: sidebar counts", () => {
  const session = storeSession();
  /** The counts requests (limit 1) the store sent, by fake time. */
  let countsAt: number[];
  const LONGEST_WAIT = COUNTS_MIN_INTERVAL_MS + COUNTS_JITTER_MS;
  const SERVER = { mine: 4, unassigned: 7, all: 12 };

  beforeEach(() => {
    countsAt = [];
    session.list.mockImplementation(async (query) => {
      if (query.limit === 1) countsAt.push(Date.now());
      return page([], { counts: SERVER });
    });
  });

  /** Unassigned view with #1 (unassigned) and #2 (mine) known; past the settling time of the first page's counts. */
  async function settledView() {
    session.list.mockResolvedValueOnce(
      page([conversation({ id: 1 }), conversation({ id: 2, assignee: { id: ME.id, name: ME.name } })], {
        counts: { mine: 3, unassigned: 5, all: 10 },
      }),
    );
    const store = useConversationStore();
    await store.setFilters({ view: "unassigned", status: "open" });
    await vi.advanceTimersByTimeAsync(COUNTS_SETTLE_MS);
    return store;
  }

  let seq = 0;
  const later = (minutes: number) => new Date(Date.UTC(2026, 10, 23, 14, minutes)).toISOString();

  it("moves the counts locally for changes of known conversations, without asking the server", async () => {
    const store = await settledView();
    store.applyConversation(conversation({ id: 1, assignee: OTHER, updated_at: later(1) }), ++seq);
    store.applyConversation(conversation({ id: 2, status: "resolved", updated_at: later(2) }), ++seq);
    store.applyConversation(conversation({ id: 1, priority: "high", assignee: OTHER, updated_at: later(3) }), ++seq);
    expect(store.counts).toEqual({ mine: 2, unassigned: 4, all: 9 });
    await vi.advanceTimersByTimeAsync(10 * LONGEST_WAIT);
    expect(session.list).toHaveBeenCalledTimes(1); // the first page only
    expect(store.counts).toEqual({ mine: 2, unassigned: 4, all: 9 });
  });

  it("counts created conversations locally, without asking the server", async () => {
    const store = await settledView();
    store.applyConversation(conversation({ id: 3 }), ++seq, "created");
    store.applyConversation(conversation({ id: 4, assignee: OTHER }), ++seq, "created");
    // Another status: in none of the views of these filters.
    store.applyConversation(conversation({ id: 5, status: "resolved" }), ++seq, "created");
    expect(store.counts).toEqual({ mine: 3, unassigned: 6, all: 12 });
    await vi.advanceTimersByTimeAsync(10 * LONGEST_WAIT);
    expect(countsAt).toEqual([]);
  });

  it("asks the server once, after the delay, for updates of conversations it never saw", async () => {
    const store = await settledView();
    for (let id = 100; id < 150; id++) {
      store.applyConversation(conversation({ id, assignee: OTHER, updated_at: later(1) }), ++seq);
      await vi.advanceTimersByTimeAsync(100); // 5 s of events
    }
    expect(store.counts).toEqual({ mine: 3, unassigned: 5, all: 10 }); // which views they left is unknown
    await vi.advanceTimersByTimeAsync(COUNTS_MIN_INTERVAL_MS - 5000 - 1);
    expect(countsAt).toEqual([]);
    await vi.advanceTimersByTimeAsync(COUNTS_JITTER_MS + 1);
    expect(countsAt).toHaveLength(1);
    expect(session.list).toHaveBeenLastCalledWith(expect.objectContaining({ assignee: "none", status: "open", limit: 1 }));
    expect(store.counts).toEqual(SERVER);
    await vi.advanceTimersByTimeAsync(10 * LONGEST_WAIT);
    expect(countsAt).toHaveLength(1);
  });

  it("spreads the corrections of the consoles over the jitter", async () => {
    const store = await settledView();
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    store.applyConversation(conversation({ id: 100, updated_at: later(1) }), ++seq);
    await vi.advanceTimersByTimeAsync(COUNTS_MIN_INTERVAL_MS + 0.99 * COUNTS_JITTER_MS);
    expect(countsAt).toEqual([]);
    await vi.advanceTimersByTimeAsync(0.01 * COUNTS_JITTER_MS);
    expect(countsAt).toHaveLength(1);
  });

  it("never sends two counts requests closer than the minimum interval, nor two at once", async () => {
    let inFlight = 0;
    let mostInFlight = 0;
    const store = await settledView();
    session.list.mockImplementation(async () => {
      countsAt.push(Date.now());
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 3000)); // a slow server
      inFlight--;
      return page([], { counts: SERVER });
    });
    // A busy brand: 10 events a second for two minutes, of conversations known or not, moving the counts or not.
    for (let i = 0; i < 1200; i++) {
      const id = i % 3 === 0 ? 1000 + i : 1 + (i % 2);
      const updatedAt = new Date(Date.UTC(2026, 10, 24) + i * 1000).toISOString();
      store.applyConversation(conversation({ id, assignee: i % 4 === 0 ? OTHER : null, updated_at: updatedAt }), ++seq);
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(countsAt.length).toBeGreaterThanOrEqual(5);
    expect(countsAt.length).toBeLessThanOrEqual(120_000 / COUNTS_MIN_INTERVAL_MS);
    for (let i = 1; i < countsAt.length; i++) {
      expect(countsAt[i]! - countsAt[i - 1]!).toBeGreaterThanOrEqual(COUNTS_MIN_INTERVAL_MS);
    }
    expect(mostInFlight).toBe(1);
  });

  it("checks again when the counts moved while they were being fetched", async () => {
    const store = await settledView();
    let answer!: (value: ConversationPage) => void;
    session.list.mockReturnValueOnce(new Promise((resolve) => (answer = resolve)));
    const refresh = store.refreshCounts();
    // Claimed by someone else while the request is out: the answer may or may not count it.
    store.applyConversation(conversation({ id: 1, assignee: OTHER, updated_at: later(1) }), ++seq);
    answer(page([], { counts: { mine: 3, unassigned: 5, all: 10 } }));
    await refresh;
    expect(store.counts).toEqual({ mine: 3, unassigned: 5, all: 10 });
    await vi.advanceTimersByTimeAsync(LONGEST_WAIT);
    expect(countsAt).toHaveLength(1);
    expect(store.counts).toEqual(SERVER);
  });

  it("checks again when the counts move just after an answer, whose snapshot may hold the change", async () => {
    const store = await settledView();
    await store.refreshCounts();
    expect(countsAt).toHaveLength(1);
    store.applyConversation(conversation({ id: 1, assignee: OTHER, updated_at: later(1) }), ++seq);
    await vi.advanceTimersByTimeAsync(LONGEST_WAIT);
    expect(countsAt).toHaveLength(2);
    // Past the settling time, the same kind of change is trusted.
    await vi.advanceTimersByTimeAsync(COUNTS_SETTLE_MS);
    store.applyConversation(conversation({ id: 2, status: "resolved", updated_at: later(2) }), ++seq);
    await vi.advanceTimersByTimeAsync(10 * LONGEST_WAIT);
    expect(countsAt).toHaveLength(2);
  });

  it("does not check again for changes that leave the counts as they were", async () => {
    const store = await settledView();
    let answer!: (value: ConversationPage) => void;
    session.list.mockReturnValueOnce(new Promise((resolve) => (answer = resolve)));
    const refresh = store.refreshCounts();
    store.applyConversation(conversation({ id: 1, priority: "urgent", updated_at: later(1) }), ++seq);
    answer(page([], { counts: SERVER }));
    await refresh;
    await vi.advanceTimersByTimeAsync(10 * LONGEST_WAIT);
    expect(session.list).toHaveBeenCalledTimes(2);
  });

  it("fetches at once when asked (reconnection), which stands for the waiting correction", async () => {
    const store = await settledView();
    store.applyConversation(conversation({ id: 100, assignee: OTHER, updated_at: later(1) }), ++seq);
    await vi.advanceTimersByTimeAsync(1000);
    await store.refreshCounts();
    expect(countsAt).toHaveLength(1);
    expect(store.counts).toEqual(SERVER);
    await vi.advanceTimersByTimeAsync(10 * LONGEST_WAIT);
    expect(countsAt).toHaveLength(1);
  });

  it("tries again after the interval when a correction fails", async () => {
    const store = await settledView();
    vi.spyOn(Math, "random").mockReturnValue(0);
    session.list.mockRejectedValueOnce(new ApiError(503, { code: "unavailable", message: "down" }));
    store.applyConversation(conversation({ id: 100, assignee: OTHER, updated_at: later(1) }), ++seq);
    await vi.advanceTimersByTimeAsync(COUNTS_MIN_INTERVAL_MS);
    expect(session.list).toHaveBeenCalledTimes(2);
    expect(store.counts).toEqual({ mine: 3, unassigned: 5, all: 10 });
    await vi.advanceTimersByTimeAsync(COUNTS_MIN_INTERVAL_MS - 1);
    expect(countsAt).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(countsAt).toHaveLength(1);
    expect(store.counts).toEqual(SERVER);
  });

  it("keeps the views' counts during a text search, and never sends the search with them", async () => {
    const store = await settledView();
    // As the server answers: a search page has no counts.
    session.list.mockResolvedValueOnce(page([conversation({ id: 1 })], { counts: undefined }));
    await store.setFilters({ q: "remboursement" });
    expect(store.counts).toEqual({ mine: 3, unassigned: 5, all: 10 });
    // The counts are the views' (not the search's): a new conversation counts whether it matches or not.
    store.applyConversation(conversation({ id: 3 }), ++seq, "created");
    expect(store.counts).toEqual({ mine: 3, unassigned: 6, all: 11 });
    // A conversation never seen: the correction asks the views' counts, without q.
    store.applyConversation(conversation({ id: 100, assignee: OTHER, updated_at: later(1) }), ++seq);
    await vi.advanceTimersByTimeAsync(LONGEST_WAIT);
    expect(countsAt).toHaveLength(1);
    expect(session.list).toHaveBeenLastCalledWith(expect.objectContaining({ status: "open", limit: 1, q: undefined }));
    expect(store.counts).toEqual(SERVER);
  });

  it("corrects the counts after events that came while the first page was in flight", async () => {
    let answer!: (value: ConversationPage) => void;
    session.list.mockReturnValueOnce(new Promise((resolve) => (answer = resolve)));
    const store = useConversationStore();
    const loading = store.setFilters({ view: "unassigned" });
    store.applyConversation(conversation({ id: 5 }), ++seq, "created");
    answer(page([conversation({ id: 1 })], { counts: { mine: 0, unassigned: 1, all: 1 } }));
    await loading;
    expect(store.counts).toEqual({ mine: 0, unassigned: 1, all: 1 });
    await vi.advanceTimersByTimeAsync(LONGEST_WAIT);
    expect(countsAt).toHaveLength(1);
    expect(store.counts).toEqual(SERVER);
  });

  it("asks the server when a count would go below zero: the local counts had drifted", async () => {
    session.list.mockResolvedValueOnce(page([conversation({ id: 1 })], { counts: { mine: 0, unassigned: 0, all: 1 } }));
    const store = useConversationStore();
    await store.setFilters({ view: "unassigned" });
    await vi.advanceTimersByTimeAsync(COUNTS_SETTLE_MS);
    store.applyConversation(conversation({ id: 1, assignee: OTHER, updated_at: later(1) }), ++seq);
    expect(store.counts).toEqual({ mine: 0, unassigned: 0, all: 1 });
    await vi.advanceTimersByTimeAsync(LONGEST_WAIT);
    expect(countsAt).toHaveLength(1);
    expect(store.counts).toEqual(SERVER);
  });

  it("forgets a waiting correction on sign-out", async () => {
    const store = await settledView();
    store.applyConversation(conversation({ id: 100, updated_at: later(1) }), ++seq);
    store.reset();
    await vi.advanceTimersByTimeAsync(10 * LONGEST_WAIT);
    expect(session.list).toHaveBeenCalledTimes(1);
  });
});

describe("conversation store: contact.updated", () => {
  const session = storeSession();
  const UNNAMED = { id: 500, name: null, handle: null, avatar_url: null };
  const LOOKED_UP = { id: 500, name: "Léa Martin", handle: "lea.martin", avatar_url: "https://cdn.example/lea.jpg" };
  const OTHER_CONTACT = { id: 600, name: null, handle: "paul", avatar_url: null };

  /** Unassigned view: #1 and #2 of contact 500 (no name yet), #3 of contact 600; #1 open. */
  async function heldView() {
    session.list.mockResolvedValueOnce(
      page(
        [
          conversation({ id: 1, contact: UNNAMED, waiting_since: "2026-11-23T10:00:00Z", updated_at: "2026-11-23T10:00:00Z" }),
          conversation({ id: 2, contact: UNNAMED, waiting_since: "2026-11-23T12:00:00Z", updated_at: "2026-11-23T12:00:00Z" }),
          conversation({ id: 3, contact: OTHER_CONTACT, waiting_since: "2026-11-23T11:00:00Z", updated_at: "2026-11-23T11:00:00Z" }),
        ],
        { counts: { mine: 2, unassigned: 3, all: 9 } },
      ),
    );
    const store = useConversationStore();
    await store.setFilters({ view: "unassigned", status: "open" });
    vi.spyOn(conversationsApi, "get").mockResolvedValueOnce(
      conversation({ id: 1, contact: UNNAMED, waiting_since: "2026-11-23T10:00:00Z", updated_at: "2026-11-23T10:00:00Z" }),
    );
    await store.open(1);
    return store;
  }

  const row = (store: ReturnType<typeof useConversationStore>, id: number) => store.items.find((c) => c.id === id);

  it("shows the new name and picture in the list rows and the open conversation", async () => {
    const store = await heldView();
    expect(store.applyContact(LOOKED_UP, 20)).toBe(true);
    expect(row(store, 1)?.contact).toEqual(LOOKED_UP);
    expect(row(store, 2)?.contact).toEqual(LOOKED_UP);
    expect(store.current?.contact).toEqual(LOOKED_UP);
    expect(store.get(2)?.contact).toEqual(LOOKED_UP);
  });

  it("leaves the rows of other contacts as they were", async () => {
    const store = await heldView();
    const before = row(store, 3);
    store.applyContact(LOOKED_UP, 20);
    expect(row(store, 3)).toBe(before);
    expect(row(store, 3)?.contact).toEqual(OTHER_CONTACT);
  });

  it("creates nothing for a contact none of the held conversations has", async () => {
    const store = await heldView();
    const items = store.items;
    const current = store.current;
    store.applyContact({ id: 999, name: "Inconnu", handle: null, avatar_url: null }, 20);
    expect(store.items).toBe(items);
    expect(store.current).toBe(current);
    expect(store.get(999)).toBeNull();
    expect(ids(store)).toEqual([1, 3, 2]);
  });

  it("keeps updated_at, the order and the counts, and asks the server for nothing", async () => {
    const store = await heldView();
    const calls = session.list.mock.calls.length;
    store.applyContact(LOOKED_UP, 20);
    expect(ids(store)).toEqual([1, 3, 2]);
    expect(store.items.map((c) => c.updated_at)).toEqual([
      "2026-11-23T10:00:00Z",
      "2026-11-23T11:00:00Z",
      "2026-11-23T12:00:00Z",
    ]);
    expect(store.current?.updated_at).toBe("2026-11-23T10:00:00Z");
    expect(store.counts).toEqual({ mine: 2, unassigned: 3, all: 9 });
    await vi.advanceTimersByTimeAsync(COUNTS_MIN_INTERVAL_MS + COUNTS_JITTER_MS);
    expect(session.list).toHaveBeenCalledTimes(calls);
    // The conversation events that follow are still applied by their own seq.
    expect(store.applyConversation(conversation({ id: 2, contact: LOOKED_UP, priority: "high", updated_at: "2026-11-23T14:00:00Z" }), 1)).toBe(true);
    expect(row(store, 2)?.priority).toBe("high");
  });

  it("is not undone by a later snapshot with the same updated_at and no name", async () => {
    const store = await heldView();
    store.applyContact(LOOKED_UP, 20);
    // An event written before the lookup stored the name, delivered after it.
    expect(
      store.applyConversation(
        conversation({ id: 1, contact: UNNAMED, priority: "high", waiting_since: "2026-11-23T10:00:00Z", updated_at: "2026-11-23T10:00:00Z" }),
        21,
      ),
    ).toBe(true);
    expect(row(store, 1)?.priority).toBe("high");
    expect(row(store, 1)?.contact).toEqual(LOOKED_UP);
    expect(store.current?.contact).toEqual(LOOKED_UP);
    // An API answer read before the lookup, and a list page, neither.
    store.applyConversation(conversation({ id: 2, contact: UNNAMED, waiting_since: "2026-11-23T12:00:00Z", updated_at: "2026-11-23T12:00:00Z" }));
    expect(row(store, 2)?.contact).toEqual(LOOKED_UP);
    session.list.mockResolvedValueOnce(
      page([conversation({ id: 2, contact: UNNAMED, waiting_since: "2026-11-23T12:00:00Z", updated_at: "2026-11-23T12:00:00Z" })]),
    );
    await store.load();
    expect(row(store, 2)?.contact).toEqual(LOOKED_UP);
  });

  it("keeps the looked-up name for a page that was in flight when the event came", async () => {
    let resolve!: (value: ConversationPage) => void;
    session.list.mockReturnValueOnce(new Promise((r) => (resolve = r)));
    const store = useConversationStore();
    const loading = store.setFilters({ view: "unassigned" });
    store.applyContact(LOOKED_UP, 20);
    resolve(page([conversation({ id: 1, contact: UNNAMED })]));
    await loading;
    expect(row(store, 1)?.contact).toEqual(LOOKED_UP);
  });

  it("gives way to a later snapshot that carries another name", async () => {
    const store = await heldView();
    store.applyContact(LOOKED_UP, 20);
    const renamed = { ...LOOKED_UP, name: "Léa M." };
    store.applyConversation(
      conversation({ id: 1, contact: renamed, waiting_since: "2026-11-23T10:00:00Z", updated_at: "2026-11-23T10:00:00Z" }),
      21,
    );
    expect(row(store, 1)?.contact).toEqual(renamed);
    expect(store.current?.contact).toEqual(renamed);
    // ...and what a snapshot without a name then keeps is that name.
    store.applyConversation(conversation({ id: 1, contact: UNNAMED, waiting_since: "2026-11-23T10:00:00Z", updated_at: "2026-11-23T10:00:00Z" }), 22);
    expect(row(store, 1)?.contact.name).toBe("Léa M.");
  });

  it("ignores a replayed older contact.updated", async () => {
    const store = await heldView();
    store.applyContact(LOOKED_UP, 20);
    expect(store.applyContact({ ...LOOKED_UP, name: "Ancien nom" }, 19)).toBe(false);
    expect(row(store, 1)?.contact).toEqual(LOOKED_UP);
  });

  it("forgets the looked-up facts on sign-out", async () => {
    const store = await heldView();
    store.applyContact(LOOKED_UP, 20);
    store.reset();
    store.applyConversation(conversation({ id: 1, contact: UNNAMED }));
    expect(store.get(1)?.contact).toEqual(UNNAMED);
  });
});
