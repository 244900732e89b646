import { createPinia, setActivePinia } from "pinia";
import { describe, expect, it, vi } from "vitest";
import { conversationsApi, messagesApi } from "@/api";
import { RealtimeClient, WATCH_ACK_TIMEOUT_MS, type SocketLike } from "@/socket/client";
import type { ServerEvent } from "@/socket/events";
import { startRealtime } from "@/socket/realtime";
import { SeqTracker } from "@/socket/seq";
import { useConversationStore } from "@/stores/conversations";
import { useMessageStore } from "@/stores/messages";
import { conversation, message } from "../factories";

describe("SeqTracker", () => {
  it("accepts each seq once, in any order, and remembers the highest", () => {
    const tracker = new SeqTracker();
    expect(tracker.lastSeq).toBeNull();
    expect(tracker.accept(5)).toBe(true);
    expect(tracker.accept(3)).toBe(true); // replayed out of order, not seen yet
    expect(tracker.accept(5)).toBe(false); // duplicate
    expect(tracker.accept(3)).toBe(false);
    expect(tracker.lastSeq).toBe(5);
  });

  it("stays bounded and treats anything older than what it forgot as seen", () => {
    const tracker = new SeqTracker(100);
    for (let seq = 1; seq <= 1000; seq++) tracker.accept(seq);
    expect(tracker.size).toBeLessThanOrEqual(100);
    expect(tracker.lastSeq).toBe(1000);
    expect(tracker.accept(10)).toBe(false);
    expect(tracker.accept(999)).toBe(false);
    expect(tracker.accept(1001)).toBe(true);
  });

  it("tells the server what it has seen: its numbers, consecutive ones as ranges, and all below its floor", () => {
    const tracker = new SeqTracker(8);
    expect(tracker.seenRanges()).toEqual([]);
    for (const seq of [3, 1, 2, 7, 9, 10, 11, 5]) tracker.accept(seq);
    expect(tracker.seenRanges()).toEqual([[1, 3], 5, 7, [9, 11]]);
    tracker.accept(13); // a ninth: the lowest are forgotten, and everything up to them counts as seen
    expect(tracker.seenRanges()).toEqual([[0, 3], 5, 7, [9, 11], 13]);
    expect(tracker.has(2)).toBe(true);
  });

  it("rejects non-numbers", () => {
    expect(new SeqTracker().accept(Number.NaN)).toBe(false);
  });
});

class FakeSocket implements SocketLike {
  active = true;
  handlers = new Map<string, ((...args: any[]) => void)[]>();
  managerHandlers = new Map<string, ((...args: any[]) => void)[]>();
  connect = vi.fn();
  disconnect = vi.fn();
  io = {
    on: (event: string, listener: (...args: any[]) => void) => {
      this.managerHandlers.set(event, [...(this.managerHandlers.get(event) ?? []), listener]);
    },
  };
  on(event: string, listener: (...args: any[]) => void) {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), listener]);
  }
  emit(event: string, ...args: unknown[]) {
    for (const listener of this.handlers.get(event) ?? []) listener(...args);
  }
  emitManager(event: string, ...args: unknown[]) {
    for (const listener of this.managerHandlers.get(event) ?? []) listener(...args);
  }
  /** Plays the server's handler of a client event: what `handler` returns is the acknowledgement. */
  handle(event: string, handler: (payload: any) => unknown) {
    this.on(event, (payload: unknown, ack?: (answer: unknown) => void) => ack?.(handler(payload)));
  }
  /** Records a client event's payloads and acknowledgement callbacks, to answer them later (or never). */
  hold(event: string) {
    const held: { payload: any; ack: (answer: unknown) => void }[] = [];
    this.on(event, (payload: unknown, ack: (answer: unknown) => void) => held.push({ payload, ack }));
    return held;
  }
}

function setup() {
  const socket = new FakeSocket();
  let options: Record<string, unknown> = {};
  const events: ServerEvent[] = [];
  const states: string[] = [];
  const connects: { resumed: boolean }[] = [];
  const refused = vi.fn();
  const client = new RealtimeClient({
    factory: (o) => {
      options = o as Record<string, unknown>;
      return socket;
    },
    onEvent: (event) => events.push(event),
    onState: (state) => states.push(state),
    onConnect: (info) => connects.push(info),
    onRefused: refused,
    retryAfterRefusalMs: 1000,
  });
  client.start();
  const auth = () => {
    let sent: Record<string, unknown> = {};
    (options.auth as (cb: (a: Record<string, unknown>) => void) => void)((a) => (sent = a));
    return sent;
  };
  return { socket, options, events, states, connects, refused, client, auth };
}

describe("RealtimeClient", () => {
  it("connects to /socket.io with the session cookie and an auth function", () => {
    const { options, auth } = setup();
    expect(options.path).toBe("/socket.io");
    expect(options.withCredentials).toBe(true);
    expect(typeof options.auth).toBe("function");
    expect(auth()).toEqual({ last_seq: null, watch: [] });
  });

  it("dedupes events by seq and resumes from the highest seq on reconnect", () => {
    const { socket, events, auth, connects } = setup();
    socket.emit("connect");
    const data = conversation({ id: 1 });
    socket.emit("events", [
      { event: "conversation.updated", seq: 1, data },
      { event: "conversation.updated", seq: 2, data },
    ]);
    socket.emit("events", [{ event: "conversation.updated", seq: 2, data }]);
    expect(events.map((e) => e.seq)).toEqual([1, 2]);

    socket.emit("disconnect", "transport close");
    // socket.io calls the auth function again for the new handshake.
    expect(auth()).toEqual({ last_seq: 2, seen: [[1, 2]], watch: [] });
    socket.emit("connect");
    // The replay may repeat and reorder.
    socket.emit("events", [
      { event: "message.created", seq: 4, data: { id: 9 }, replay: true },
      { event: "conversation.updated", seq: 2, data, replay: true },
      { event: "message.updated", seq: 3, data: { id: 9 }, replay: true },
    ]);
    expect(events.map((e) => [e.event, e.seq])).toEqual([
      ["conversation.updated", 1],
      ["conversation.updated", 2],
      ["message.created", 4],
      ["message.updated", 3],
    ]);
    expect(auth()).toEqual({ last_seq: 4, seen: [[1, 4]], watch: [] });
    expect(connects.map((c) => c.resumed)).toEqual([false, true]);
  });

  it("ignores malformed frames, malformed envelopes and events it does not know", () => {
    const { socket, events, client } = setup();
    socket.emit("events", { event: "conversation.updated", seq: 1, data: conversation() });
    socket.emit("events", undefined);
    socket.emit("events", [
      null,
      { event: "conversation.updated", data: conversation() },
      { event: "conversation.updated", seq: 2 },
      { event: "agent.updated", seq: 3, data: { id: 1 } },
      { seq: 4, data: {} },
    ]);
    expect(events).toEqual([]);
    expect(client.receiveFrame([{ event: "message.created", seq: 5, data: { id: 1 } }])).toBe(1);
    expect(events.map((e) => e.seq)).toEqual([5]);
  });

  it("tells when the server changes its rooms while connected, not on every connection", () => {
    const socket = new FakeSocket();
    const changed = vi.fn();
    const client = new RealtimeClient({ factory: () => socket, onEvent: () => {}, onAccessChanged: changed });
    client.start();
    socket.emit("connect");
    socket.emit("session", { agent_id: 3, rooms: ["agent:3", "brand:1"] });
    socket.emit("disconnect", "transport close");
    socket.emit("connect");
    socket.emit("session", { agent_id: 3, rooms: ["brand:1", "agent:3"] }); // same rooms, another order
    expect(changed).not.toHaveBeenCalled();
    socket.emit("session", { agent_id: 3, rooms: ["agent:3"] }); // removed from the brand's team
    expect(changed).toHaveBeenCalledOnce();
    socket.emit("session", undefined);
    expect(changed).toHaveBeenCalledOnce();
  });

  it("asks for what it missed when the server says its live feed had a gap", () => {
    const { socket } = setup();
    const resumes: unknown[] = [];
    socket.on("resume", (payload: unknown) => resumes.push(payload));
    socket.emit("connect");
    socket.emit("resync"); // nothing seen yet: nothing to resume from
    expect(resumes).toEqual([]);
    socket.emit("events", [{ event: "message.created", seq: 7, data: { id: 1 } }]);
    socket.emit("resync");
    expect(resumes).toEqual([{ last_seq: 7, seen: [7] }]);
  });

  it("tells when a replay could not be whole, and only then", () => {
    const socket = new FakeSocket();
    const incomplete = vi.fn();
    const client = new RealtimeClient({ factory: () => socket, onEvent: () => {}, onReplayIncomplete: incomplete });
    client.start();
    socket.emit("connect");
    socket.emit("replayed", { complete: true, missed: 3 });
    socket.emit("replayed", undefined);
    socket.emit("replayed", { missed: null });
    expect(incomplete).not.toHaveBeenCalled();
    socket.emit("replayed", { complete: false, missed: null });
    expect(incomplete).toHaveBeenCalledOnce();
  });

  it("reports connected / reconnecting / offline", () => {
    vi.useFakeTimers();
    try {
      const { socket, states, refused } = setup();
      expect(states).toEqual(["reconnecting"]);
      socket.emit("connect");
      socket.emit("disconnect", "transport close");
      expect(states).toEqual(["reconnecting", "connected", "reconnecting"]);

      // Refused by the server (not signed in): socket.io gives up, we ask the session and retry later.
      socket.active = false;
      socket.emit("connect_error", new Error("unauthorized"));
      expect(states.at(-1)).toBe("offline");
      expect(refused).toHaveBeenCalledOnce();
      vi.advanceTimersByTime(1000);
      expect(socket.connect).toHaveBeenCalledOnce();
      expect(states.at(-1)).toBe("reconnecting");
    } finally {
      vi.useRealTimers();
    }
  });

  it("goes offline and stays so when stopped", () => {
    const { socket, states, client } = setup();
    socket.emit("connect");
    client.stop();
    expect(socket.disconnect).toHaveBeenCalled();
    expect(states.at(-1)).toBe("offline");
  });
});

describe("heartbeat", () => {
  it("sends a heartbeat every 30 s while connected, and stops with the client", () => {
    vi.useFakeTimers();
    try {
      const { socket, client } = setup();
      const sent = vi.spyOn(socket, "emit");
      vi.advanceTimersByTime(30_000);
      expect(sent).not.toHaveBeenCalledWith("heartbeat"); // not connected yet
      socket.emit("connect");
      vi.advanceTimersByTime(30_000);
      expect(sent).toHaveBeenCalledWith("heartbeat");
      const count = sent.mock.calls.filter(([name]) => name === "heartbeat").length;
      client.stop();
      vi.advanceTimersByTime(90_000);
      expect(sent.mock.calls.filter(([name]) => name === "heartbeat").length).toBe(count);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("watching conversations", () => {
  it("sends the ids with an acknowledgement and resolves with the ones the server accepted", async () => {
    const { socket, client } = setup();
    const asked: unknown[] = [];
    socket.handle("watch", (payload) => {
      asked.push(payload);
      return { watching: payload.conversation_ids.filter((id: number) => id !== 9) }; // #9 is not the agent's to see
    });
    socket.emit("connect");
    await expect(client.watch([7, "9", "9"])).resolves.toEqual([7]);
    expect(asked).toEqual([{ conversation_ids: [7, 9] }]); // route params are strings; the server wants integers
    await expect(client.watch([])).resolves.toEqual([]);
    expect(asked.at(-1)).toEqual({ conversation_ids: [] });
  });

  it("carries the last seq and the watched conversations in every handshake", async () => {
    const { socket, client, auth } = setup();
    socket.handle("watch", (payload) => ({ watching: payload.conversation_ids }));
    await client.watch([7]);
    expect(auth()).toEqual({ last_seq: null, watch: [7] });
    socket.emit("connect");
    socket.emit("events", [{ event: "conversation.updated", seq: 3, data: conversation({ id: 8 }) }]);
    await client.watch(["8"]);
    socket.emit("disconnect", "transport close");
    expect(auth()).toEqual({ last_seq: 3, seen: [3], watch: [8] }); // the server rejoins #8 before the replay
  });

  it("does not send while disconnected, and resolves with the ids asked", async () => {
    const { socket, client, auth } = setup();
    const sent = vi.spyOn(socket, "emit");
    await expect(client.watch([7])).resolves.toEqual([7]);
    expect(sent).not.toHaveBeenCalledWith("watch", expect.anything(), expect.anything());
    expect(client.watched).toEqual([7]);
    expect(auth()).toEqual({ last_seq: null, watch: [7] });
  });

  it("resolves without throwing on an error answer, no answer, or a lost connection", async () => {
    vi.useFakeTimers();
    try {
      const { socket, client, auth } = setup();
      const held = socket.hold("watch");
      socket.emit("connect");
      const refused = client.watch([7]);
      await vi.advanceTimersByTimeAsync(0);
      held[0]?.ack({ error: "conversation_ids must be a list of at most 20 conversation ids" });
      await expect(refused).resolves.toEqual([]);

      const unanswered = client.watch([8]);
      await vi.advanceTimersByTimeAsync(WATCH_ACK_TIMEOUT_MS);
      await expect(unanswered).resolves.toEqual([]);

      const lost = client.watch([9]);
      await vi.advanceTimersByTimeAsync(0);
      expect(held.map((h) => h.payload)).toEqual([7, 8, 9].map((id) => ({ conversation_ids: [id] })));
      socket.emit("disconnect", "transport close");
      await expect(lost).resolves.toEqual([9]); // the next handshake carries it
      expect(auth()).toEqual({ last_seq: null, watch: [9] });
    } finally {
      vi.useRealTimers();
    }
  });

  it("sends one request at a time, and only the latest of those that waited", async () => {
    const { socket, client } = setup();
    const held = socket.hold("watch");
    socket.emit("connect");
    const first = client.watch([1]);
    await vi.waitFor(() => expect(held).toHaveLength(1));
    const second = client.watch([2]);
    const third = client.watch([3]);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(held.map((h) => h.payload)).toEqual([{ conversation_ids: [1] }]); // the others wait for its answer
    held[0]?.ack({ watching: [1] });
    await expect(first).resolves.toEqual([1]);
    await expect(second).resolves.toEqual([]); // replaced before it was sent
    await vi.waitFor(() => expect(held).toHaveLength(2));
    expect(held[1]?.payload).toEqual({ conversation_ids: [3] });
    held[1]?.ack({ watching: [3] });
    await expect(third).resolves.toEqual([3]);
  });

  it("asks for a set chosen after the handshake left, then for what it missed", async () => {
    const { socket, client, auth } = setup();
    const asked: unknown[] = [];
    const resumes: unknown[] = [];
    socket.handle("watch", (payload) => {
      asked.push(payload);
      return { watching: payload.conversation_ids };
    });
    socket.on("resume", (payload: unknown) => resumes.push(payload));
    auth();
    socket.emit("connect");
    socket.emit("events", [{ event: "conversation.updated", seq: 5, data: conversation({ id: 7 }) }]);
    socket.emit("disconnect", "transport close");
    expect(auth()).toEqual({ last_seq: 5, seen: [5], watch: [] }); // the handshake leaves...
    await client.watch([7]); // ...the agent opens #7 before the connection is back
    expect(asked).toEqual([]);
    socket.emit("connect");
    await vi.waitFor(() => expect(resumes).toEqual([{ last_seq: 5, seen: [5] }]));
    expect(asked).toEqual([{ conversation_ids: [7] }]);
  });
});

describe("the open conversation's live thread", () => {
  function openConsole() {
    setActivePinia(createPinia());
    const socket = new FakeSocket();
    const realtime = startRealtime({ onSignedOut: () => {}, factory: () => socket });
    const list = vi.spyOn(messagesApi, "list").mockResolvedValue({ items: [], next_cursor: null });
    const held = socket.hold("watch");
    const connect = () => {
      (realtime.client.auth as (cb: (a: Record<string, unknown>) => void) => void)(() => {});
      socket.emit("connect");
    };
    return { socket, realtime, list, held, connect, messages: useMessageStore() };
  }

  it("watches the conversation it opens before fetching its thread, and none once closed", async () => {
    const { realtime, list, held, connect, messages } = openConsole();
    try {
      connect();
      const opening = messages.open("7");
      await vi.waitFor(() => expect(held).toHaveLength(1));
      expect(held[0]?.payload).toEqual({ conversation_ids: [7] });
      expect(list).not.toHaveBeenCalled(); // not before the server joined us to the conversation
      held[0]?.ack({ watching: [7] });
      await opening;
      expect(list).toHaveBeenCalledWith("7", null, expect.any(Number));

      messages.close();
      await vi.waitFor(() => expect(held).toHaveLength(2));
      expect(held[1]?.payload).toEqual({ conversation_ids: [] });
      held[1]?.ack({ watching: [] });
    } finally {
      realtime.stop();
    }
  });

  it("applies the thread's events that arrive between the join and the page", async () => {
    const { socket, realtime, list, held, connect, messages } = openConsole();
    try {
      connect();
      let answer: (page: { items: ReturnType<typeof message>[]; next_cursor: null }) => void = () => {};
      list.mockReturnValueOnce(new Promise((resolve) => (answer = resolve)));
      const opening = messages.open(7);
      await vi.waitFor(() => expect(held).toHaveLength(1));
      held[0]?.ack({ watching: [7] });
      await vi.waitFor(() => expect(list).toHaveBeenCalled());
      const live = message({ id: 2, conversation_id: 7, platform_time: "2026-11-23T13:05:00Z" });
      socket.emit("events", [{ event: "message.created", seq: 10, data: live }]);
      answer({ items: [message({ id: 1, conversation_id: 7, platform_time: "2026-11-23T13:00:00Z" })], next_cursor: null });
      await opening;
      expect(messages.items.map((m) => m.id)).toEqual([1, 2]);
    } finally {
      realtime.stop();
      messages.close();
    }
  });

  it("opens a conversation without a connection, and the first handshake carries it", async () => {
    setActivePinia(createPinia());
    const list = vi.spyOn(messagesApi, "list").mockResolvedValue({ items: [], next_cursor: null });
    const messages = useMessageStore();
    await messages.open("7"); // a link to the conversation: shown before AppLayout starts the socket
    expect(list).toHaveBeenCalledOnce();
    const socket = new FakeSocket();
    const realtime = startRealtime({ onSignedOut: () => {}, factory: () => socket });
    try {
      let sent: Record<string, unknown> = {};
      (realtime.client.auth as (cb: (a: Record<string, unknown>) => void) => void)((a) => (sent = a));
      expect(sent).toEqual({ last_seq: null, watch: [7] });
    } finally {
      realtime.stop();
      messages.close();
    }
  });
});

/** A console showing conversation 1's thread, its list and thread requests counted, on a fake socket. */
async function consoleShowingAThread() {
  setActivePinia(createPinia());
  const list = vi.spyOn(conversationsApi, "list").mockResolvedValue({
    items: [conversation({ id: 1 })],
    next_cursor: null,
  });
  vi.spyOn(conversationsApi, "get").mockResolvedValue(conversation({ id: 1 }));
  const thread = vi.spyOn(messagesApi, "list").mockResolvedValue({ items: [message({ id: 1 })], next_cursor: null });
  const conversations = useConversationStore();
  const messages = useMessageStore();
  await conversations.setFilters({ view: "all", status: "open" });
  await conversations.open(1);
  await messages.open("1");
  const socket = new FakeSocket();
  const realtime = startRealtime({ onSignedOut: () => {}, factory: () => socket });
  return { list, thread, messages, socket, realtime };
}

describe("an incomplete replay", () => {
  it("fetches the list, its counts and the open thread again, as after a long disconnection", async () => {
    const { list, thread, messages, socket, realtime } = await consoleShowingAThread();
    try {
      socket.emit("connect");
      socket.emit("events", [{ event: "message.created", seq: 7, data: message({ id: 2 }) }]);
      socket.emit("disconnect", "transport close");
      const [lists, threads] = [list.mock.calls.length, thread.mock.calls.length];
      socket.emit("connect"); // a short gap: the replay is enough, nothing is fetched, not even the counts
      socket.emit("replayed", { complete: true, missed: 0 });
      await Promise.resolve();
      expect([list.mock.calls.length, thread.mock.calls.length]).toEqual([lists, threads]);
      socket.emit("replayed", { complete: false, missed: null });
      await vi.waitFor(() => expect(thread.mock.calls.length).toBe(threads + 1));
      expect(list.mock.calls.length).toBe(lists + 1);
    } finally {
      realtime.stop();
      messages.close();
      vi.restoreAllMocks();
    }
  });
});

describe("a reconnection after a long gap", () => {
  it("waits for the replay: fetches nothing when it is whole, everything once when it is not", async () => {
    const { list, thread, messages, socket, realtime } = await consoleShowingAThread();
    let clock = Date.now();
    vi.spyOn(Date, "now").mockImplementation(() => clock);
    try {
      socket.emit("connect");
      socket.emit("events", [{ event: "message.created", seq: 7, data: message({ id: 2 }) }]);
      await new Promise((resolve) => setTimeout(resolve, 0));
      const [lists, threads] = [list.mock.calls.length, thread.mock.calls.length];
      socket.emit("disconnect", "transport close");
      clock += 60 * 60_000; // an hour away (a laptop asleep over lunch)
      socket.emit("connect");
      socket.emit("replayed", { complete: true, missed: 40 });
      await new Promise((resolve) => setTimeout(resolve, 0));
      expect([list.mock.calls.length, thread.mock.calls.length]).toEqual([lists, threads]);
      socket.emit("disconnect", "transport close");
      clock += 60 * 60_000;
      socket.emit("connect");
      await new Promise((resolve) => setTimeout(resolve, 0));
      expect([list.mock.calls.length, thread.mock.calls.length]).toEqual([lists, threads]); // not before the end
      socket.emit("replayed", { complete: false, missed: null });
      await vi.waitFor(() => expect(thread.mock.calls.length).toBe(threads + 1));
      expect(list.mock.calls.length).toBe(lists + 1); // once, not twice
    } finally {
      realtime.stop();
      messages.close();
      vi.restoreAllMocks();
    }
  });
});

describe("a short reconnection with nothing to replay from", () => {
  it("asks the counts again (no replay will bring their moves), and nothing else", async () => {
    setActivePinia(createPinia());
    const list = vi.spyOn(conversationsApi, "list").mockResolvedValue({
      items: [conversation({ id: 1 })],
      next_cursor: null,
      counts: { mine: 0, unassigned: 1, all: 1 },
    } as never);
    const conversations = useConversationStore();
    await conversations.setFilters({ view: "all", status: "open" });
    const socket = new FakeSocket();
    const realtime = startRealtime({ onSignedOut: () => {}, factory: () => socket });
    try {
      socket.emit("connect");
      await vi.waitFor(() => expect(list.mock.calls.length).toBeGreaterThan(1)); // the first connection: a full load
      await new Promise((resolve) => setTimeout(resolve, 0));
      const before = list.mock.calls.length;
      socket.emit("disconnect", "transport close");
      socket.emit("connect"); // no event was ever seen: the handshake had no last seq
      await vi.waitFor(() => expect(list.mock.calls.length).toBe(before + 1));
      expect(list.mock.calls[before]?.[0]).toMatchObject({ limit: 1 }); // the counts' request
    } finally {
      realtime.stop();
      vi.restoreAllMocks();
    }
  });
});

describe("contact.updated", () => {
  it("is applied to the conversations store: list rows and the open conversation show the new name", async () => {
    setActivePinia(createPinia());
    const unnamed = { id: 500, name: null, handle: null, avatar_url: null };
    const lookedUp = { id: 500, name: "Léa Martin", handle: "lea.martin", avatar_url: "https://cdn.example/lea.jpg" };
    vi.spyOn(conversationsApi, "list").mockResolvedValue({
      items: [conversation({ id: 1, contact: unnamed }), conversation({ id: 2, contact: { ...unnamed, id: 600 } })],
      next_cursor: null,
    });
    vi.spyOn(conversationsApi, "get").mockResolvedValue(conversation({ id: 1, contact: unnamed }));
    const conversations = useConversationStore();
    await conversations.setFilters({ view: "all", status: "open" });
    await conversations.open(1);
    const socket = new FakeSocket();
    const realtime = startRealtime({ onSignedOut: () => {}, factory: () => socket });
    try {
      expect(conversations.items).toHaveLength(2);
      socket.emit("events", [{ event: "contact.updated", seq: 3, data: lookedUp }]);
      expect(realtime.client.tracker.lastSeq).toBe(3);
      expect(conversations.items.find((c) => c.id === 1)?.contact).toEqual(lookedUp);
      expect(conversations.items.find((c) => c.id === 2)?.contact.name).toBeNull();
      expect(conversations.current?.contact).toEqual(lookedUp);
    } finally {
      realtime.stop();
      vi.restoreAllMocks();
    }
  });
});
