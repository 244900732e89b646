import { describe, expect, it } from "vitest";
import { createAppI18n, detectLocale } from "@/i18n";
import { formatDuration, formatWaitingSince } from "@/i18n/duration";

const MIN = 60_000;
const HOUR = 60 * MIN;
// Intl separates numbers and units with (narrow) no-break spaces; compare with plain spaces.
const plain = (s: string | null) => s?.replace(/\s/g, " ") ?? null;

describe("waiting time", () => {
  const fr = createAppI18n("fr").global;
  const en = createAppI18n("en").global;

  it("reads like a French CM writes it", () => {
    expect(plain(formatDuration(2 * HOUR + 5 * MIN, fr))).toBe("2 h 05 min");
    expect(plain(formatDuration(42 * MIN + 59_000, fr))).toBe("42 min");
    expect(plain(formatDuration(20_000, fr))).toBe("< 1 min");
    expect(plain(formatDuration(3 * 24 * HOUR + 4 * HOUR + 30 * MIN, fr))).toBe("3 j 04 h");
  });

  it("is compact in English", () => {
    expect(plain(formatDuration(2 * HOUR + 5 * MIN, en))).toBe("2h 05m");
    expect(plain(formatDuration(42 * MIN, en))).toBe("42m");
    expect(plain(formatDuration(20_000, en))).toBe("< 1m");
    expect(plain(formatDuration(3 * 24 * HOUR + 4 * HOUR, en))).toBe("3d 04h");
  });

  it("counts from waiting_since and is empty when nobody waits", () => {
    const now = Date.parse("2026-11-23T15:05:00Z");
    expect(plain(formatWaitingSince("2026-11-23T13:00:00Z", now, fr))).toBe("2 h 05 min");
    expect(formatWaitingSince(null, now, fr)).toBeNull();
    expect(plain(formatWaitingSince("2026-11-23T15:06:00Z", now, en))).toBe("< 1m");
  });
});

describe("dates and numbers", () => {
  it("formats dates the French way: lun. 23 nov., 14:05", () => {
    const fr = createAppI18n("fr").global;
    expect(plain(fr.d(new Date(2026, 10, 23, 14, 5), "short"))).toBe("lun. 23 nov., 14:05");
  });

  it("formats numbers with French grouping", () => {
    const fr = createAppI18n("fr").global;
    expect(plain(fr.n(1234, "integer"))).toBe("1 234");
  });

  it("picks the saved language, else the browser's, else English", () => {
    expect(detectLocale("en", ["fr-FR"])).toBe("en");
    expect(detectLocale(null, ["fr-CA", "en"])).toBe("fr");
    expect(detectLocale(null, ["de-DE", "en-GB"])).toBe("en");
    expect(detectLocale("xx", ["de"])).toBe("en");
  });
});
