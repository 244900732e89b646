import { describe, expect, it } from "vitest";
import type { SlaClock } from "@/api/types";
import { createAppI18n } from "@/i18n";
import { effectiveSlaState, replyWindowView, slaBadgeView, slaTimeLeftMs, sortBadges } from "@/sla/sla";

const plain = (s: string) => s.replace(/\s/g, " ");
const NOW = Date.parse("2026-11-23T13:00:00Z");
const MIN = 60_000;

function clock(overrides: Partial<SlaClock> = {}): SlaClock {
  return {
    metric: "first_response",
    state: "running",
    due_at: new Date(NOW + 125 * MIN).toISOString(),
    warning_at: new Date(NOW + 100 * MIN).toISOString(),
    started_at: new Date(NOW - 60 * MIN).toISOString(),
    stopped_at: null,
    business_seconds_left: 125 * 60,
    calendar_seconds_left: 125 * 60,
    ...overrides,
  };
}

describe("SLA badge", () => {
  const fr = createAppI18n("fr").global;
  const en = createAppI18n("en").global;

  it("counts down to the due time in the CM's format", () => {
    expect(plain(slaBadgeView(clock(), NOW, fr).time)).toBe("2 h 05 min");
    expect(plain(slaBadgeView(clock(), NOW, en).time)).toBe("2h 05m");
    expect(slaBadgeView(clock(), NOW, fr).state).toBe("running");
  });

  it("turns at risk at warning_at and breached at due_at on the client's clock", () => {
    expect(effectiveSlaState(clock(), NOW + 101 * MIN)).toBe("warning");
    const late = slaBadgeView(clock(), NOW + 137 * MIN, fr);
    expect(late.state).toBe("breached");
    expect(plain(late.time)).toBe("+12 min");
    expect(plain(slaBadgeView(clock(), NOW + 137 * MIN, en).time)).toBe("+12m");
    expect(fr.t(`sla.state.${late.state}`)).toBe("Hors délai");
    expect(fr.t("sla.state.warning")).toBe("Bientôt en retard");
  });

  it("keeps the server's warning / breached state", () => {
    expect(effectiveSlaState(clock({ state: "warning" }), NOW)).toBe("warning");
    expect(effectiveSlaState(clock({ state: "breached" }), NOW)).toBe("breached");
  });

  it("shows what is left when paused, nothing once met", () => {
    const paused = clock({ state: "paused", due_at: null, warning_at: null, business_seconds_left: 45 * 60, calendar_seconds_left: null });
    expect(effectiveSlaState(paused, NOW)).toBe("paused");
    expect(slaTimeLeftMs(paused, NOW)).toBe(45 * MIN);
    expect(plain(slaBadgeView(paused, NOW + 10 * MIN, fr).time)).toBe("45 min");
    const met = clock({ state: "met", stopped_at: new Date(NOW).toISOString() });
    expect(effectiveSlaState(met, NOW)).toBe("met");
    expect(slaBadgeView(met, NOW, fr).time).toBe("");
  });

  it("puts the most urgent first", () => {
    const views = [
      slaBadgeView(clock({ metric: "resolution", due_at: new Date(NOW + 600 * MIN).toISOString(), warning_at: null }), NOW, en),
      slaBadgeView(clock({ metric: "next_response", state: "breached", due_at: new Date(NOW - MIN).toISOString() }), NOW, en),
      slaBadgeView(clock({ metric: "first_response" }), NOW, en),
    ];
    expect(sortBadges(views).map((v) => v.metric)).toEqual(["next_response", "first_response", "resolution"]);
  });
});

describe("reply window", () => {
  it("warns under two hours and derives the mode", () => {
    const soon = replyWindowView({ open: true, closes_at: new Date(NOW + 90 * MIN).toISOString(), human_agent_until: null }, NOW);
    expect(soon).toMatchObject({ mode: "standard", msLeft: 90 * MIN, warning: true });
    const later = replyWindowView({ open: true, closes_at: new Date(NOW + 5 * 60 * MIN).toISOString(), human_agent_until: null }, NOW);
    expect(later.warning).toBe(false);
    const human = replyWindowView({ open: false, closes_at: null, human_agent_until: new Date(NOW + 3 * 24 * 60 * MIN).toISOString() }, NOW);
    expect(human.mode).toBe("human_agent");
    expect(replyWindowView({ open: true, closes_at: new Date(NOW - MIN).toISOString(), human_agent_until: null }, NOW).mode).toBe("closed");
    expect(replyWindowView({ open: false, closes_at: null, human_agent_until: null, mode: "closed" }, NOW).mode).toBe("closed");
  });
});
