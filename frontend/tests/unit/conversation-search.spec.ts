import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { effectScope, nextTick, ref } from "vue";
import type { ConversationPage, ConversationQuery } from "@/api";
import { SEARCH_DEBOUNCE_MS, useSearchField } from "@/composables/useSearchField";
import { countsQuery, searchFromQuery, searchTerm, toQuery, DEFAULT_FILTERS } from "@/stores/conversationView";
import { PAGE_SIZE, SEARCH_ROUND_PAGES, useConversationStore } from "@/stores/conversations";
import { conversation } from "../factories";
import { storeSession } from "../storeSession";

const VIEW_COUNTS = { mine: 2, unassigned: 5, all: 9 };
const ids = (store: ReturnType<typeof useConversationStore>) => store.items.map((c) => c.id);
const at = (minute: number) => new Date(Date.UTC(2026, 10, 23, 10, minute)).toISOString();
const matching = (id: number, minute = id % 60) =>
  conversation({ id, last_message: { text: "remboursement", direction: "in", at: at(minute) }, updated_at: at(minute) });

/** A server page as the API answers it: a search page never carries counts. */
function answer(query: ConversationQuery, items: ConversationPage["items"], nextCursor: string | null): ConversationPage {
  return query.q ? { items, next_cursor: nextCursor } : { items, next_cursor: nextCursor, counts: VIEW_COUNTS };
}

describe("search text", () => {
  it("is sent from 3 characters, trimmed, as the server counts them (code points)", () => {
    expect(searchTerm("  ab ")).toBe("");
    expect(searchTerm(" abc ")).toBe("abc");
    expect(searchTerm("😀a")).toBe(""); // 3 UTF-16 units, 2 characters: the server would refuse it (422)
    expect(searchTerm("😀ab")).toBe("😀ab");
    expect([...searchTerm("é".repeat(250))]).toHaveLength(200);
    expect(searchFromQuery(["abc", "def"])).toBe("");
    expect(searchFromQuery("colis")).toBe("colis");
  });

  it("goes to the list request, never to the counts request", () => {
    const filters = { ...DEFAULT_FILTERS, view: "all" as const, q: " colis " };
    expect(toQuery(filters).q).toBe("colis");
    expect(countsQuery(filters).q).toBeUndefined();
    expect(countsQuery(filters).status).toBe("open");
    expect(toQuery({ ...filters, q: "co" }).q).toBeUndefined();
  });
});

describe("search field", () => {
  beforeEach(() => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] }));
  afterEach(() => vi.useRealTimers());

  function field(initial = "") {
    const applied = ref(initial);
    const apply = vi.fn((term: string) => {
      applied.value = term;
    });
    const scope = effectScope();
    const search = scope.run(() => useSearchField({ applied: () => applied.value, apply }))!;
    return { search, apply, applied, scope };
  }

  it("searches after a pause in typing, once, with the last text", async () => {
    const { search, apply } = field();
    search.input("rem");
    search.input("remb");
    search.input("rembou");
    expect(search.pending.value).toBe(true);
    await vi.advanceTimersByTimeAsync(SEARCH_DEBOUNCE_MS - 1);
    expect(apply).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(apply).toHaveBeenCalledTimes(1);
    expect(apply).toHaveBeenCalledWith("rembou");
    expect(search.pending.value).toBe(false);
  });

  it("does not search under 3 characters and says why", async () => {
    const { search, apply } = field();
    search.input("re");
    expect(search.tooShort.value).toBe(true);
    expect(search.pending.value).toBe(false);
    await vi.advanceTimersByTimeAsync(10 * SEARCH_DEBOUNCE_MS);
    expect(apply).not.toHaveBeenCalled();
  });

  it("goes back to the whole view when the text gets under 3 characters, after the pause", async () => {
    const { search, apply } = field("colis");
    search.input("co");
    await vi.advanceTimersByTimeAsync(SEARCH_DEBOUNCE_MS);
    expect(apply).toHaveBeenLastCalledWith("");
  });

  it("clears at once, and searches at once on Enter", async () => {
    const { search, apply } = field("colis");
    search.input("");
    expect(apply).toHaveBeenLastCalledWith("");
    search.input("facture");
    search.flush();
    expect(apply).toHaveBeenLastCalledWith("facture");
    search.clear();
    expect(search.text.value).toBe("");
    expect(apply).toHaveBeenLastCalledWith("");
    await vi.advanceTimersByTimeAsync(10 * SEARCH_DEBOUNCE_MS);
    expect(apply).toHaveBeenCalledTimes(3);
  });

  it("shows a search changed elsewhere (back button, a link), not while the CM types", async () => {
    const { search, applied } = field("colis");
    applied.value = "facture";
    await nextTick();
    expect(search.text.value).toBe("facture");
    search.input("factures en retard");
    applied.value = "";
    await nextTick();
    expect(search.text.value).toBe("factures en retard");
  });

  it("forgets a waiting search when the field goes away", async () => {
    const { search, apply, scope } = field();
    search.input("colis");
    scope.stop();
    await vi.advanceTimersByTimeAsync(10 * SEARCH_DEBOUNCE_MS);
    expect(apply).not.toHaveBeenCalled();
  });
});

describe("conversation store: search", () => {
  const session = storeSession();

  const searches = () => session.list.mock.calls.filter(([query]) => query.q);
  const countRequests = () => session.list.mock.calls.filter(([query]) => query.limit === 1);

  /** The "all" view loaded (with counts), then the search typed. */
  async function searchIn(q: string) {
    session.list.mockImplementationOnce(async (query) => answer(query, [], null));
    const store = useConversationStore();
    await store.setFilters({ view: "all" });
    await store.setFilters({ q });
    return store;
  }

  it("keeps asking while the pages come back short, until a page's worth is found", async () => {
    let page = 0;
    session.list.mockImplementation(async (query) => {
      if (!query.q) return answer(query, [], null);
      page++;
      // Two matches per slice of the view, then one full page.
      if (page < 4) return answer(query, [matching(page * 2), matching(page * 2 + 1)], `c${page}`);
      return answer(query, Array.from({ length: PAGE_SIZE }, (_, i) => matching(100 + i)), "c4");
    });
    const store = await searchIn("remboursement");
    expect(searches().map(([query]) => query.cursor)).toEqual([undefined, "c1", "c2", "c3"]);
    expect(store.items).toHaveLength(6 + PAGE_SIZE);
    expect(store.loading).toBe(false);
    expect(store.hasMore).toBe(true);
  });

  it("stops after a bounded number of empty pages, and searches further when asked", async () => {
    let page = 0;
    session.list.mockImplementation(async (query) => (query.q ? answer(query, [], `c${++page}`) : answer(query, [], null)));
    const store = await searchIn("zzzz");
    expect(searches()).toHaveLength(SEARCH_ROUND_PAGES);
    expect(store.items).toEqual([]);
    expect(store.loaded).toBe(true);
    expect(store.hasMore).toBe(true); // the list offers to search older conversations

    await store.loadMore();
    expect(searches()).toHaveLength(2 * SEARCH_ROUND_PAGES);
    expect(searches().at(-1)?.[0].cursor).toBe(`c${2 * SEARCH_ROUND_PAGES - 1}`);
    expect(store.loadingMore).toBe(false);
  });

  it("stops at the end of the search, even short", async () => {
    session.list.mockImplementation(async (query) =>
      query.q ? answer(query, query.cursor ? [matching(2)] : [matching(1)], query.cursor ? null : "c1") : answer(query, [], null),
    );
    const store = await searchIn("remboursement");
    expect(searches()).toHaveLength(2);
    expect(ids(store)).toEqual([2, 1]);
    expect(store.hasMore).toBe(false);
  });

  it("shows the results newest first, whatever the view's sort", async () => {
    const older = conversation({ id: 1, waiting_since: at(1), last_message: { text: "colis", direction: "in", at: at(1) } });
    const newer = conversation({ id: 2, waiting_since: at(2), last_message: { text: "colis", direction: "in", at: at(2) } });
    session.list.mockImplementation(async (query) => answer(query, query.q ? [newer, older] : [], null));
    const store = await searchIn("colis");
    expect(store.filters.sort).toBe("waiting");
    expect(ids(store)).toEqual([2, 1]);
  });

  it("aborts the previous search when the text changes, even between its pages", async () => {
    const signals: AbortSignal[] = [];
    const pending: ((page: ConversationPage) => void)[] = [];
    session.list.mockImplementation((query, signal) => {
      if (!query.q) return Promise.resolve(answer(query, [], null));
      signals.push(signal!);
      return new Promise((resolve) => pending.push(resolve));
    });
    session.list.mockImplementationOnce(async (query) => answer(query, [], null));
    const store = useConversationStore();
    await store.setFilters({ view: "all" });

    const first = store.setFilters({ q: "remb" });
    pending[0]!({ items: [matching(1)], next_cursor: "c1" }); // short: the next page is asked
    await vi.waitFor(() => expect(signals).toHaveLength(2));
    const second = store.setFilters({ q: "rembou" });
    expect(signals[1]!.aborted).toBe(true);
    pending[1]!({ items: [matching(9)], next_cursor: null }); // too late: not shown
    pending[2]!({ items: [matching(3)], next_cursor: null });
    await Promise.all([first, second]);
    expect(signals[2]!.aborted).toBe(false);
    expect(ids(store)).toEqual([3]);
    expect(store.loading).toBe(false);
  });

  it("aborts a search further when the search is cleared", async () => {
    const signals: AbortSignal[] = [];
    session.list.mockImplementation((query, signal) => {
      if (!query.q) return Promise.resolve(answer(query, [], null));
      if (!query.cursor) return Promise.resolve(answer(query, [matching(1)], "c1"));
      signals.push(signal!);
      return new Promise(() => undefined);
    });
    session.list.mockImplementationOnce(async (query) => answer(query, [], null));
    const store = useConversationStore();
    await store.setFilters({ view: "all" });
    void store.setFilters({ q: "remboursement" });
    await vi.waitFor(() => expect(signals).toHaveLength(1));
    await store.setFilters({ q: "" });
    expect(signals[0]!.aborted).toBe(true);
    expect(store.loading).toBe(false);
    expect(store.loadingMore).toBe(false);
  });

  it("aborts the search of older conversations when the text changes", async () => {
    const signals: AbortSignal[] = [];
    let page = 0;
    session.list.mockImplementation((query, signal) => {
      if (!query.q) return Promise.resolve(answer(query, [], null));
      if (page < SEARCH_ROUND_PAGES) return Promise.resolve(answer(query, [], `c${++page}`));
      signals.push(signal!);
      return new Promise(() => undefined);
    });
    const store = await searchIn("remboursement");
    void store.loadMore();
    expect(store.loadingMore).toBe(true);
    await vi.waitFor(() => expect(signals).toHaveLength(1));
    void store.setFilters({ q: "rembourser" });
    expect(signals[0]!.aborted).toBe(true);
    expect(store.loadingMore).toBe(false);
    expect(store.loading).toBe(true);
  });

  it("keeps the views' counts on screen, and does not ask them again for each search", async () => {
    session.list.mockImplementation(async (query) => answer(query, [], null));
    const store = await searchIn("colis");
    await store.setFilters({ q: "colis de noël" });
    expect(store.counts).toEqual(VIEW_COUNTS);
    expect(countRequests()).toHaveLength(0);
    expect(session.list.mock.calls.filter(([query]) => !query.q && query.limit === PAGE_SIZE)).toHaveLength(1);
  });

  it("asks the views' counts, without the search, when the search comes with other filters", async () => {
    session.list.mockImplementation(async (query) => answer(query, [], null));
    const store = useConversationStore();
    await store.setFilters({ view: "all", q: "colis" }); // a shared link: the first page is a search
    expect(countRequests()).toHaveLength(1);
    expect(countRequests()[0]?.[0]).toMatchObject({ status: "open", q: undefined });
    expect(store.counts).toEqual(VIEW_COUNTS);

    await store.setFilters({ status: "pending" });
    expect(countRequests()).toHaveLength(2);
    expect(countRequests()[1]?.[0]).toMatchObject({ status: "pending", q: undefined });
  });

  it("never inserts a live conversation into the results, but keeps those shown up to date", async () => {
    session.list.mockImplementation(async (query) => answer(query, query.q ? [matching(1)] : [], null));
    const store = await searchIn("remboursement");
    store.applyConversation(conversation({ id: 7, updated_at: at(30) }), 1, "created");
    expect(ids(store)).toEqual([1]);
    store.applyConversation({ ...matching(1), priority: "urgent", updated_at: at(31) }, 2);
    expect(store.items[0]?.priority).toBe("urgent");
    // Still counted in the views.
    expect(store.counts.all).toBe(VIEW_COUNTS.all + 1);
  });

  it("does not insert a conversation that arrives while the search page is in flight", async () => {
    let resolve!: (page: ConversationPage) => void;
    session.list.mockImplementationOnce(async (query) => answer(query, [], null));
    const store = useConversationStore();
    await store.setFilters({ view: "all" });
    session.list.mockImplementation((query) =>
      query.q ? new Promise((r) => (resolve = r)) : Promise.resolve(answer(query, [], null)),
    );
    const searching = store.setFilters({ q: "remboursement" });
    store.applyConversation(conversation({ id: 8 }), 1, "created");
    resolve({ items: [matching(1)], next_cursor: null });
    await searching;
    expect(ids(store)).toEqual([1]);
  });
});
