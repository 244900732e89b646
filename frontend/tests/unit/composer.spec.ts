import { flushPromises, mount } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ApiError, messagesApi } from "@/api";
import MessageComposer from "@/components/MessageComposer.vue";
import { createAppI18n } from "@/i18n";
import { useMessageStore } from "@/stores/messages";
import { conversation, message } from "../factories";

function mountComposer(kind: "dm" | "comment", target = kind === "comment" ? message({ id: 77, kind: "comment" }) : null) {
  const store = useMessageStore();
  store.conversationId = 3;
  return mount(MessageComposer, {
    props: { conversation: conversation({ id: 3, kind }), privateTarget: target },
    global: { plugins: [createAppI18n("fr")] },
  });
}

describe("composer", () => {
  beforeEach(() => setActivePinia(createPinia()));

  it("offers the private reply only on comment conversations", () => {
    expect(mountComposer("dm").find("[data-testid='composer-mode-private']").exists()).toBe(false);
    const comment = mountComposer("comment");
    expect(comment.get("[data-testid='composer-mode-private']").text()).toBe("Réponse en privé");
    expect(comment.get("[data-testid='composer-mode-note']").text()).toBe("Note interne");
    expect(comment.get("[data-testid='composer-mode-reply']").text()).toBe("Répondre");
  });

  it("sends with Ctrl+Enter, as a note or a private reply to the chosen comment", async () => {
    const send = vi.spyOn(messagesApi, "send").mockResolvedValue(message({ id: 900, conversation_id: 3 }));
    const wrapper = mountComposer("comment");
    await wrapper.get("[data-testid='composer-mode-note']").trigger("click");
    await wrapper.get("[data-testid='composer-text']").setValue("Client VIP");
    await wrapper.get("[data-testid='composer-text']").trigger("keydown", { key: "Enter", ctrlKey: true });
    await flushPromises();
    expect(send).toHaveBeenLastCalledWith(3, { text: "Client VIP", kind: "note" });
    expect((wrapper.get("[data-testid='composer-text']").element as HTMLTextAreaElement).value).toBe("");

    await wrapper.get("[data-testid='composer-mode-private']").trigger("click");
    await wrapper.get("[data-testid='composer-text']").setValue("On vous écrit en MP");
    await wrapper.get("[data-testid='composer-text']").trigger("keydown", { key: "Enter", metaKey: true });
    await flushPromises();
    expect(send).toHaveBeenLastCalledWith(3, { text: "On vous écrit en MP", kind: "private_reply", reply_to_message_id: 77 });
  });

  it("shows the server's refusal when the reply window is closed, and keeps the text", async () => {
    vi.spyOn(messagesApi, "send").mockRejectedValue(
      new ApiError(422, { code: "reply_window_closed", message: "Fenêtre de 24 h fermée." }),
    );
    const wrapper = mountComposer("dm");
    await wrapper.get("[data-testid='composer-text']").setValue("Bonjour");
    await wrapper.get("form").trigger("submit");
    await flushPromises();
    expect(wrapper.get("[data-testid='composer-error']").text()).toBe("Envoi refusé : Fenêtre de 24 h fermée.");
    expect((wrapper.get("[data-testid='composer-text']").element as HTMLTextAreaElement).value).toBe("Bonjour");
  });

  it("keeps what the agent typed while the previous message was sending", async () => {
    let answer: (m: ReturnType<typeof message>) => void = () => {};
    vi.spyOn(messagesApi, "send").mockImplementation(() => new Promise((resolve) => { answer = resolve; }));
    const wrapper = mountComposer("dm");
    const box = () => wrapper.get("[data-testid='composer-text']").element as HTMLTextAreaElement;
    await wrapper.get("[data-testid='composer-text']").setValue("Bonjour");
    await wrapper.get("form").trigger("submit");
    await wrapper.get("[data-testid='composer-text']").setValue("Bonjour\nEt votre numéro de commande ?");
    answer(message({ id: 901, conversation_id: 3 }));
    await flushPromises();
    expect(box().value).toBe("Et votre numéro de commande ?");

    await wrapper.get("form").trigger("submit");
    await wrapper.get("[data-testid='composer-text']").setValue("Autre chose");  // rewritten meanwhile: kept whole
    answer(message({ id: 902, conversation_id: 3 }));
    await flushPromises();
    expect(box().value).toBe("Autre chose");
  });

  it("leaves another conversation's text alone when the agent moved on while sending", async () => {
    let answer: (m: ReturnType<typeof message>) => void = () => {};
    vi.spyOn(messagesApi, "send").mockImplementation(() => new Promise((resolve) => { answer = resolve; }));
    const wrapper = mountComposer("dm");
    await wrapper.get("[data-testid='composer-text']").setValue("Bonjour");
    await wrapper.get("form").trigger("submit");
    await wrapper.setProps({ conversation: conversation({ id: 4, kind: "dm" }) });
    await wrapper.get("[data-testid='composer-text']").setValue("Brouillon de la 4");
    answer(message({ id: 903, conversation_id: 3 }));
    await flushPromises();
    expect((wrapper.get("[data-testid='composer-text']").element as HTMLTextAreaElement).value)
      .toBe("Brouillon de la 4");
  });
});
