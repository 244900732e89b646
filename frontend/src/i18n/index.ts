import { createI18n } from "vue-i18n";
import en from "./en";
import fr, { type MessageSchema } from "./fr";
import { datetimeFormats, numberFormats } from "./formats";

export type Locale = "fr" | "en";
export const LOCALES: readonly Locale[] = ["fr", "en"];
export const LOCALE_STORAGE_KEY = "relais.locale";

const isLocale = (value: unknown): value is Locale => value === "fr" || value === "en";

/** Saved choice first, then the browser's languages, then English. */
export function detectLocale(
  stored: string | null,
  languages: readonly string[] = typeof navigator === "undefined" ? [] : navigator.languages ?? [navigator.language],
): Locale {
  if (isLocale(stored)) return stored;
  for (const language of languages) {
    const base = language?.toLowerCase().split("-")[0];
    if (isLocale(base)) return base;
  }
  return "en";
}

function readStoredLocale(): string | null {
  try {
    return globalThis.localStorage?.getItem(LOCALE_STORAGE_KEY) ?? null;
  } catch {
    return null;
  }
}

export function createAppI18n(locale: Locale = detectLocale(readStoredLocale())) {
  const messages: Record<Locale, MessageSchema> = { fr, en };
  return createI18n({
    legacy: false,
    locale,
    fallbackLocale: "en",
    messages,
    datetimeFormats,
    numberFormats,
    missingWarn: import.meta.env.DEV,
    fallbackWarn: import.meta.env.DEV,
  });
}

export const i18n = createAppI18n();

/** Switches the interface language, remembers it, and tells assistive tech via <html lang>. */
export function setLocale(locale: Locale): void {
  i18n.global.locale.value = locale;
  try {
    globalThis.localStorage?.setItem(LOCALE_STORAGE_KEY, locale);
  } catch {
    // Private mode: the choice lasts for this page only.
  }
  if (typeof document !== "undefined") document.documentElement.lang = locale;
}
