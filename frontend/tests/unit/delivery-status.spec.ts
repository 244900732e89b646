import { mount } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { messagesApi } from "@/api";
import MessageItem from "@/components/MessageItem.vue";
import { createAppI18n } from "@/i18n";
import { heldBackReplies, useMessageStore } from "@/stores/messages";
import { message } from "../factories";

function outbound(delivery_status: string, delivery_error: string | null) {
  return mount(MessageItem, {
    props: { message: message({ id: 5, direction: "out", author: { type: "agent", id: 1, name: "Camille" },
                                delivery_status: delivery_status as never, delivery_error }) },
    global: { plugins: [createAppI18n("fr")] },
  });
}

describe("an outbound message's real delivery status", () => {
  beforeEach(() => setActivePinia(createPinia()));

  it("says why a queued reply is being tried again (the platform is down or limits us)", () => {
    const wrapper = outbound("queued", "retrying after: network error: POST /1000000001/messages: ConnectionError");
    expect(wrapper.get("[data-testid='delivery-status']").text()).toContain("en file");
    const retry = wrapper.get("[data-testid='delivery-retry']");
    expect(retry.text()).toBe("nouvel essai après une erreur : network error: POST /1000000001/messages: ConnectionError");
    expect(retry.attributes("title")).toBe("network error: POST /1000000001/messages: ConnectionError");
    expect(wrapper.find("[data-testid='delivery-error']").exists()).toBe(false);
  });

  it("shows nothing more for a reply simply waiting its turn, and the error of a failed one", () => {
    expect(outbound("queued", null).find("[data-testid='delivery-retry']").exists()).toBe(false);
    const failed = outbound("failed", "(#10) Outside of allowed window");
    expect(failed.get("[data-testid='delivery-error']").text()).toBe("Échec : (#10) Outside of allowed window");
    expect(failed.find("[data-testid='delivery-retry']").exists()).toBe(false);
  });

  it("renders the platform's error as text", () => {
    const wrapper = outbound("queued", "retrying after: <img src=x onerror=alert(1)>");
    expect(wrapper.find("img").exists()).toBe(false);
    expect(wrapper.get("[data-testid='delivery-retry']").text()).toContain("<img src=x onerror=alert(1)>");
  });
});

describe("sending a failed reply again", () => {
  beforeEach(() => setActivePinia(createPinia()));

  it("offers it on a failed reply, and asks to check first on an unknown one", async () => {
    const failed = outbound("failed", "(#10) Outside of allowed window");
    const button = failed.get("[data-testid='resend']");
    expect(button.text()).toBe("Renvoyer");
    await button.trigger("click");
    expect(failed.emitted("resend")).toEqual([[]]);
    const unknown = outbound("unknown", "no answer from the platform; it may have received the message");
    expect(unknown.get("[data-testid='delivery-status']").text()).toContain("envoi incertain");
    expect(unknown.get("[data-testid='delivery-uncertain']").attributes("title")).toContain("no answer from the platform");
    expect(unknown.get("[data-testid='resend']").text()).toBe("Renvoyer quand même");
    expect(unknown.get("[data-testid='resend']").attributes("title")).toContain("vérifiez avant de renvoyer");
    for (const status of ["queued", "sending", "sent", "delivered", "read"]) {
      expect(outbound(status, null).find("[data-testid='resend']").exists()).toBe(false);
    }
  });

  it("puts the queued copy the API answers in the thread", async () => {
    const store = useMessageStore();
    vi.spyOn(messagesApi, "list").mockResolvedValueOnce({
      items: [message({ id: 5, conversation_id: 7, direction: "out", delivery_status: "failed",
                        delivery_error: "(#10) Outside of allowed window" })],
      next_cursor: null,
    });
    await store.open(7);
    const retry = vi.spyOn(messagesApi, "retry").mockResolvedValueOnce(
      message({ id: 5, conversation_id: 7, direction: "out", delivery_status: "queued", delivery_error: null }));
    await store.resend(5);
    expect(retry).toHaveBeenCalledWith(5);
    expect(store.items.map((m) => [m.id, m.delivery_status, m.delivery_error])).toEqual([[5, "queued", null]]);
  });

  it("keeps 'sent' when the send job's event overtakes the API's 'queued' answer", async () => {
    const store = useMessageStore();
    vi.spyOn(messagesApi, "list").mockResolvedValueOnce({
      items: [message({ id: 5, conversation_id: 7, direction: "out", delivery_status: "failed" })],
      next_cursor: null,
    });
    await store.open(7);
    let answer: (m: ReturnType<typeof message>) => void = () => {};
    vi.spyOn(messagesApi, "retry").mockReturnValueOnce(new Promise((resolve) => { answer = resolve; }));
    const resent = store.resend(5);
    // the retry commits, publishes "queued", the send job sends and publishes "sent": both events reach the
    // socket before the HTTP answer
    store.applyEvent(message({ id: 5, conversation_id: 7, direction: "out", delivery_status: "queued" }), 41);
    store.applyEvent(message({ id: 5, conversation_id: 7, direction: "out", delivery_status: "sent" }), 42);
    answer(message({ id: 5, conversation_id: 7, direction: "out", delivery_status: "queued" }));
    await resent;
    expect(store.items.map((m) => [m.id, m.delivery_status])).toEqual([[5, "sent"]]);

    // with no event while it is out, the answer is shown (a later failure's resend, say)
    store.applyEvent(message({ id: 5, conversation_id: 7, direction: "out", delivery_status: "failed" }), 43);
    vi.spyOn(messagesApi, "retry").mockResolvedValueOnce(
      message({ id: 5, conversation_id: 7, direction: "out", delivery_status: "queued" }));
    await store.resend(5);
    expect(store.items.map((m) => [m.id, m.delivery_status])).toEqual([[5, "queued"]]);
  });

  it("keeps a moderation event that overtakes the moderation's answer", async () => {
    const store = useMessageStore();
    const comment = { id: 9, conversation_id: 7, direction: "in" as const, kind: "comment" as const };
    vi.spyOn(messagesApi, "list").mockResolvedValueOnce({ items: [message({ ...comment, hidden: false })],
                                                          next_cursor: null });
    await store.open(7);
    let answer: (m: ReturnType<typeof message>) => void = () => {};
    vi.spyOn(messagesApi, "moderate").mockReturnValueOnce(new Promise((resolve) => { answer = resolve; }));
    const hiding = store.moderate(9, "hide");
    // another agent unhides it right after: its event arrives before our answer
    store.applyEvent(message({ ...comment, hidden: true }), 50);
    store.applyEvent(message({ ...comment, hidden: false }), 51);
    answer(message({ ...comment, hidden: true }));
    await hiding;
    expect(store.items.map((m) => [m.id, m.hidden])).toEqual([[9, false]]);
  });
});

describe("a reply waiting for the one before it", () => {
  beforeEach(() => setActivePinia(createPinia()));

  const reply = (id: number, delivery_status: string, delivery_error: string | null = null) =>
    message({ id, direction: "out", author: { type: "agent", id: 1, name: "Camille" },
              delivery_status: delivery_status as never, delivery_error });

  it("lists the queued replies behind an earlier one still queued or sending, as the server sends them", () => {
    const customer = message({ id: 1, direction: "in" });
    expect(heldBackReplies([customer, reply(2, "sending"), reply(3, "queued"), reply(4, "queued")]))
      .toEqual(new Set(["3", "4"]));
    // the first one on its way is not held, and a retry says why instead; what comes after it waits
    expect(heldBackReplies([reply(2, "queued", "retrying after: (#613) rate limit"), reply(3, "queued")]))
      .toEqual(new Set(["3"]));
    // nothing before it on its way: sent, failed and unknown replies hold nothing back
    expect(heldBackReplies([reply(2, "sent"), reply(3, "failed"), reply(4, "unknown"), reply(5, "queued")]).size)
      .toBe(0);
    expect(heldBackReplies([reply(2, "queued")]).size).toBe(0);
  });

  it("says so beside 'queued'", () => {
    const wrapper = mount(MessageItem, {
      props: { message: reply(3, "queued"), heldBack: true },
      global: { plugins: [createAppI18n("fr")] },
    });
    expect(wrapper.get("[data-testid='delivery-status']").text()).toContain("en file");
    expect(wrapper.get("[data-testid='delivery-held-back']").text()).toBe("attend l'envoi de la réponse précédente");
    const sent = mount(MessageItem, {
      props: { message: reply(3, "sent"), heldBack: true },
      global: { plugins: [createAppI18n("en")] },
    });
    expect(sent.find("[data-testid='delivery-held-back']").exists()).toBe(false);
  });
});
