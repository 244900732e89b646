import { io, type ManagerOptions, type SocketOptions } from "socket.io-client";
import { SERVER_EVENTS, type Envelope, type ServerEvent, type ServerEventName, type ServerEvents } from "./events";
import { SeqTracker } from "./seq";

export type ConnectionState = "connected" | "reconnecting" | "offline";

/** The part of a socket.io-client Socket this module uses (a fake in tests). */
export interface SocketLike {
  readonly active: boolean;
  on(event: string, listener: (...args: any[]) => void): unknown;
  connect(): unknown;
  disconnect(): unknown;
  emit?(event: string, ...args: unknown[]): unknown;
  io: { on(event: string, listener: (...args: any[]) => void): unknown };
}

export type AuthCallback = (callback: (auth: Record<string, unknown>) => void) => void;
export type SocketFactory = (options: Partial<ManagerOptions & SocketOptions>) => SocketLike;

export interface RealtimeOptions {
  onEvent: (event: ServerEvent) => void;
  onState?: (state: ConnectionState) => void;
  /** Every successful connection; `resumed` is false for the first one. */
  onConnect?: (info: { resumed: boolean; offlineForMs: number }) => void;
  /** The server changed this socket's rooms while connected (the agent's teams or role changed). */
  onAccessChanged?: () => void;
  /** The server refused the connection (not signed in, session expired...). */
  onRefused?: (error: Error) => void;
  tracker?: SeqTracker;
  factory?: SocketFactory;
  /** Delay before trying again after a refusal, when the session still looks valid. */
  retryAfterRefusalMs?: number;
}

/** Presence: the server marks an agent offline when a connected console stops sending these. */
export const HEARTBEAT_INTERVAL_MS = 30_000;

/** One entry of an `events` frame: the envelope plus the event's name. */
type FrameItem = Envelope<unknown> & { event?: string; replay?: boolean };
const KNOWN_EVENTS: ReadonlySet<ServerEventName> = new Set(SERVER_EVENTS);

const defaultFactory: SocketFactory = (options) => io(options) as unknown as SocketLike;

/**
 * Socket.IO client with resume: it hands the server the highest sequence number it has seen on
 * every (re)connect (`auth` is a function, so socket.io re-reads it each time), and drops the
 * duplicates of the replay that follows.
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
    callback({ last_seq: this.tracker.lastSeq });
  };

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
      this.options.onConnect?.({ resumed, offlineForMs });
    });

    socket.on("disconnect", (reason: string) => {
      this.lostAt ??= Date.now();
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
    // The server lost events on their way to this socket (its Redis link came back): ask for them by seq.
    socket.on("resync", () => {
      if (this.tracker.lastSeq !== null) socket.emit?.("resume", { last_seq: this.tracker.lastSeq });
    });
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
  }

  /** Applies one envelope unless its sequence number was already seen. Returns whether it was applied. */
  receive<E extends ServerEventName>(event: E, envelope: Envelope<ServerEvents[E]> | undefined): boolean {
    if (!envelope || typeof envelope.seq !== "number" || envelope.data === undefined) return false;
    if (!this.tracker.accept(envelope.seq)) return false;
    this.options.onEvent({ event, data: envelope.data, seq: envelope.seq } as ServerEvent);
    return true;
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
