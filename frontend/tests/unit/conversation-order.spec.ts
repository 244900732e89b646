import { describe, expect, it } from "vitest";
import type { Conversation } from "@/api/types";
import { compareConversations, isStale, type ConversationSort } from "@/stores/conversationView";
import { conversation } from "../factories";

/**
 * The list order must be the server's to the last tie (inbox/services/conversations.py, _page_waiting and
 * _page_newest), or a live row is inserted where the next page will also bring it, or left out where no page will:
 * - newest (and a text search): last_message_at DESC NULLS FIRST, id DESC;
 * - waiting: the waiting ones by waiting_since ASC, id ASC, then the others by last_message_at DESC NULLS FIRST,
 *   id DESC.
 * The API's last_message.at is last_message_at (last_message is null when it is).
 */
const at = (iso: string | null) => (iso === null ? null : { text: "…", direction: "in" as const, at: iso });

function answered(id: number, lastMessageAt: string | null, updatedAt = "2026-11-23T13:00:00Z"): Conversation {
  return conversation({ id, waiting_since: null, last_message: at(lastMessageAt), updated_at: updatedAt });
}

function waiting(id: number, since: string, lastMessageAt = "2026-11-23T13:00:00Z"): Conversation {
  return conversation({ id, waiting_since: since, last_message: at(lastMessageAt) });
}

function order(sort: ConversationSort, items: Conversation[]): number[] {
  const compare = compareConversations(sort);
  // whatever order they come in, the same answer
  const forwards = [...items].sort(compare).map((c) => Number(c.id));
  const backwards = [...items].reverse().sort(compare).map((c) => Number(c.id));
  expect(backwards).toEqual(forwards);
  return forwards;
}

describe("conversation order: the server's, ties included", () => {
  it("newest: the same last message time goes by id descending", () => {
    const items = [answered(3, "2026-11-23T12:00:00Z"), answered(12, "2026-11-23T12:00:00Z"), answered(7, "2026-11-23T12:00:00Z")];
    expect(order("newest", items)).toEqual([12, 7, 3]);
  });

  it("newest: a conversation without a message comes first (NULLS FIRST), not by its updated_at", () => {
    const items = [
      answered(1, "2026-11-23T12:00:00Z"),
      answered(2, null, "2026-11-20T08:00:00Z"),
      answered(3, null, "2026-11-23T18:00:00Z"),
      answered(4, "2026-11-23T14:00:00Z"),
    ];
    expect(order("newest", items)).toEqual([3, 2, 4, 1]);
  });

  it("waiting: the same waiting_since goes by id ascending", () => {
    const items = [waiting(12, "2026-11-23T10:00:00Z"), waiting(3, "2026-11-23T10:00:00Z"), waiting(7, "2026-11-23T09:00:00Z")];
    expect(order("waiting", items)).toEqual([7, 3, 12]);
  });

  it("waiting: those not waiting follow, newest message first, the same time by id descending", () => {
    const items = [
      answered(5, "2026-11-23T12:00:00Z"),
      waiting(20, "2026-11-23T11:00:00Z"),
      answered(9, "2026-11-23T12:00:00Z"),
      answered(30, null, "2026-11-23T18:00:00Z"),
      answered(40, "2026-11-23T15:00:00Z"),
      waiting(2, "2026-11-23T11:00:00Z"),
    ];
    expect(order("waiting", items)).toEqual([2, 20, 30, 40, 9, 5]);
  });

  it("compares times to the microsecond, as the server does, whatever the offset is written as", () => {
    // the same millisecond: Date.parse would make these a tie, broken by id the other way
    const items = [
      answered(1, "2026-11-23T12:00:00.000700+00:00"),
      answered(2, "2026-11-23T12:00:00.000200+00:00"),
      answered(3, "2026-11-23T12:00:00+00:00"),
      answered(4, "2026-11-23T14:00:00.0007+02:00"),
      answered(5, "2026-11-23T12:00:00.001Z"),
    ];
    expect(order("newest", items)).toEqual([5, 4, 1, 2, 3]);
    const since = [
      waiting(1, "2026-11-23T10:00:00.000300+00:00"),
      waiting(2, "2026-11-23T10:00:00.000100+00:00"),
      waiting(3, "2026-11-23T11:00:00.0002+01:00"),
    ];
    expect(order("waiting", since)).toEqual([2, 3, 1]);
  });

  it("compares ids as numbers", () => {
    expect(order("waiting", [waiting(10, "2026-11-23T10:00:00Z"), waiting(9, "2026-11-23T10:00:00Z")])).toEqual([9, 10]);
    expect(order("newest", [answered(9, "2026-11-23T10:00:00Z"), answered(10, "2026-11-23T10:00:00Z")])).toEqual([10, 9]);
  });
});

describe("staleness, to the microsecond", () => {
  it("keeps the newer of two versions written in the same millisecond, whichever arrives first", () => {
    const older = conversation({ id: 7, status: "open", updated_at: "2026-11-23T13:00:00.123400+00:00" });
    const newer = conversation({ id: 7, status: "resolved", updated_at: "2026-11-23T13:00:00.123900+00:00" });
    expect(isStale(older, newer)).toBe(true);
    expect(isStale(newer, older)).toBe(false);
    expect(isStale(newer, newer)).toBe(false);
  });
});
