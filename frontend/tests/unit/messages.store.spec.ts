import { createPinia, setActivePinia } from "pinia";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { messagesApi, type Id } from "@/api";
import { attachWatcher } from "@/socket/watching";
import { useMessageStore } from "@/stores/messages";
import { message } from "../factories";

describe("message store", () => {
  beforeEach(() => {
    setActivePinia(createPinia());
  });

  async function openThread() {
    const store = useMessageStore();
    vi.spyOn(messagesApi, "list").mockResolvedValueOnce({
      // The API answers newest first.
      items: [
        message({ id: 2, conversation_id: 7, platform_time: "2026-11-23T13:05:00Z" }),
        message({ id: 1, conversation_id: 7, platform_time: "2026-11-23T13:00:00Z" }),
      ],
      next_cursor: "older",
    });
    await store.open(7);
    return store;
  }

  it("shows the thread oldest first", async () => {
    const store = await openThread();
    expect(store.items.map((m) => m.id)).toEqual([1, 2]);
    expect(store.hasOlder).toBe(true);
  });

  it("appends live messages and replaces them by id", async () => {
    const store = await openThread();
    const reply = message({ id: 3, conversation_id: 7, direction: "out", delivery_status: "queued", platform_time: null, received_at: "2026-11-23T13:10:00Z" });
    store.applyEvent(reply, 11);
    store.applyEvent({ ...reply, delivery_status: "delivered" }, 13);
    store.applyEvent({ ...reply, delivery_status: "sent" }, 12); // replayed late
    store.applyEvent({ ...reply, delivery_status: "delivered" }, 13); // duplicate
    expect(store.items.map((m) => m.id)).toEqual([1, 2, 3]);
    expect(store.items[2]?.delivery_status).toBe("delivered");
  });

  it("ignores messages of other conversations", async () => {
    const store = await openThread();
    expect(store.applyEvent(message({ id: 9, conversation_id: 8 }), 1)).toBe(false);
    expect(store.items).toHaveLength(2);
  });

  it("does not duplicate a sent reply that the socket already brought, nor downgrade it", async () => {
    const store = await openThread();
    const sent = message({ id: 4, conversation_id: 7, direction: "out", delivery_status: "queued", received_at: "2026-11-23T13:20:00Z" });
    vi.spyOn(messagesApi, "send").mockImplementationOnce(async () => {
      store.applyEvent({ ...sent, delivery_status: "sent" }, 20);
      return sent;
    });
    await store.send("Merci !", "reply");
    expect(store.items.filter((m) => m.id === 4)).toHaveLength(1);
    expect(store.items.find((m) => m.id === 4)?.delivery_status).toBe("sent");
  });

  it("sends a private reply to the chosen comment", async () => {
    const store = await openThread();
    const send = vi.spyOn(messagesApi, "send").mockResolvedValueOnce(message({ id: 5, conversation_id: 7 }));
    await store.send("On vous écrit en privé", "private_reply", 2);
    expect(send).toHaveBeenCalledWith(7, { text: "On vous écrit en privé", kind: "private_reply", reply_to_message_id: 2 });
  });
});

describe("message store: watching the open conversation", () => {
  let detach: (() => void) | null = null;
  /** The sets asked for, each answered when the test says so (the realtime client stands in here). */
  let asked: { ids: Id[]; answer: (accepted: number[]) => void }[] = [];

  beforeEach(() => {
    setActivePinia(createPinia());
    asked = [];
    detach = attachWatcher({
      watch: (ids) => new Promise((resolve) => asked.push({ ids: [...ids], answer: resolve })),
    });
    asked = []; // attaching hands over the current set; the tests look at what the store asks
  });

  afterEach(() => {
    detach?.();
    detach = null;
  });

  const page = (conversationId: number) => ({
    items: [message({ id: conversationId * 10, conversation_id: conversationId })],
    next_cursor: null,
  });

  it("watches the conversation before fetching its thread", async () => {
    const list = vi.spyOn(messagesApi, "list").mockResolvedValue(page(7));
    const store = useMessageStore();
    const opening = store.open(7);
    expect(asked.map((a) => a.ids)).toEqual([[7]]);
    expect(store.loading).toBe(true);
    await Promise.resolve();
    expect(list).not.toHaveBeenCalled();
    asked[0]?.answer([7]);
    await opening;
    expect(list).toHaveBeenCalledWith(7, null, expect.any(Number));
    expect(store.items.map((m) => m.id)).toEqual([70]);
  });

  it("replaces the watched conversation when another one opens, and fetches only that thread", async () => {
    const list = vi.spyOn(messagesApi, "list").mockImplementation(async (id) => page(Number(id)));
    const store = useMessageStore();
    const first = store.open(7);
    const second = store.open(8);
    expect(asked.map((a) => a.ids)).toEqual([[7], [8]]);
    asked[0]?.answer([7]);
    asked[1]?.answer([8]);
    await Promise.all([first, second]);
    expect(list.mock.calls.map(([id]) => id)).toEqual([8]); // #7 was left before its thread was fetched
    expect(store.conversationId).toBe(8);
    expect(store.items.map((m) => m.id)).toEqual([80]);
  });

  it("watches no conversation once closed", async () => {
    vi.spyOn(messagesApi, "list").mockResolvedValue(page(7));
    const store = useMessageStore();
    const opening = store.open(7);
    asked[0]?.answer([7]);
    await opening;
    store.close();
    store.close(); // the view and the layout both close it when signing out: asked once
    expect(asked.map((a) => a.ids)).toEqual([[7], []]);
  });

  it("still fetches the thread when the watch fails", async () => {
    detach?.();
    detach = attachWatcher({ watch: () => Promise.reject(new Error("socket gone")) });
    const list = vi.spyOn(messagesApi, "list").mockResolvedValue(page(7));
    const store = useMessageStore();
    await expect(store.open(7)).resolves.toBeUndefined();
    expect(list).toHaveBeenCalledOnce();
    expect(store.items.map((m) => m.id)).toEqual([70]);
  });
});
