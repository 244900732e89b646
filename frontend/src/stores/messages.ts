import { defineStore } from "pinia";
import { computed, ref, shallowRef } from "vue";
import {
  isApiError,
  messagesApi,
  type ApiError,
  type ComposerKind,
  type Id,
  type Message,
  type ModerationAction,
} from "@/api";
import { watchConversations } from "@/socket/watching";
import { BoundedMap } from "./boundedMap";
import { sameId } from "./conversationView";

export const MESSAGE_PAGE_SIZE = 50;

/** Display order: the platform's own time (else when we received it), then id. */
export function compareMessages(a: Message, b: Message): number {
  const at = (m: Message) => {
    const ms = Date.parse(m.platform_time ?? m.received_at ?? "");
    return Number.isNaN(ms) ? Number.MAX_SAFE_INTEGER : ms;
  };
  return at(a) - at(b) || String(a.id).localeCompare(String(b.id), "en", { numeric: true });
}

/** The customer comments that can be moderated or answered privately. */
export const isCustomerComment = (message: Message): boolean =>
  message.kind === "comment" && message.direction === "in";

const ON_ITS_WAY = new Set(["queued", "sending"]);

/**
 * The ids (as strings) of the thread's queued replies that wait for an earlier reply of the conversation still
 * queued or sending: the server sends a conversation's replies in the order they were written, one after the
 * other (inbox/services/delivery.py), so these go once that one is out (or has failed). A reply waiting to be
 * tried again shows why instead (its delivery_error), so it is not listed.
 */
export function heldBackReplies(items: readonly Message[]): Set<string> {
  const held = new Set<string>();
  const inFlight = items
    .filter((m) => m.direction === "out" && m.delivery_status && ON_ITS_WAY.has(m.delivery_status))
    .map((m) => Number(m.id))
    .filter(Number.isFinite);
  if (inFlight.length < 2) return held;
  const first = Math.min(...inFlight);
  for (const m of items) {
    const id = Number(m.id);
    if (m.direction === "out" && m.delivery_status === "queued" && !m.delivery_error && id > first) {
      held.add(String(m.id));
    }
  }
  return held;
}

/**
 * The thread of the open conversation. Live events replace messages by id (older seqs are ignored);
 * Pages and the send answer never overwrite a version a live event already brought ("keep-live").
 * The socket gets the thread's events only while it watches the conversation: `open` watches it
 * before fetching, `close` watches none.
 */
export const useMessageStore = defineStore("messages", () => {
  const conversationId = ref<Id | null>(null);
  const items = ref<Message[]>([]);
  const olderCursor = ref<string | null>(null);
  const loading = ref(false);
  const loadingOlder = ref(false);
  const error = shallowRef<ApiError | null>(null);
  const sending = ref(false);

  const seqById = new BoundedMap<string, number>(5000);
  /** Ids whose current version came from a live event (fresher than any page we fetch). */
  const fromEvents = new Set<string>();
  /** Live events applied per message id: an action's answer is dropped when one came while it was out. */
  const eventsById = new BoundedMap<string, number>(5000);
  let openToken = 0;

  const hasOlder = computed(() => olderCursor.value !== null);
  const latestCustomerComment = computed<Message | null>(() => {
    for (let i = items.value.length - 1; i >= 0; i--) {
      const message = items.value[i];
      if (message && isCustomerComment(message) && !message.deleted) return message;
    }
    return null;
  });

  /**
   * Adds messages to the thread or replaces them by id. "keep-live" (pages and the send answer)
   * keeps a version that a live event brought, which is at least as fresh.
   */
  function put(messages: Message[], mode: "replace" | "keep-live"): void {
    const next = [...items.value];
    const index = new Map(next.map((message, i) => [String(message.id), i]));
    for (const message of messages) {
      const key = String(message.id);
      const at = index.get(key);
      if (at === undefined) index.set(key, next.push(message) - 1);
      else if (mode === "replace" || !fromEvents.has(key)) next[at] = message;
    }
    items.value = next.sort(compareMessages);
  }

  async function open(id: Id): Promise<void> {
    const token = ++openToken;
    conversationId.value = id;
    items.value = [];
    olderCursor.value = null;
    error.value = null;
    fromEvents.clear();
    seqById.clear();
    loading.value = true;
    try {
      // Watched first, fetched once the server has joined us to the conversation: a message created in
      // between is in the page, in a live event, or in both (deduped by id). Without a connection this
      // resolves at once and the handshake's `watch` joins it, with the replay of what was missed.
      await watchConversations([id]);
      if (token !== openToken) return;
      const page = await messagesApi.list(id, null, MESSAGE_PAGE_SIZE);
      if (token !== openToken) return;
      put(page.items, "keep-live");
      olderCursor.value = page.next_cursor;
    } catch (cause) {
      if (token !== openToken) return;
      if (!isApiError(cause)) throw cause;
      error.value = cause;
    } finally {
      if (token === openToken) loading.value = false;
    }
  }

  function close(): void {
    openToken++;
    if (conversationId.value !== null) void watchConversations([]);
    conversationId.value = null;
    items.value = [];
    olderCursor.value = null;
    error.value = null;
    loading.value = false;
    fromEvents.clear();
    seqById.clear();
  }

  /** Fetches the newest page again (after a reconnect) and merges it without losing live updates. */
  async function refresh(): Promise<void> {
    const id = conversationId.value;
    if (id === null || loading.value) return;
    const token = openToken;
    try {
      const page = await messagesApi.list(id, null, MESSAGE_PAGE_SIZE);
      if (token === openToken) put(page.items, "keep-live");
    } catch (cause) {
      if (!isApiError(cause)) throw cause;
    }
  }

  async function loadOlder(): Promise<void> {
    const cursor = olderCursor.value;
    const id = conversationId.value;
    if (!cursor || id === null || loading.value || loadingOlder.value) return;
    const token = openToken;
    loadingOlder.value = true;
    try {
      const page = await messagesApi.list(id, cursor, MESSAGE_PAGE_SIZE);
      if (token !== openToken) return;
      put(page.items, "keep-live");
      olderCursor.value = page.next_cursor;
    } catch (cause) {
      if (token !== openToken) return;
      if (!isApiError(cause)) throw cause;
      error.value = cause;
    } finally {
      loadingOlder.value = false;
    }
  }

  /**
   * Applies a message from a live event. Idempotent per id: a replayed event with a lower seq
   * than the last applied for that message is ignored. Returns whether it changed the thread.
   */
  function applyEvent(message: Message, seq?: number): boolean {
    if (conversationId.value === null || !sameId(message.conversation_id, conversationId.value)) return false;
    const key = String(message.id);
    if (seq !== undefined) {
      const last = seqById.get(key);
      if (last !== undefined && seq <= last) return false;
      seqById.set(key, seq);
    }
    fromEvents.add(key);
    eventsById.set(key, (eventsById.get(key) ?? 0) + 1);
    put([message], "replace");
    return true;
  }

  /**
   * Runs an action on a message (resend, moderate) and puts the API's answer in the thread, unless a live
   * event for that message arrived while the request was out. The server publishes the action's own event
   * when it commits and every later change after it, in seq order, so such an event is at least as new as
   * the answer: a resend answered "queued" after the send job's "sent" event must not put "queued" back.
   */
  async function act(messageId: Id, request: () => Promise<Message>): Promise<Message> {
    const key = String(messageId);
    const before = eventsById.get(key) ?? 0;
    const message = await request();
    const overtaken = (eventsById.get(key) ?? 0) !== before;
    if (!overtaken && sameId(conversationId.value, message.conversation_id)) put([message], "replace");
    return message;
  }

  /** Sends a reply, private reply or note; the server's answer joins the thread (deduped by id). */
  async function send(text: string, kind: ComposerKind, replyToMessageId?: Id | null): Promise<Message> {
    const id = conversationId.value;
    if (id === null) throw new Error("no conversation open");
    sending.value = true;
    try {
      const body = kind === "private_reply" && replyToMessageId != null
        ? { text, kind, reply_to_message_id: replyToMessageId }
        : { text, kind };
      const message = await messagesApi.send(id, body);
      if (sameId(conversationId.value, id)) put([message], "keep-live");
      return message;
    } finally {
      sending.value = false;
    }
  }

  async function moderate(messageId: Id, action: ModerationAction): Promise<Message> {
    return act(messageId, () => messagesApi.moderate(messageId, action));
  }

  /** Send a failed reply again: it is queued again, and its status follows live as the send job reports. */
  async function resend(messageId: Id): Promise<Message> {
    return act(messageId, () => messagesApi.retry(messageId));
  }

  return {
    conversationId,
    items,
    olderCursor,
    loading,
    loadingOlder,
    error,
    sending,
    hasOlder,
    latestCustomerComment,
    open,
    close,
    loadOlder,
    refresh,
    applyEvent,
    send,
    moderate,
    resend,
  };
});
