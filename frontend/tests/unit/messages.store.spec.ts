import { createPinia, setActivePinia } from "pinia";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { messagesApi } from "@/api";
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
