import { describe, expect, it, vi } from "vitest";
import { RealtimeClient, type SocketLike } from "@/socket/client";
import type { ServerEvent } from "@/socket/events";
import { SeqTracker } from "@/socket/seq";
import { conversation } from "../factories";

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
    expect(auth()).toEqual({ last_seq: null });
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
    expect(auth()).toEqual({ last_seq: 2 });
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
    expect(auth()).toEqual({ last_seq: 4 });
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
    expect(resumes).toEqual([{ last_seq: 7 }]);
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
