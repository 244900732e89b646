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
