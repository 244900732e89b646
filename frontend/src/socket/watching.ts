import type { Id } from "@/api/types";
import { watchIds } from "./client";

/** What the stores need of the realtime client (RealtimeClient.watch). */
export interface ConversationWatcher {
  watch(ids: readonly Id[]): Promise<number[]>;
}

/**
 * The conversations the console shows, between the stores and the running realtime client. The stores
 * cannot import `realtime.ts` (it imports them); `startRealtime` attaches its client here instead. The set
 * is kept while no client is attached: a conversation opened from a link is shown before AppLayout starts
 * the socket, and the first handshake must carry it.
 */
let watcher: ConversationWatcher | null = null;
let wanted: Id[] = [];

/** Hands the current set to `next` (before its socket starts, its handshake carries it); returns the detach function. */
export function attachWatcher(next: ConversationWatcher): () => void {
  watcher = next;
  next.watch(wanted).catch(() => {}); // RealtimeClient.watch never rejects; a stand-in might
  return () => {
    if (watcher === next) watcher = null;
  };
}

/**
 * Watches exactly these conversations (`[]` for none). Resolves with the ids the server accepted, or with
 * those asked when there is no connection yet (the handshake carries them). Never rejects: the caller goes
 * on (fetches the thread) whatever the answer.
 */
export async function watchConversations(ids: readonly Id[]): Promise<number[]> {
  wanted = [...ids];
  if (!watcher) return watchIds(wanted);
  try {
    return await watcher.watch(wanted);
  } catch {
    return [];
  }
}
