import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createPinia, setActivePinia } from "pinia";
import { describe, expect, it } from "vitest";
import type { Conversation } from "@/api/types";
import { RealtimeClient, type SocketLike } from "@/socket/client";
import type { ServerEvent } from "@/socket/events";
import { expandConversation } from "@/socket/wire";
import { useConversationStore } from "@/stores/conversations";

// Written by the server's own rule (inbox/realtime/wire.py) from every shape of the conversation JSON; the Python
// test (tests/integration/test_live_wire.py) checks that it covers every member the schema may leave out.
const fixture = JSON.parse(
  readFileSync(resolve(process.cwd(), "../tests/fixtures/live_conversations.json"), "utf8"), // vitest runs in frontend/
) as { pairs: { full: Record<string, unknown>; wire: Record<string, unknown> }[] };

describe("conversation events' wire form", () => {
  it("is expanded back to the REST API's JSON for every shape the server sends", () => {
    expect(fixture.pairs.length).toBeGreaterThan(3);
    for (const { full, wire } of fixture.pairs) {
      expect(JSON.stringify(wire).length).toBeLessThan(JSON.stringify(full).length);
      expect(expandConversation(wire)).toStrictEqual(full);
    }
  });

  it("leaves a full conversation (an event stored before the wire form) as it is", () => {
    for (const { full } of fixture.pairs) expect(expandConversation(full)).toStrictEqual(full);
  });

  it("does not change the event's own data", () => {
    const { wire } = fixture.pairs[0]!;
    const before = JSON.stringify(wire);
    expandConversation(wire);
    expect(JSON.stringify(wire)).toBe(before);
  });

  it("is restored by the client before the application sees it; other events pass as they are", () => {
    const events: ServerEvent[] = [];
    const socket = { on: () => {}, emit: () => {}, connect: () => {}, disconnect: () => {}, active: true,
                     io: { on: () => {} } } as unknown as SocketLike;
    const client = new RealtimeClient({ factory: () => socket, onEvent: (e) => events.push(e) });
    const bare = fixture.pairs.find((p) => p.full.assignee === null && p.full.post === null)!;
    const contact = { id: 9, name: "Zoé", handle: null, avatar_url: null };
    expect(client.receiveFrame([
      { event: "conversation.created", seq: 1, data: bare.wire },
      { event: "conversation.updated", seq: 2, data: bare.wire },
      { event: "contact.updated", seq: 3, data: contact },
    ])).toBe(3);
    expect(events.map((e) => e.event)).toEqual(["conversation.created", "conversation.updated", "contact.updated"]);
    expect(events[0]?.data).toStrictEqual(bare.full);
    expect(events[1]?.data).toStrictEqual(bare.full);
    expect(events[2]?.data).toBe(contact);
  });

  it("gives the stores a row they can place and show: nulls where the wire said nothing", () => {
    setActivePinia(createPinia());
    const store = useConversationStore();
    const bare = fixture.pairs.find((p) => p.full.assignee === null && p.full.post === null)!;
    store.applyConversation(expandConversation(bare.wire), 1, "created");
    const row = store.get((bare.full as unknown as Conversation).id) as Conversation;
    expect(row.assignee).toBeNull();
    expect(row.post).toBeNull();
    expect(row.reply_window).toStrictEqual(bare.full.reply_window);
    expect(row.last_message?.at).toBe(bare.full.last_message_at);
  });
});
