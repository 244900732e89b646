import { mount } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { beforeEach, describe, expect, it } from "vitest";
import { createMemoryHistory, createRouter } from "vue-router";
import ConversationRow from "@/components/ConversationRow.vue";
import MessageItem from "@/components/MessageItem.vue";
import PostContext from "@/components/PostContext.vue";
import { createAppI18n } from "@/i18n";
import { conversation, message } from "../factories";

const HOSTILE = '<img src=x onerror=alert(1)><script>alert(2)</script><b>gras</b>';

function plugins() {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: "/:p(.*)*", component: { template: "<div/>" } }] });
  return [createAppI18n("fr"), router];
}

describe("customer text is rendered as text, never as HTML", () => {
  beforeEach(() => setActivePinia(createPinia()));

  it("in a message", () => {
    const wrapper = mount(MessageItem, {
      props: { message: message({ id: 1, kind: "comment", text: HOSTILE }) },
      global: { plugins: plugins() },
    });
    const text = wrapper.get("[data-testid='message-text']");
    expect(text.text()).toBe(HOSTILE);
    expect(wrapper.find("img").exists()).toBe(false);
    expect(wrapper.find("script").exists()).toBe(false);
    expect(wrapper.find("b").exists()).toBe(false);
    expect(text.element.innerHTML).toContain("&lt;img src=x onerror=alert(1)&gt;");
  });

  it("in an author name and a delivery error", () => {
    const wrapper = mount(MessageItem, {
      props: {
        message: message({
          id: 2,
          direction: "out",
          author: { type: "agent", id: 1, name: HOSTILE },
          delivery_status: "failed",
          delivery_error: HOSTILE,
        }),
      },
      global: { plugins: plugins() },
    });
    expect(wrapper.find("img").exists()).toBe(false);
    expect(wrapper.get("[data-testid='delivery-error']").text()).toContain(HOSTILE);
    expect(wrapper.get("[data-testid='message']").attributes("data-delivery-status")).toBe("failed");
  });

  it("in the inbox preview and the contact name", () => {
    const wrapper = mount(ConversationRow, {
      props: {
        conversation: conversation({
          contact: { id: 1, name: HOSTILE, handle: null, avatar_url: null },
          last_message: { text: HOSTILE, direction: "in", at: "2026-11-23T13:00:00Z" },
        }),
        to: "/inbox/all/conversations/1",
        open: false,
        active: false,
        meId: 1,
      },
      global: { plugins: plugins() },
    });
    expect(wrapper.find("img").exists()).toBe(false);
    expect(wrapper.text()).toContain(HOSTILE);
    expect(wrapper.text()).toContain("Non assignée");
  });

  it("in the post shown above a comment thread, whose javascript: link is dropped", () => {
    const wrapper = mount(PostContext, {
      props: { post: { id: 1, external_id: "p1", text: HOSTILE, permalink: "javascript:alert(1)" } },
      global: { plugins: plugins() },
    });
    expect(wrapper.find("img").exists()).toBe(false);
    expect(wrapper.text()).toContain(HOSTILE);
    expect(wrapper.find("a").exists()).toBe(false);
  });
});

describe("message markers and comment actions", () => {
  beforeEach(() => setActivePinia(createPinia()));

  it("offers Masquer / Supprimer (with confirmation) / J'aime on customer comments", async () => {
    const wrapper = mount(MessageItem, {
      props: { message: message({ id: 3, kind: "comment", direction: "in" }) },
      global: { plugins: plugins() },
    });
    expect(wrapper.get("[data-testid='comment-hide']").text()).toBe("Masquer");
    expect(wrapper.get("[data-testid='comment-like']").text()).toBe("J'aime");
    await wrapper.get("[data-testid='comment-delete']").trigger("click");
    expect(wrapper.emitted("moderate")).toBeUndefined();
    await wrapper.get("[data-testid='comment-delete-confirm']").trigger("click");
    expect(wrapper.emitted("moderate")).toEqual([["delete"]]);
  });

  it("marks internal notes and hidden, edited comments", () => {
    const note = mount(MessageItem, {
      props: { message: message({ id: 4, kind: "note", direction: "out", author: { type: "agent", id: 1, name: "Camille" } }) },
      global: { plugins: plugins() },
    });
    expect(note.text()).toContain("Note interne");
    expect(note.find("[data-testid='delivery-status']").exists()).toBe(false);

    const hidden = mount(MessageItem, {
      props: { message: message({ id: 5, kind: "comment", hidden: true, edited: true }) },
      global: { plugins: plugins() },
    });
    expect(hidden.get("[data-testid='marker-hidden']").text()).toBe("Masqué");
    expect(hidden.get("[data-testid='marker-edited']").text()).toBe("modifié");
    expect(hidden.get("[data-testid='comment-hide']").text()).toBe("Afficher");
  });
});
