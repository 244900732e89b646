import { createRouter, createWebHistory, type RouterHistory } from "vue-router";
import { useAuthStore } from "@/stores/auth";
import AppLayout from "@/views/AppLayout.vue";
import ConversationView from "@/views/ConversationView.vue";
import InboxView from "@/views/InboxView.vue";
import LoginView from "@/views/LoginView.vue";
import NoConversationView from "@/views/NoConversationView.vue";
import NotFoundView from "@/views/NotFoundView.vue";
import AssignmentSettings from "@/views/settings/AssignmentSettings.vue";
import CalendarsSettings from "@/views/settings/CalendarsSettings.vue";
import CannedRepliesSettings from "@/views/settings/CannedRepliesSettings.vue";
import SettingsLayout from "@/views/settings/SettingsLayout.vue";
import SlaPoliciesSettings from "@/views/settings/SlaPoliciesSettings.vue";
import AgentsSettings from "@/views/settings/AgentsSettings.vue";
import BrandsSettings from "@/views/settings/BrandsSettings.vue";
import ChannelsSettings from "@/views/settings/ChannelsSettings.vue";
import TeamsSettings from "@/views/settings/TeamsSettings.vue";
import WebhooksSettings from "@/views/settings/WebhooksSettings.vue";
import type { Role } from "@/api/types";
import { HOME, safeRedirect } from "./navigation";

export { HOME, safeRedirect };

declare module "vue-router" {
  interface RouteMeta {
    /** Reachable without signing in. */
    public?: boolean;
    /** Only these roles may open the route (the API decides what they may change). */
    roles?: readonly Role[];
  }
}

const ADMIN_ONLY = { roles: ["admin"] as const };

export function createAppRouter(history: RouterHistory = createWebHistory("/")) {
  const router = createRouter({
    history,
    routes: [
      { path: "/login", name: "login", component: LoginView, meta: { public: true } },
      {
        path: "/",
        component: AppLayout,
        children: [
          { path: "", redirect: HOME },
          { path: "inbox", redirect: HOME },
          {
            path: "settings",
            component: SettingsLayout,
            meta: { roles: ["admin", "supervisor"] },
            children: [
              { path: "", name: "settings", redirect: { name: "settings-canned" } },
              { path: "canned-replies", name: "settings-canned", component: CannedRepliesSettings },
              { path: "sla-policies", name: "settings-sla", component: SlaPoliciesSettings },
              { path: "calendars", name: "settings-calendars", component: CalendarsSettings },
              { path: "assignment", name: "settings-assignment", component: AssignmentSettings },
              { path: "channels", name: "settings-channels", component: ChannelsSettings, meta: ADMIN_ONLY },
              { path: "brands", name: "settings-brands", component: BrandsSettings, meta: ADMIN_ONLY },
              { path: "teams", name: "settings-teams", component: TeamsSettings, meta: ADMIN_ONLY },
              { path: "agents", name: "settings-agents", component: AgentsSettings, meta: ADMIN_ONLY },
              { path: "webhooks", name: "settings-webhooks", component: WebhooksSettings, meta: ADMIN_ONLY },
            ],
          },
          {
            path: "inbox/:view(mine|unassigned|all)",
            component: InboxView,
            children: [
              { path: "", name: "inbox", component: NoConversationView },
              { path: "conversations/:conversationId", name: "conversation", component: ConversationView, props: true },
            ],
          },
        ],
      },
      { path: "/:pathMatch(.*)*", name: "not-found", component: NotFoundView, meta: { public: true } },
    ],
  });

  router.beforeEach(async (to) => {
    const auth = useAuthStore();
    if (auth.status === "unknown") await auth.check();
    if (to.name === "login" && auth.isAuthenticated) return safeRedirect(to.query.redirect) ?? HOME;
    if (to.meta.public) return true;
    if (!auth.isAuthenticated) return { name: "login", query: { redirect: to.fullPath } };
    // Every level that names roles must allow the agent's (settings: admins + supervisors; channels: admins).
    const allowed = to.matched.every((record) => !record.meta.roles || (!!auth.agent && record.meta.roles.includes(auth.agent.role)));
    if (allowed) return true;
    // A supervisor opening an admin-only settings tab lands on the settings they may use.
    const settingsRoles = to.matched.find((record) => record.path === "/settings")?.meta.roles;
    return auth.agent && settingsRoles?.includes(auth.agent.role) ? { name: "settings" } : HOME;
  });

  return router;
}
