import type { RouteLocationRaw } from "vue-router";

export const HOME: RouteLocationRaw = { name: "inbox", params: { view: "mine" } };

/** Only same-site paths are followed after sign-in (never `//host` or a full URL). */
export function safeRedirect(value: unknown): string | null {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//") || value.startsWith("/\\")) return null;
  return value.startsWith("/login") ? null : value;
}
