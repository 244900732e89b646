import type { CalendarInterval } from "@/api/types";

export interface TimeRange {
  start: string;
  end: string;
}

/** One row per weekday (0 = Monday ... 6 = Sunday), each with its time ranges. */
export type Week = TimeRange[][];

const HHMM = /^(\d{1,2}):(\d{2})$/;

/** "9:00" -> 540; null when not a time of day. */
export function minutesOf(value: string): number | null {
  const match = HHMM.exec(value.trim());
  if (!match) return null;
  const h = Number(match[1]);
  const m = Number(match[2]);
  return h <= 24 && m < 60 && h * 60 + m <= 24 * 60 ? h * 60 + m : null;
}

/** "9:5"-like input aside, times go out as the API writes them: "09:00". */
export function normaliseTime(value: string): string {
  const minutes = minutesOf(value);
  if (minutes === null) return value.trim();
  return `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
}

/** A range whose end is at or before its start runs past midnight into the next day (the API's rule). */
export function isOvernight(range: TimeRange): boolean {
  const start = minutesOf(range.start);
  const end = minutesOf(range.end);
  return start !== null && end !== null && end <= start;
}

export function toWeek(intervals: readonly CalendarInterval[]): Week {
  const week: Week = Array.from({ length: 7 }, () => []);
  for (const interval of intervals) {
    if (interval.weekday >= 0 && interval.weekday <= 6) {
      week[interval.weekday]!.push({ start: normaliseTime(interval.start), end: normaliseTime(interval.end) });
    }
  }
  for (const day of week) day.sort(byStart);
  return week;
}

/**
 * The intervals the API takes: one per range, weekday of the range's start (an overnight range stays on
 * the day it starts, `end <= start`), ordered by day then start; empty ranges are left out.
 */
export function fromWeek(week: Week): CalendarInterval[] {
  const out: CalendarInterval[] = [];
  week.forEach((ranges, weekday) => {
    for (const range of [...ranges].sort(byStart)) {
      if (!range.start.trim() || !range.end.trim()) continue;
      out.push({ weekday, start: normaliseTime(range.start), end: normaliseTime(range.end) });
    }
  });
  return out;
}

function byStart(a: TimeRange, b: TimeRange): number {
  return (minutesOf(a.start) ?? 0) - (minutesOf(b.start) ?? 0);
}

/** Where the API's `intervals.<i>.<field>` errors land in the editor: [weekday, range index, field]. */
export function intervalErrorTarget(week: Week, index: number): { weekday: number; range: number } | null {
  let i = 0;
  for (let weekday = 0; weekday < 7; weekday++) {
    const ranges = [...week[weekday]!].sort(byStart).filter((r) => r.start.trim() && r.end.trim());
    for (let range = 0; range < ranges.length; range++) {
      if (i === index) return { weekday, range: week[weekday]!.indexOf(ranges[range]!) };
      i++;
    }
  }
  return null;
}

// ---------- SLA targets: seconds <-> hours and minutes ----------

export function secondsToHm(seconds: number | null | undefined): { hours: string; minutes: string } {
  if (seconds === null || seconds === undefined) return { hours: "", minutes: "" };
  const total = Math.round(seconds / 60);
  return { hours: String(Math.floor(total / 60)), minutes: String(total % 60) };
}

/** Empty hours and minutes: no target (null). */
export function hmToSeconds(hours: string, minutes: string): number | null {
  if (!String(hours).trim() && !String(minutes).trim()) return null;
  const h = Number(hours || 0);
  const m = Number(minutes || 0);
  if (!Number.isFinite(h) || !Number.isFinite(m)) return null;
  return Math.round(h * 3600 + m * 60);
}
