import type { Component } from "vue";
import { createMemoryHistory, createRouter, type Router } from "vue-router";
import InboxView from "@/views/InboxView.vue";

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
