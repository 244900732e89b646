import { createPinia, setActivePinia } from "pinia";
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from "vitest";
import { ApiError, conversationsApi, type ConversationPage } from "@/api";
import { useAuthStore } from "@/stores/auth";
import { ClaimConflictError, useConversationStore } from "@/stores/conversations";
import { ME, OTHER, conversation } from "../factories";

function page(items: ConversationPage["items"], extra: Partial<ConversationPage> = {}): ConversationPage {
  return { items, next_cursor: null, counts: { mine: 0, unassigned: items.length, all: items.length }, ...extra };
}

const ids = (store: ReturnType<typeof useConversationStore>) => store.items.map((c) => c.id);

describe("conversation store: live events", () => {
  let listSpy: MockInstance<typeof conversationsApi.list>;

  beforeEach(() => {
    setActivePinia(createPinia());
    useAuthStore().startSession({ agent: ME, csrf_token: "t" });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    listSpy = vi.spyOn(conversationsApi, "list");
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  async function unassignedView(items = [conversation({ id: 1, waiting_since: "2026-11-23T10:00:00Z" })]) {
    listSpy.mockResolvedValueOnce(page(items, { counts: { mine: 3, unassigned: items.length, all: 10 } }));
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
    listSpy.mockResolvedValueOnce(page([], { counts: { mine: 0, unassigned: 1, all: 1 } }));
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

    listSpy.mockResolvedValueOnce(page([conversation({ id: 1 })]));
    await store.setFilters({ q: "remboursement" });
    store.applyConversation(conversation({ id: 22, waiting_since: "2026-11-23T08:00:00Z" }), 3, "created");
    expect(ids(store)).toEqual([1]);
  });

  it("sorts by newest activity when asked", async () => {
    listSpy.mockResolvedValueOnce(page([]));
    const store = useConversationStore();
    await store.setFilters({ view: "all", sort: "newest" });
    store.applyConversation(conversation({ id: 1, last_message: { text: "a", direction: "in", at: "2026-11-23T10:00:00Z" } }), 1);
    store.applyConversation(conversation({ id: 2, last_message: { text: "b", direction: "in", at: "2026-11-23T11:00:00Z" } }), 2);
    expect(ids(store)).toEqual([2, 1]);
  });

  it("keeps live events that arrive while the first page is in flight", async () => {
    let resolve!: (value: ConversationPage) => void;
    listSpy.mockReturnValueOnce(new Promise((r) => (resolve = r)));
    const store = useConversationStore();
    const loading = store.setFilters({ view: "unassigned" });
    store.applyConversation(conversation({ id: 1, assignee: OTHER, updated_at: "2026-11-23T14:00:00Z" }), 4);
    store.applyConversation(conversation({ id: 5 }), 5, "created");
    resolve(page([conversation({ id: 1 }), conversation({ id: 2 })]));
    await loading;
    expect(ids(store).sort()).toEqual([2, 5]);
  });

  it("refreshes the counts from the server shortly after events", async () => {
    const store = await unassignedView();
    listSpy.mockResolvedValueOnce(page([], { counts: { mine: 4, unassigned: 7, all: 12 } }));
    store.applyConversation(conversation({ id: 3 }), 1, "created");
    store.applyConversation(conversation({ id: 4 }), 2, "created");
    await vi.runAllTimersAsync();
    expect(listSpy).toHaveBeenLastCalledWith(expect.objectContaining({ assignee: "none", status: "open", limit: 1 }));
    expect(listSpy).toHaveBeenCalledTimes(2);
    expect(store.counts).toEqual({ mine: 4, unassigned: 7, all: 12 });
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
