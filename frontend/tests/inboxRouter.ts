import { flushPromises, mount, type VueWrapper } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { vi } from "vitest";
import { defineComponent, h, type Component } from "vue";
import { createMemoryHistory, createRouter, RouterView, type Router } from "vue-router";
import { conversationsApi } from "@/api";
import type { Conversation } from "@/api/types";
import { createAppI18n } from "@/i18n";
import { useAuthStore } from "@/stores/auth";
import InboxView from "@/views/InboxView.vue";
import { ME } from "./factories";

/** The inbox's routes as the app declares them, with `pane` standing in for the conversation pane. */
export function inboxRouter(pane: Component): Router {
  return createRouter({
    history: createMemoryHistory(),
    routes: [
      {
        path: "/inbox/:view(mine|unassigned|all)",
        component: InboxView,
        children: [
          { path: "", name: "inbox", component: pane },
          { path: "conversations/:conversationId", name: "conversation", component: pane },
        ],
      },
    ],
  });
}

export interface MountedInbox {
  wrapper: VueWrapper;
  /** The index of the active conversation row, -1 if none. */
  active(): number;
  /** The conversation search input. */
  search(): HTMLInputElement;
  /** Unmounts the inbox and empties the document's body. */
  unmount(): void;
}

/** The whole inbox on /inbox/all?status=open, attached to the document, with a fresh pinia, ME signed in,
 * `items` as the conversation list (all of them unassigned) and `pane` as the conversation pane.
 * Mock what the pane needs before calling it; call `unmount()` after each test. */
export async function mountInbox(pane: Component, items: Conversation[]): Promise<MountedInbox> {
  setActivePinia(createPinia());
  useAuthStore().startSession({ agent: ME, csrf_token: "t" });
  vi.spyOn(conversationsApi, "list").mockResolvedValue({
    items,
    next_cursor: null,
    counts: { mine: 0, unassigned: items.length, all: items.length },
  });
  const router = inboxRouter(pane);
  await router.push("/inbox/all?status=open");
  const wrapper = mount(defineComponent({ render: () => h(RouterView) }), {
    global: { plugins: [createAppI18n("en"), router] },
    attachTo: document.body,
  });
  await flushPromises();
  return {
    wrapper,
    active: () =>
      wrapper.findAll("[data-testid='conversation-row']").findIndex((row) => row.classes("conversation-row--active")),
    search: () => wrapper.get<HTMLInputElement>("[data-testid='conversation-search-input']").element,
    unmount: () => {
      wrapper.unmount();
      document.body.innerHTML = "";
    },
  };
}
