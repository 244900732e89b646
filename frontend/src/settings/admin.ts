import type { Id, WebhookEvent, WebhookEventStatus } from "@/api/types";

/**
 * What the Meta app's Webhooks settings must subscribe to (Page object) for a Facebook page channel:
 * messages and their echoes, postbacks, reads, deliveries, edits, reactions, and the page feed (comments).
 */
export const META_WEBHOOK_FIELDS: readonly string[] = [
  "messages",
  "message_echoes",
  "messaging_postbacks",
  "message_reads",
  "message_deliveries",
  "message_edits",
  "message_reactions",
  "feed",
];

/** Events that went wrong after a valid signature: worth a replay once the cause is fixed. */
export const REPLAYABLE_STATUSES: readonly WebhookEventStatus[] = ["unroutable", "failed", "dead", "invalid"];

/** The backend replays any authentic event (valid signature); the console offers it for the ones that went wrong. */
export function isReplayable(event: Pick<WebhookEvent, "verification" | "status">): boolean {
  return event.verification === "valid" && (REPLAYABLE_STATUSES as readonly string[]).includes(event.status);
}

/** "fr, en-GB  es" -> ["fr", "en-GB", "es"] (deduplicated, order kept). */
export function parseLanguages(text: string): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const part of text.split(/[\s,;]+/)) {
    const code = part.trim();
    if (code && !seen.has(code.toLowerCase())) {
      seen.add(code.toLowerCase());
      out.push(code);
    }
  }
  return out;
}

export const sameId = (a: Id | null | undefined, b: Id | null | undefined) => a != null && b != null && String(a) === String(b);

/** Ids as the API wants them (numbers), from the strings checkboxes hold. */
export const toIds = (values: readonly (string | number)[]): number[] => values.map(Number).filter((n) => Number.isInteger(n));

/** Sorted, as strings, for comparing two id lists. */
export const idKey = (values: readonly Id[]) => values.map(String).sort().join(",");
