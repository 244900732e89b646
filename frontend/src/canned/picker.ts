import type { CannedReply, Id } from "@/api/types";

export type CannedSearch = (
  query: { q?: string; conversation_id?: Id; limit?: number },
  signal?: AbortSignal,
) => Promise<CannedReply[]>;

/** What follows "/" when the composer text is a canned-reply search (`/merci` -> `merci`), else null. */
export function cannedQuery(text: string): string | null {
  const match = /^\/(\S{0,64})$/.exec(text);
  return match ? match[1]! : null;
}

const fold = (value: string) => value.normalize("NFD").replace(/\p{Diacritic}/gu, "").toLowerCase();

/**
 * The same order as the server's search, applied at once to what is already loaded while the server
 * answers: shortcut prefix first, then shortcut / title / body contains; accents and case ignored.
 */
export function filterCanned(replies: readonly CannedReply[], query: string): CannedReply[] {
  const needle = fold(query.trim());
  if (!needle) return [...replies];
  const scored: { reply: CannedReply; rank: number; index: number }[] = [];
  replies.forEach((reply, index) => {
    const shortcut = fold(reply.shortcut);
    let rank = -1;
    if (shortcut.startsWith(needle)) rank = 0;
    else if (shortcut.includes(needle)) rank = 1;
    else if (fold(reply.title).includes(needle)) rank = 2;
    else if (fold(reply.body).includes(needle)) rank = 3;
    if (rank >= 0) scored.push({ reply, rank, index });
  });
  return scored.sort((a, b) => a.rank - b.rank || a.index - b.index).map((s) => s.reply);
}

/** Keyboard movement in the list, wrapping around. */
export function moveIndex(current: number, delta: number, count: number): number {
  if (count === 0) return -1;
  if (current < 0) return delta > 0 ? 0 : count - 1;
  return (current + delta + count) % count;
}

/** Known placeholders (inbox/services/placeholders.py PLACEHOLDERS), for the help and the preview. */
export const PLACEHOLDER_NAMES = [
  "contact.first_name",
  "contact.name",
  "contact.handle",
  "agent.first_name",
  "agent.name",
  "brand.name",
  "channel.name",
  "conversation.id",
  "today",
] as const;

const PLACEHOLDER = /\{\{((?:"[^"]*"|'[^']*'|[^"'}]|\}(?!\}))*)\}\}/g;
const INSIDE = /^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*(?:\|\s*(?:"([^"]*)"|'([^']*)')\s*)?$/;

/**
 * A local preview of a body with sample values (the server renders the real text for a conversation).
 * Unknown values use their fallback, else stay visible as `{{name}}`; the result is plain text.
 */
export function previewBody(body: string, values: Record<string, string | undefined>): { text: string; missing: string[] } {
  const missing: string[] = [];
  const text = body.replace(PLACEHOLDER, (whole, inside: string) => {
    const match = INSIDE.exec(inside);
    if (!match) return whole;
    const name = match[1]!.toLowerCase();
    const fallback = match[2] ?? match[3];
    const value = values[name];
    if (value) return value;
    if (fallback !== undefined) return fallback;
    if (!missing.includes(name)) missing.push(name);
    return whole;
  });
  return { text, missing };
}
