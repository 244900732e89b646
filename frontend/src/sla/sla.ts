import type { ReplyWindow, ReplyWindowMode, SlaClock, SlaState } from "@/api/types";
import { formatDuration, type DurationFormatter } from "@/i18n/duration";

const parse = (iso: string | null | undefined): number | null => {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
};

/**
 * The state to show now. The server's state is the truth at the time it was sent; between two
 * updates a running clock crosses its warning and due times on the client's clock, so the badge
 * turns "at risk" / "breached" on time even before the live push arrives.
 */
export function effectiveSlaState(clock: SlaClock, now: number): SlaState {
  if (clock.state === "met" || (clock.stopped_at && clock.state !== "breached")) return "met";
  if (clock.state === "paused") return "paused";
  const due = parse(clock.due_at);
  if (clock.state === "breached" || (due !== null && now >= due)) return "breached";
  const warn = parse(clock.warning_at);
  if (clock.state === "warning" || (warn !== null && now >= warn)) return "warning";
  return "running";
}

/** Whether the clock still counts (a badge in the list); met and stopped clocks are history. */
export function isLiveClock(clock: SlaClock): boolean {
  return !clock.stopped_at && clock.state !== "met";
}

/**
 * Milliseconds before the due time (negative when overdue), null when nothing is counting.
 * A paused clock keeps the time it had left when it paused (the server's business seconds).
 */
export function slaTimeLeftMs(clock: SlaClock, now: number): number | null {
  const state = effectiveSlaState(clock, now);
  if (state === "met") return null;
  if (state === "paused") {
    const left = clock.business_seconds_left ?? clock.calendar_seconds_left;
    return typeof left === "number" ? left * 1000 : null;
  }
  const due = parse(clock.due_at);
  return due === null ? null : due - now;
}

export interface SlaBadgeView {
  metric: string;
  state: SlaState;
  /** Short text on the badge: `2 h 05 min`, `+12 min` when overdue, empty when met. */
  time: string;
  msLeft: number | null;
  dueAt: number | null;
}

export function slaBadgeView(clock: SlaClock, now: number, i18n: DurationFormatter): SlaBadgeView {
  const state = effectiveSlaState(clock, now);
  const msLeft = slaTimeLeftMs(clock, now);
  let time = "";
  if (msLeft !== null) {
    time = msLeft < 0 ? i18n.t("sla.badge.overdueBy", { duration: formatDuration(-msLeft, i18n) }) : formatDuration(msLeft, i18n);
  }
  return { metric: clock.metric, state, time, msLeft, dueAt: parse(clock.due_at) };
}

/** Most urgent first: breached, at risk, running (soonest due), paused, met. */
const RANK: Record<SlaState, number> = { breached: 0, warning: 1, running: 2, paused: 3, met: 4 };

export function sortBadges(views: SlaBadgeView[]): SlaBadgeView[] {
  return [...views].sort(
    (a, b) => RANK[a.state] - RANK[b.state] || (a.msLeft ?? Infinity) - (b.msLeft ?? Infinity) || a.metric.localeCompare(b.metric),
  );
}

// ---------- reply window ----------

export const REPLY_WINDOW_WARNING_MS = 2 * 60 * 60_000;

export interface ReplyWindowView {
  mode: ReplyWindowMode;
  /** When the current mode ends (standard: closes_at, human agent: human_agent_until). */
  endsAt: number | null;
  msLeft: number | null;
  /** Under two hours left. */
  warning: boolean;
}

/** The platform's reply window as the agent lives it now (mode derived when the server does not send it). */
export function replyWindowView(window: ReplyWindow | null | undefined, now: number): ReplyWindowView {
  if (!window) return { mode: "closed", endsAt: null, msLeft: null, warning: false };
  const closes = parse(window.closes_at);
  const human = parse(window.human_agent_until);
  let mode: ReplyWindowMode = window.mode ?? (window.open ? "standard" : human !== null && human > now ? "human_agent" : "closed");
  // The server said "open" a while ago; the clock has moved on since.
  if (mode === "standard" && closes !== null && closes <= now) mode = human !== null && human > now ? "human_agent" : "closed";
  if (mode === "human_agent" && human !== null && human <= now) mode = "closed";
  const endsAt = mode === "standard" ? closes : mode === "human_agent" ? human : null;
  const msLeft = endsAt === null ? null : Math.max(0, endsAt - now);
  return { mode, endsAt, msLeft, warning: msLeft !== null && msLeft < REPLY_WINDOW_WARNING_MS };
}
