import { flushPromises, mount, type VueWrapper } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from "vitest";
import { defineComponent, h } from "vue";
import { RouterView, type Router } from "vue-router";
import { conversationsApi, type ConversationPage, type ConversationQuery } from "@/api";
import { SEARCH_DEBOUNCE_MS } from "@/composables/useSearchField";
import { createAppI18n } from "@/i18n";
import { useAuthStore } from "@/stores/auth";
import { SEARCH_ROUND_PAGES } from "@/stores/conversations";
import { inboxRouter } from "../inboxRouter";
import { ME, conversation } from "../factories";

const HOSTILE = "<img src=x onerror=alert(1)>";
const Blank = defineComponent({ render: () => h("div") });

const parcel = conversation({
  id: 1,
  contact: { id: 501, name: "Léa Martin", handle: null, avatar_url: null },
  last_message: { text: "Mon colis n'est pas arrivé", direction: "in", at: "2026-11-23T13:00:00Z" },
});
const invoice = conversation({
  id: 2,
  contact: { id: 502, name: "Paul Girard", handle: null, avatar_url: null },
  last_message: { text: "Il me faut une facture", direction: "in", at: "2026-11-23T12:00:00Z" },
});

/** Answers like the server: the view, or the conversations whose text or name holds q (no counts then). */
function serve(query: ConversationQuery): ConversationPage {
  if (!query.q) return { items: [parcel, invoice], next_cursor: null, counts: { mine: 0, unassigned: 2, all: 2 } };
  const needle = query.q.toLowerCase();
  const found = [parcel, invoice].filter(
    (c) => c.last_message?.text?.toLowerCase().includes(needle) || c.contact.name?.toLowerCase().includes(needle),
  );
  return { items: found, next_cursor: null };
}

describe("conversation search field", () => {
  let listSpy: MockInstance<typeof conversationsApi.list>;
  let router: Router;
  let wrapper: VueWrapper;

  beforeEach(() => {
    setActivePinia(createPinia());
    useAuthStore().startSession({ agent: ME, csrf_token: "t" });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    listSpy = vi.spyOn(conversationsApi, "list").mockImplementation(async (query) => serve(query));
  });

  afterEach(() => {
    wrapper?.unmount();
    vi.useRealTimers();
  });

  async function mountInbox(url = "/inbox/all?status=open") {
    router = inboxRouter(Blank);
    await router.push(url);
    wrapper = mount(defineComponent({ render: () => h(RouterView) }), {
      global: { plugins: [createAppI18n("fr"), router] },
      attachTo: document.body,
    });
    await flushPromises();
    return wrapper;
  }

  const input = () => wrapper.get<HTMLInputElement>("[data-testid='conversation-search-input']");
  const status = () => wrapper.get("[data-testid='conversation-search-status']").text();
  const rows = () => wrapper.findAll("[data-testid='conversation-row']");
  const searched = () => listSpy.mock.calls.filter(([query]) => query.q).map(([query]) => query.q);

  async function type(text: string) {
    await input().setValue(text);
    await vi.advanceTimersByTimeAsync(SEARCH_DEBOUNCE_MS);
    await flushPromises();
  }

  it("searches from 3 characters after a pause, keeps the search in the URL, and clears with Escape", async () => {
    await mountInbox();
    expect(rows()).toHaveLength(2);
    expect(input().attributes("placeholder")).toBe("Rechercher un nom, un pseudo ou un message");

    await type("fa");
    expect(status()).toBe("Saisissez au moins 3 caractères pour rechercher.");
    expect(searched()).toEqual([]);
    expect(rows()).toHaveLength(2);

    await input().setValue("facture");
    expect(status()).toBe("Recherche en cours…");
    await vi.advanceTimersByTimeAsync(SEARCH_DEBOUNCE_MS);
    await flushPromises();
    expect(searched()).toEqual(["facture"]);
    expect(router.currentRoute.value.query).toEqual({ status: "open", q: "facture" });
    expect(rows()).toHaveLength(1);
    expect(rows()[0]!.text()).toContain("Paul Girard");
    expect(status()).toBe("Résultats pour « facture », du plus récent au plus ancien");
    // The counts request never carries the search.
    expect(listSpy.mock.calls.filter(([query]) => query.limit === 1 && query.q)).toEqual([]);

    await input().trigger("keydown", { key: "Escape" });
    await flushPromises();
    expect(input().element.value).toBe("");
    expect(router.currentRoute.value.query).toEqual({ status: "open" });
    expect(rows()).toHaveLength(2);
  });

  it("opens with the search of the URL, and the clear button empties it", async () => {
    await mountInbox("/inbox/all?status=open&q=colis");
    expect(input().element.value).toBe("colis");
    expect(searched()).toEqual(["colis"]);
    expect(rows()).toHaveLength(1);

    await wrapper.get("[data-testid='conversation-search-clear']").trigger("click");
    await flushPromises();
    expect(router.currentRoute.value.query.q).toBeUndefined();
    expect(rows()).toHaveLength(2);
    expect(document.activeElement).toBe(input().element);
  });

  it("focuses the search on '/' typed outside a text field, and not inside one nor in a modal dialog", async () => {
    await mountInbox();
    const other = document.createElement("textarea");
    document.body.appendChild(other);
    other.focus();
    other.dispatchEvent(new KeyboardEvent("keydown", { key: "/", bubbles: true, cancelable: true }));
    expect(document.activeElement).toBe(other);

    const dialog = document.createElement("div");
    dialog.setAttribute("aria-modal", "true");
    const button = dialog.appendChild(document.createElement("button"));
    document.body.appendChild(dialog);
    button.focus();
    button.dispatchEvent(new KeyboardEvent("keydown", { key: "/", bubbles: true, cancelable: true }));
    expect(document.activeElement).toBe(button);
    dialog.remove();

    const slash = new KeyboardEvent("keydown", { key: "/", bubbles: true, cancelable: true });
    document.body.dispatchEvent(slash);
    expect(document.activeElement).toBe(input().element);
    expect(slash.defaultPrevented).toBe(true); // the "/" is not typed into the field
    other.remove();
  });

  it("says when nothing matches, with the text as typed (never as HTML)", async () => {
    await mountInbox();
    await type(HOSTILE);
    const empty = wrapper.get("[data-testid='conversation-list-empty']");
    expect(empty.text()).toBe(`Aucune conversation ne correspond à « ${HOSTILE} ».`);
    expect(wrapper.find("img").exists()).toBe(false);
    expect(wrapper.find("[data-testid='load-more']").exists()).toBe(false);
  });

  it("offers to search older conversations when the recent ones had no match", async () => {
    let page = 0;
    listSpy.mockImplementation(async (query) => (query.q ? { items: [], next_cursor: `c${++page}` } : serve(query)));
    await mountInbox();
    await type("remboursement");
    expect(searched()).toHaveLength(SEARCH_ROUND_PAGES);
    expect(wrapper.get("[data-testid='conversation-list-empty']").text()).toContain("parmi les plus récentes");
    const further = wrapper.get("[data-testid='load-more']");
    expect(further.text()).toBe("Chercher dans les plus anciennes");
    await further.trigger("click");
    await flushPromises();
    expect(searched()).toHaveLength(2 * SEARCH_ROUND_PAGES);
  });
});
