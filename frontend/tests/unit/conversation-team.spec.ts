import { mount } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { beforeEach, describe, expect, it } from "vitest";
import { createMemoryHistory, createRouter } from "vue-router";
import ConversationRow from "@/components/ConversationRow.vue";
import { createAppI18n } from "@/i18n";
import { expandConversation } from "@/socket/wire";
import { conversation } from "../factories";

function plugins(locale: "fr" | "en" = "fr") {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: "/:p(.*)*", component: { template: "<div/>" } }] });
  return [createAppI18n(locale), router];
}

function row(overrides: Parameters<typeof conversation>[0], locale: "fr" | "en" = "fr") {
  return mount(ConversationRow, {
    props: { conversation: conversation(overrides), to: "/inbox/all/conversations/1", open: false, active: false, meId: 1 },
    global: { plugins: plugins(locale) },
  });
}

describe("the team holding a conversation", () => {
  beforeEach(() => setActivePinia(createPinia()));

  it("is shown on its list row, named in the agent's language, as text", () => {
    const handedOver = row({ team_id: 7, team: { id: 7, name: "SAV <b>Lune</b>" } });
    const tag = handedOver.get("[data-testid='conversation-row-team']");
    expect(tag.text()).toBe("SAV <b>Lune</b>");
    expect(tag.find("b").exists()).toBe(false);
    expect(tag.attributes("title")).toBe("Équipe");
    expect(row({ team_id: 7, team: { id: 7, name: "SAV" } }, "en").get("[data-testid='conversation-row-team']")
      .attributes("title")).toBe("Team");
  });

  it("is left out when no team holds it", () => {
    expect(row({ team_id: null, team: null }).find("[data-testid='conversation-row-team']").exists()).toBe(false);
  });

  it("comes back as null from a live event's wire form that leaves it out", () => {
    const wire = { ...conversation({ id: 3 }) } as Record<string, unknown>;
    delete wire.team;
    delete wire.team_id;
    const expanded = expandConversation(wire);
    expect(expanded.team).toBeNull();
    expect(expanded.team_id).toBeNull();
  });
});
