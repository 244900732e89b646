
/**
 * Dates, times and numbers go through Intl via vue-i18n. French: `lun. 23 nov., 14:05`,
 * 24-hour clock, durations `2 h 05 min`, numbers `1 234,5`.
 */
export const datetimeFormats = {
  fr: {
    short: { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" },
    long: { weekday: "long", day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit" },
    time: { hour: "2-digit", minute: "2-digit" },
  },
  en: {
    short: { weekday: "short", day: "numeric", month: "short", hour: "numeric", minute: "2-digit" },
    long: { weekday: "long", day: "numeric", month: "long", year: "numeric", hour: "numeric", minute: "2-digit" },
    time: { hour: "numeric", minute: "2-digit" },
  },
} satisfies Record<"fr" | "en", Record<string, Intl.DateTimeFormatOptions>>;

const units = (unitDisplay: "short" | "narrow") => ({
  days: { style: "unit", unit: "day", unitDisplay },
  hours: { style: "unit", unit: "hour", unitDisplay },
  minutes: { style: "unit", unit: "minute", unitDisplay },
  hoursPadded: { style: "unit", unit: "hour", unitDisplay, minimumIntegerDigits: 2 },
  minutesPadded: { style: "unit", unit: "minute", unitDisplay, minimumIntegerDigits: 2 },
}) as const;

export const numberFormats = {
  fr: { integer: { maximumFractionDigits: 0 }, ...units("short") },
  en: { integer: { maximumFractionDigits: 0 }, ...units("narrow") },
} satisfies Record<"fr" | "en", Record<string, Intl.NumberFormatOptions>>;
