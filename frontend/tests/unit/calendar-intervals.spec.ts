import { describe, expect, it } from "vitest";
import { fromWeek, hmToSeconds, intervalErrorTarget, isOvernight, secondsToHm, toWeek } from "@/settings/intervals";

describe("weekly intervals editor", () => {
  it("keeps several ranges a day and an overnight range on the day it starts", () => {
    const week = toWeek([
      { weekday: 0, start: "14:00", end: "18:00" },
      { weekday: 0, start: "09:00", end: "12:30" },
      { weekday: 4, start: "22:00", end: "02:00" },
    ]);
    expect(week[0]).toEqual([{ start: "09:00", end: "12:30" }, { start: "14:00", end: "18:00" }]);
    expect(isOvernight(week[4]![0]!)).toBe(true);
    expect(isOvernight(week[0]![0]!)).toBe(false);
    expect(isOvernight({ start: "00:00", end: "00:00" })).toBe(true); // a full day
    expect(fromWeek(week)).toEqual([
      { weekday: 0, start: "09:00", end: "12:30" },
      { weekday: 0, start: "14:00", end: "18:00" },
      { weekday: 4, start: "22:00", end: "02:00" },
    ]);
  });

  it("normalises times, drops empty ranges and sorts", () => {
    const week = toWeek([]);
    week[6]!.push({ start: "20:00", end: "6:00" }, { start: "", end: "" }, { start: "8:00", end: "12:00" });
    expect(fromWeek(week)).toEqual([
      { weekday: 6, start: "08:00", end: "12:00" },
      { weekday: 6, start: "20:00", end: "06:00" },
    ]);
    // the API's intervals.1 names the overnight range, index 0 in the editor's row
    expect(intervalErrorTarget(week, 1)).toEqual({ weekday: 6, range: 0 });
  });

  it("converts SLA targets between seconds and hours / minutes", () => {
    expect(secondsToHm(7500)).toEqual({ hours: "2", minutes: "5" });
    expect(secondsToHm(null)).toEqual({ hours: "", minutes: "" });
    expect(hmToSeconds("2", "5")).toBe(7500);
    expect(hmToSeconds("", "30")).toBe(1800);
    expect(hmToSeconds("", "")).toBeNull();
  });
});
