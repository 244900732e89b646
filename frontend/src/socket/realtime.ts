import { useAuthStore } from "@/stores/auth";
import { useConnectionStore } from "@/stores/connection";
import { useConversationStore } from "@/stores/conversations";
import { useMessageStore } from "@/stores/messages";
import { useToastStore } from "@/stores/toasts";
import { RealtimeClient, type SocketFactory } from "./client";
import type { SlaAlert } from "./events";
import { attachWatcher } from "./watching";

/** Past this much time offline with no seq to replay from, the list and the thread are fetched again too. */
const LONG_GAP_MS = 2 * 60_000;

export interface RealtimeWiring {
  /** The server refused the socket and the session turned out to be over. */
  onSignedOut: () => void;
  factory?: SocketFactory;
}

/**
 * Connects Socket.IO to the stores: every event is applied idempotently, SLA alerts become toasts,
 * and a (re)connection catches up on what the replay may not cover. The open thread's events come
 * only once the messages store watches its conversation (watching.ts). Returns the stop function.
 */
export function startRealtime(wiring: RealtimeWiring): { client: RealtimeClient; stop: () => void } {
  const auth = useAuthStore();
  const connection = useConnectionStore();
  const conversations = useConversationStore();
  const messages = useMessageStore();
  const toasts = useToastStore();

  function catchUp(full: boolean): void {
    if (full && conversations.loaded) void conversations.load();
    else if (conversations.loaded) void conversations.refreshCounts();
    if (full && conversations.current) void conversations.open(conversations.current.id);
    if (full) void messages.refresh();
  }

  function slaToast(kind: "warning" | "breached", alert: SlaAlert): void {
    const conversation = conversations.get(alert.conversation_id);
    const due = Date.parse(alert.due_at);
    toasts.push({
      tone: kind === "breached" ? "error" : "warning",
      text: ({ t, d, te }) => {
        const metricKey = `sla.metric.${alert.metric}`;
        return t(`sla.${kind}`, {
          metric: te(metricKey) ? t(metricKey) : alert.metric,
          contact:
            conversation?.contact.name ??
            conversation?.contact.handle ??
            t("sla.unknownContact", { id: String(alert.conversation_id) }),
          date: Number.isNaN(due) ? alert.due_at : d(due, "short"),
        });
      },
      conversationId: alert.conversation_id,
      timeoutMs: kind === "breached" ? 0 : 15_000,
    });
  }

  const client = new RealtimeClient({
    factory: wiring.factory,
    onState: (state) => connection.set(state),
    onEvent: (received) => {
      switch (received.event) {
        case "conversation.created":
          conversations.applyConversation(received.data, received.seq, "created");
          break;
        case "conversation.updated":
          conversations.applyConversation(received.data, received.seq, "updated");
          break;
        case "contact.updated":
          conversations.applyContact(received.data, received.seq);
          break;
        case "message.created":
        case "message.updated":
          messages.applyEvent(received.data, received.seq);
          break;
        case "sla.warning":
          conversations.markSlaAlert(received.data.conversation_id, received.data.metric, "warning");
          slaToast("warning", received.data);
          break;
        case "sla.breached":
          conversations.markSlaAlert(received.data.conversation_id, received.data.metric, "breached");
          slaToast("breached", received.data);
          break;
      }
    },
    // The first connection may come after the first page was fetched: anything between is fetched again. After
    // that, however long the gap, the replay brings what changed, the counts' moves included, or says it cannot
    // (onReplayIncomplete): nothing is asked before it ends. That matters when every console of a web process
    // reconnects at once (bench figure 10: 500 counts requests in the same seconds), and a laptop waking up after
    // lunch fetched its views twice (at the connection, then again after an incomplete replay). With no seq to
    // replay from, the counts are asked again, and the views too after a long gap.
    onConnect: ({ resumed, offlineForMs, replaying }) => {
      if (!resumed) catchUp(true);
      else if (!replaying) catchUp(offlineForMs > LONG_GAP_MS);
    },
    // The replay could not cover the gap (a busy inbox, or offline longer than events are kept): fetch again.
    onReplayIncomplete: () => catchUp(true),
    // Another brand came or went: what this agent may see is fetched again (the server already moved the socket).
    onAccessChanged: () => {
      void auth.check();
      catchUp(true);
    },
    onRefused: () => {
      void auth.check().then((signedIn) => {
        if (!signedIn) wiring.onSignedOut();
      });
    },
  });
  // The stores say which conversation is open through watching.ts; the first handshake already carries it.
  const detach = attachWatcher(client);
  client.start();
  return {
    client,
    stop: () => {
      detach();
      client.stop();
    },
  };
}
