// Every translation key the console names literally (t("..."), $t("..."), te/tm/rt too) exists in both languages.
// A key that is missing renders as the key itself ("nav.sla" in the conversation header did until this test).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

import en from "../../src/i18n/en";
import fr from "../../src/i18n/fr";

const SRC = join(__dirname, "../../src");
// t("a.b"), $t('a.b'), t("a.b", {...}), i18n.global.t("a.b"), keypath="a.b" (<i18n-t>)
const CALL = /(?:\$t|\bt|\bte|\btm)\(\s*["']([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)+)["']/g;
const KEYPATH = /\bkeypath=["']([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)+)["']/g;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(vue|ts)$/.test(name) && !path.includes(`${join("src", "i18n")}`) ? [path] : [];
  });
}

function lookup(messages: unknown, key: string): unknown {
  return key.split(".").reduce<unknown>((node, part) =>
    node !== null && typeof node === "object" ? (node as Record<string, unknown>)[part] : undefined, messages);
}

const used = new Map<string, string[]>();  // key -> files naming it
for (const file of sources(SRC)) {
  const text = readFileSync(file, "utf8");
  for (const pattern of [CALL, KEYPATH]) {
    for (const [, key] of text.matchAll(pattern)) {
      if (key) used.set(key, [...(used.get(key) ?? []), relative(SRC, file)]);
    }
  }
}

describe("translation keys named in the console's sources", () => {
  it("finds the keys (the scan itself works)", () => {
    expect(used.size).toBeGreaterThan(200);
    expect(used.has("nav.views")).toBe(true);
  });

  it.each([["en", en], ["fr", fr]])("every one exists in %s", (_name, messages) => {
    const missing = [...used].filter(([key]) => lookup(messages, key) === undefined)
      .map(([key, files]) => `${key} (${[...new Set(files)].join(", ")})`);
    expect(missing).toEqual([]);
  });
});

// Keys built from a server value (t(`message.delivery.${status}`)...): every value the server's models allow has its
// key in both languages. The values are read from the models themselves, so a status added there without its
// translation fails here ("unknown" delivery showed as the raw key "message.delivery.unknown" until this test).
const MODELS = join(__dirname, "../../../inbox/models");

function serverValues(file: string, constant: string): string[] {
  const text = readFileSync(join(MODELS, file), "utf8");
  const tuple = new RegExp(`^${constant} = \\(([^)]*)\\)`, "m").exec(text);
  if (!tuple?.[1]) throw new Error(`${constant} not found in inbox/models/${file}`);
  return [...tuple[1].matchAll(/"([^"]+)"/g)].map(([, value]) => value ?? "");
}

const BUILT: [string, string, string[]][] = [
  ["message.delivery", "message.py DELIVERY_STATUSES", serverValues("message.py", "DELIVERY_STATUSES")],
  ["message.author", "message.py author types", ["contact", "agent", "page", "system"]],
  ["status", "conversation.py STATUSES", serverValues("conversation.py", "STATUSES")],
  ["statusFilter", "conversation.py STATUSES", serverValues("conversation.py", "STATUSES")],
  ["priority", "conversation.py PRIORITIES", serverValues("conversation.py", "PRIORITIES")],
  ["channel.kind", "conversation.py CONVERSATION_KINDS", serverValues("conversation.py", "CONVERSATION_KINDS")],
  ["agent.roles", "org.py ROLES", serverValues("org.py", "ROLES")],
  ["agent.availability", "org.py AVAILABILITIES", serverValues("org.py", "AVAILABILITIES")],
  ["sla.state", "sla.py CLOCK_STATES", serverValues("sla.py", "CLOCK_STATES")],
  ["sla.metric", "sla.py METRICS", serverValues("sla.py", "METRICS")],
  ["settings.assignment.modes", "assignment.py ASSIGNMENT_MODES", serverValues("assignment.py", "ASSIGNMENT_MODES")],
  ["settings.webhooks.statuses", "webhook_event.py EVENT_STATUSES",
   serverValues("webhook_event.py", "EVENT_STATUSES")],
];

describe("translation keys built from the server's values", () => {
  it("reads the server's values", () => {
    expect(serverValues("message.py", "DELIVERY_STATUSES")).toContain("unknown");
    expect(serverValues("conversation.py", "STATUSES")).toEqual(["open", "pending", "snoozed", "resolved"]);
  });

  it.each([["en", en], ["fr", fr]])("every one exists in %s", (_name, messages) => {
    const missing = BUILT.flatMap(([prefix, source, values]) =>
      values.filter((value) => typeof lookup(messages, `${prefix}.${value}`) !== "string")
        .map((value) => `${prefix}.${value} (${source})`));
    expect(missing).toEqual([]);
  });
});
