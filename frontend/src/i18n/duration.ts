/** The two vue-i18n functions a duration needs (a Composer, or `useI18n()`, provides both). */
export interface DurationFormatter {
  t(key: string, named: Record<string, unknown>): string;
  n(value: number, key: string): string;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * How long a customer has waited, as CMs read it at a glance:
 * `< 1 min`, `42 min`, `2 h 05 min`, `3 j 04 h` (fr) / `< 1m`, `42m`, `2h 05m`, `3d 04h` (en).
 * The units come from Intl through the locale's number formats.
 */
export function formatDuration(ms: number, i18n: DurationFormatter): string {
  const elapsed = Math.max(0, Number.isFinite(ms) ? ms : 0);
  if (elapsed < MINUTE) return i18n.t("waiting.lessThan", { duration: i18n.n(1, "minutes") });
  if (elapsed < HOUR) return i18n.n(Math.floor(elapsed / MINUTE), "minutes");
  if (elapsed < DAY) {
    const hours = Math.floor(elapsed / HOUR);
    const minutes = Math.floor((elapsed % HOUR) / MINUTE);
    return i18n.t("waiting.hoursMinutes", {
      hours: i18n.n(hours, "hours"),
      minutes: i18n.n(minutes, "minutesPadded"),
    });
  }
  const days = Math.floor(elapsed / DAY);
  const hours = Math.floor((elapsed % DAY) / HOUR);
  return i18n.t("waiting.daysHours", { days: i18n.n(days, "days"), hours: i18n.n(hours, "hoursPadded") });
}

/** Waiting time from an ISO timestamp to `now` (ms); null when the customer is not waiting. */
export function formatWaitingSince(since: string | null, now: number, i18n: DurationFormatter): string | null {
  if (!since) return null;
  const start = Date.parse(since);
  if (Number.isNaN(start)) return null;
  return formatDuration(now - start, i18n);
}
