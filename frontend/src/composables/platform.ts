import type { ConversationKind } from "@/api/types";

const NAMES: Record<string, string> = {
  instagram: "Instagram",
  whatsapp: "WhatsApp",
  telegram: "Telegram",
  x: "X",
  twitter: "X",
  youtube: "YouTube",
  google: "Google",
  linkedin: "LinkedIn",
  tiktok: "TikTok",
  email: "E-mail",
  api: "API",
  widget: "Widget",
};

const META_PAGE_KINDS = new Set(["facebook", "facebook_page", "messenger", "page", "meta"]);

/** The network a CM recognises: a Facebook page's DMs are "Messenger", its comments "Facebook". */
export function platformName(channelKind: string | null | undefined, kind: ConversationKind): string {
  const key = (channelKind ?? "").toLowerCase();
  if (META_PAGE_KINDS.has(key)) return kind === "dm" ? "Messenger" : "Facebook";
  return NAMES[key] ?? (key ? key.charAt(0).toUpperCase() + key.slice(1) : "?");
}

/** Only web links leave the console; anything else (javascript:, data:...) is not a link. */
export function safeHttpUrl(value: string | null | undefined): string | null {
  if (!value) return null;
  try {
    const url = new URL(value, window.location.origin);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}
