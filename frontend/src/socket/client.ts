import { io, type ManagerOptions, type SocketOptions } from "socket.io-client";
import type { Id } from "@/api/types";
import { SERVER_EVENTS, type Envelope, type ServerEvent, type ServerEventName, type ServerEvents } from "./events";
import { expandConversation } from "./wire";
import { SeqTracker } from "./seq";

export type ConnectionState = "connected" | "reconnecting" | "offline";

/** The part of a socket.io-client Socket this module uses (a fake in tests). */
export interface SocketLike {
  readonly active: boolean;
  on(event: string, listener: (...args: any[]) => void): unknown;
  connect(): unknown;
  disconnect(): unknown;
  /** A function as the last argument is the acknowledgement callback: it receives what the server's handler returned. */
  emit?(event: string, ...args: unknown[]): unknown;
  io: { on(event: string, listener: (...args: any[]) => void): unknown };
}

export type AuthCallback = (callback: (auth: Record<string, unknown>) => void) => void;
export type SocketFactory = (options: Partial<ManagerOptions & SocketOptions>) => SocketLike;

export interface RealtimeOptions {
  onEvent: (event: ServerEvent) => void;
  onState?: (state: ConnectionState) => void;
  /**
   * Every successful connection; `resumed` is false for the first one. `replaying`: the handshake carried the
   * last seq seen, so the server replays what was missed and ends with `replayed` (onReplayIncomplete when it
   * could not be whole).
   */
  onConnect?: (info: { resumed: boolean; offlineForMs: number; replaying: boolean }) => void;
  /** The server changed this socket's rooms while connected (the agent's teams or role changed). */
  onAccessChanged?: () => void;
  /**
   * The server could not replay everything missed (too many events, or the last one seen is no longer
   * kept) and sent none of it: the views must be fetched again.
   */
  onReplayIncomplete?: () => void;
  /** The server refused the connection (not signed in, session expired...). */
  onRefused?: (error: Error) => void;
  tracker?: SeqTracker;
  factory?: SocketFactory;
  /** Delay before trying again after a refusal, when the session still looks valid. */
  retryAfterRefusalMs?: number;
}

/** Presence: the server marks an agent offline when a connected console stops sending these. */
export const HEARTBEAT_INTERVAL_MS = 30_000;

/** Conversations one socket may watch at once (WATCH_MAX in inbox/realtime/handlers.py). */
export const WATCH_MAX = 20;
/** How long a `watch` waits for the server's answer before the console goes on without it. */
export const WATCH_ACK_TIMEOUT_MS = 5000;

/** Conversation ids as the server takes them: positive integers (route params are strings), once each, at most WATCH_MAX. */
export function watchIds(ids: readonly Id[]): number[] {
  const numbers = ids.map(Number).filter((id) => Number.isSafeInteger(id) && id > 0);
  return [...new Set(numbers)].slice(0, WATCH_MAX);
}

/** The ids of a `watch` acknowledgement (`{"watching": [ids]}`); none for `{"error": "..."}` or anything else. */
function acceptedIds(answer: unknown): number[] {
  const watching = (answer as { watching?: unknown } | null | undefined)?.watching;
  return Array.isArray(watching) ? watchIds(watching as Id[]) : [];
}

const sameIds = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((id, i) => id === b[i]);

/** One entry of an `events` frame: the envelope plus the event's name. */
type FrameItem = Envelope<unknown> & { event?: string; replay?: boolean };
const KNOWN_EVENTS: ReadonlySet<ServerEventName> = new Set(SERVER_EVENTS);
/** Events whose data travels in a wire form (wire.ts), restored before the application sees it. */
const DECODERS: Partial<Record<ServerEventName, (data: unknown) => unknown>> = {
  "conversation.created": expandConversation,
  "conversation.updated": expandConversation,
};

const defaultFactory: SocketFactory = (options) => io(options) as unknown as SocketLike;

/**
 * Socket.IO client with resume: it hands the server the highest sequence number it has seen on
 * every (re)connect (`auth` is a function, so socket.io re-reads it each time), and drops the
 * duplicates of the replay that follows.
 *
 * Thread events (`message.*`) come only for the conversations this socket watches (`watch`). The
 * handshake carries the watched set too, so a reconnect rejoins them before the replay, and the
 * replay includes their missed messages.
 */
export class RealtimeClient {
  readonly tracker: SeqTracker;
  private socket: SocketLike | null = null;
  private state: ConnectionState = "offline";
  private everConnected = false;
  private lostAt: number | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private stopped = true;
  /** The rooms of the last `session` event, to notice when the server changes them. */
  private rooms: string | null = null;
  /** The conversations this socket should watch; sent in every handshake. */
  private watching: number[] = [];
  /** The set the last handshake carried, to notice one asked for after the handshake left. */
  private handshakeWatch: number[] = [];
  /** `watch` requests go one after another (see `watch`). */
  private watchQueue: Promise<unknown> = Promise.resolve();
  /** The requests waiting for their answer: settled at once when the connection drops. */
  private readonly unanswered = new Set<() => void>();
  private readonly onBrowserOffline = () => this.setState("offline");
  private readonly onBrowserOnline = () => {
    if (this.state !== "connected") this.setState("reconnecting");
  };

  constructor(private readonly options: RealtimeOptions) {
    this.tracker = options.tracker ?? new SeqTracker();
  }

  get connectionState(): ConnectionState {
    return this.state;
  }

  /** What the socket sends as its handshake `auth`; read again on every reconnect. */
  readonly auth: AuthCallback = (callback) => {
    this.handshakeWatch = this.watching;
    const lastSeq = this.tracker.lastSeq;
    const seen = lastSeq === null ? {} : { seen: this.tracker.seenRanges() };
    callback({ last_seq: lastSeq, ...seen, watch: this.watching });
  };

  /** The conversations this socket watches (or will, once connected). */
  get watched(): readonly number[] {
    return this.watching;
  }

  /**
   * Watches exactly these conversations (replacing the previous set; `[]` for none) and resolves with
   * the ids the server accepted (those the agent may see). Not connected, it resolves at once with the
   * ids asked: the next handshake carries them. Never rejects: after an error answer or no answer
   * within WATCH_ACK_TIMEOUT_MS it resolves with `[]`, and the set is asked again on the next connect.
   */
  watch(ids: readonly Id[]): Promise<number[]> {
    this.watching = watchIds(ids);
    return this.queueWatch(this.watching);
  }

  start(): void {
    if (this.socket) return;
    this.stopped = false;
    const factory = this.options.factory ?? defaultFactory;
    const socket = factory({
      path: "/socket.io",
      withCredentials: true,
      auth: this.auth,
      reconnection: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 10000,
    });
    this.socket = socket;
    this.setState("reconnecting");
    if (typeof window !== "undefined") {
      window.addEventListener("offline", this.onBrowserOffline);
      window.addEventListener("online", this.onBrowserOnline);
    }

    socket.on("connect", () => {
      const resumed = this.everConnected;
      const offlineForMs = this.lostAt === null ? 0 : Date.now() - this.lostAt;
      this.everConnected = true;
      this.lostAt = null;
      this.setState("connected");
      // The set changed after the handshake left (one round trip): ask for it now, then for what the
      // newly watched conversations missed since the last event seen.
      if (!sameIds(this.handshakeWatch, this.watching)) {
        void this.queueWatch(this.watching).then(() => {
          this.resume(socket);
        });
      }
      // no event arrives between the handshake's `auth` and this: its last seq is the tracker's
      this.options.onConnect?.({ resumed, offlineForMs, replaying: this.tracker.lastSeq !== null });
    });

    socket.on("disconnect", (reason: string) => {
      this.lostAt ??= Date.now();
      this.settleUnanswered();
      // socket.active stays true while socket.io is going to reconnect by itself.
      this.setState(socket.active && !this.stopped ? "reconnecting" : "offline");
      if (reason === "io server disconnect" && !this.stopped) this.scheduleRetry();
    });

    socket.on("connect_error", (error: Error) => {
      this.lostAt ??= Date.now();
      if (socket.active) {
        this.setState("reconnecting");
        return;
      }
      // Refused by the server's connect handler: socket.io will not retry by itself.
      this.setState("offline");
      this.options.onRefused?.(error);
      this.scheduleRetry();
    });

    this.heartbeatTimer = setInterval(() => {
      if (this.state === "connected") socket.emit?.("heartbeat");
    }, HEARTBEAT_INTERVAL_MS);

    socket.io.on("reconnect_attempt", () => this.setState("reconnecting"));
    socket.io.on("reconnect_failed", () => this.setState("offline"));

    // Sent on every connection, and again when the agent's access changes while connected.
    socket.on("session", (info: { rooms?: unknown } | undefined) => {
      if (!Array.isArray(info?.rooms)) return;
      const rooms = [...info.rooms].map(String).sort().join(",");
      if (this.rooms !== null && rooms !== this.rooms) this.options.onAccessChanged?.();
      this.rooms = rooms;
    });

    // Live and replayed events arrive in frames: one list per room set, in seq order (see inbox/realtime/relay.py).
    socket.on("events", (frame: unknown) => this.receiveFrame(frame));
    // The end of a replay (after a reconnect or a `resume`): {"complete": false} when it could not be whole.
    socket.on("replayed", (info: { complete?: unknown } | undefined) => {
      if (info?.complete === false) this.options.onReplayIncomplete?.();
    });
    // The server lost events on their way to this socket (its Redis link came back): ask for them by seq.
    socket.on("resync", () => {
      this.resume(socket);
    });
  }

  /** Asks the server for what this socket missed since the last event seen (nothing seen: nothing to ask). */
  private resume(socket: SocketLike): void {
    const lastSeq = this.tracker.lastSeq;
    if (lastSeq !== null) socket.emit?.("resume", { last_seq: lastSeq, seen: this.tracker.seenRanges() });
  }

  /** Applies every known event of an `events` frame; unknown names and malformed entries are skipped. */
  receiveFrame(frame: unknown): number {
    if (!Array.isArray(frame)) return 0;
    let applied = 0;
    for (const item of frame as FrameItem[]) {
      const event = item?.event as ServerEventName;
      if (KNOWN_EVENTS.has(event) && this.receive(event, item as Envelope<ServerEvents[ServerEventName]>)) {
        applied += 1;
      }
    }
    return applied;
  }

  stop(): void {
    this.stopped = true;
    if (typeof window !== "undefined") {
      window.removeEventListener("offline", this.onBrowserOffline);
      window.removeEventListener("online", this.onBrowserOnline);
    }
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.socket?.disconnect();
    this.socket = null;
    this.setState("offline");
    this.settleUnanswered();
  }

  /** Applies one envelope unless its sequence number was already seen. Returns whether it was applied. */
  receive<E extends ServerEventName>(event: E, envelope: Envelope<ServerEvents[E]> | undefined): boolean {
    if (!envelope || typeof envelope.seq !== "number" || envelope.data === undefined) return false;
    if (!this.tracker.accept(envelope.seq)) return false;
    const decode = DECODERS[event];
    const data = decode ? decode(envelope.data) : envelope.data;
    this.options.onEvent({ event, data, seq: envelope.seq } as ServerEvent);
    return true;
  }

  /**
   * One request at a time: the server may run two events of one socket in parallel threads, and an
   * older set applied after a newer one would leave the open conversation unwatched.
   */
  private queueWatch(wanted: number[]): Promise<number[]> {
    const request = this.watchQueue.then(() => this.requestWatch(wanted));
    this.watchQueue = request;
    return request;
  }

  private requestWatch(wanted: number[]): Promise<number[]> {
    const socket = this.socket;
    // Not connected: the handshake carries the set (auth.watch).
    if (!socket?.emit || this.state !== "connected") return Promise.resolve(wanted);
    // A newer set replaced this one while it waited for its turn: only the newer one is sent.
    if (wanted !== this.watching) return Promise.resolve([]);
    return new Promise((resolve) => {
      let done = false;
      const settle = (accepted: number[]) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.unanswered.delete(dropped);
        resolve(accepted);
      };
      // The connection dropped before the answer: the next handshake carries the set.
      const dropped = () => settle(wanted);
      const timer = setTimeout(() => settle([]), WATCH_ACK_TIMEOUT_MS);
      this.unanswered.add(dropped);
      try {
        socket.emit?.("watch", { conversation_ids: wanted }, (answer: unknown) => settle(acceptedIds(answer)));
      } catch {
        settle([]);
      }
    });
  }

  private settleUnanswered(): void {
    for (const settle of [...this.unanswered]) settle();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped && this.socket && !this.socket.active) {
        this.setState("reconnecting");
        this.socket.connect();
      }
    }, this.options.retryAfterRefusalMs ?? 5000);
  }

  private setState(next: ConnectionState): void {
    // While the browser itself has no network, "reconnecting" would be a false promise.
    const browserOffline = typeof navigator !== "undefined" && navigator.onLine === false;
    const state = next === "reconnecting" && browserOffline ? "offline" : next;
    if (state === this.state) return;
    this.state = state;
    this.options.onState?.(state);
  }
}
