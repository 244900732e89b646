import { flushPromises, mount } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createMemoryHistory } from "vue-router";
import { ApiError, channelsApi, webhookEventsApi, type Channel } from "@/api";
import { createAppI18n } from "@/i18n";
import { createAppRouter } from "@/router";
import { isReplayable, parseLanguages } from "@/settings/admin";
import { useAuthStore } from "@/stores/auth";
import ChannelForm from "@/views/settings/ChannelForm.vue";
import ChannelsSettings from "@/views/settings/ChannelsSettings.vue";
import WebhooksSettings from "@/views/settings/WebhooksSettings.vue";
import { ME, webhookEvent } from "../factories";

const CLEAR_SECRET = "wh_sec_CLEAR_9f8e7d6c5b4a";
const BRAND = { id: 1, name: "Maison Lune" };

function json(status: number, body: unknown): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function apiChannel(overrides: Partial<Channel> = {}): Channel {
  return {
    id: 7,
    brand: BRAND,
    brand_id: 1,
    kind: "api",
    name: "Chatbot",
    external_id: null,
    status: "active",
    status_detail: null,
    config: { webhook_url: null },
    credentials: { webhook_secret: "wh_s…4a" },
    webhook: { inbound_url: "https://relais.example/webhooks/api/7" },
    created_at: "2026-11-23T12:00:00Z",
    updated_at: "2026-11-23T12:00:00Z",
    ...overrides,
  };
}

const invalid = (fields: Record<string, string[]>) => new ApiError(422, { code: "validation_error", message: "invalid input", fields });

describe("administration settings", () => {
  beforeEach(() => {
    setActivePinia(createPinia());
    const auth = useAuthStore();
    auth.agent = { ...ME, role: "admin" };
    auth.status = "authenticated";
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });
  const global = { plugins: [createAppI18n("fr")] };

  it("shows a new channel's secrets once; closing drops them and nothing fetches them again", async () => {
    const requests: string[] = [];
    const created = { ...apiChannel(), secrets: { webhook_secret: CLEAR_SECRET } };
    let connected = false;
    const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = String(input);
      const method = init?.method ?? "GET";
      requests.push(`${method} ${url}`);
      if (method === "GET" && url === "/api/v1/channels") return json(200, connected ? [apiChannel()] : []);
      if (method === "GET" && url === "/api/v1/brands") return json(200, [BRAND]);
      if (method === "POST" && url === "/api/v1/channels") {
        connected = true;
        return json(201, created);
      }
      return json(404, { error: { code: "not_found", message: "unexpected" } });
    });
    vi.stubGlobal("fetch", fetch);
    const writeText = vi.fn(async () => undefined);
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });

    const wrapper = mount(ChannelsSettings, { global });
    await flushPromises();
    await wrapper.get("[data-testid='channel-create']").trigger("click");
    await wrapper.get("[data-testid='channel-kind-api']").setValue(true);
    await wrapper.get("[data-testid='channel-brand']").setValue("1");
    await wrapper.get("[data-testid='channel-name']").setValue("Chatbot");
    await wrapper.get("[data-testid='channel-form']").trigger("submit");
    await flushPromises();

    const post = fetch.mock.calls.find(([, init]) => init?.method === "POST");
    expect(JSON.parse(String(post?.[1]?.body))).toEqual({ brand_id: 1, kind: "api", name: "Chatbot", config: {} });
    const panel = wrapper.get("[data-testid='channel-secrets-once']");
    expect(panel.text()).toContain(CLEAR_SECRET);
    expect(panel.text()).toContain("https://relais.example/webhooks/api/7");
    const secretField = panel.findAll("[data-testid='copy-field']").find((field) => field.text().includes(CLEAR_SECRET))!;
    await secretField.get("[data-testid='copy-button']").trigger("click");
    await flushPromises();
    expect(writeText).toHaveBeenCalledWith(CLEAR_SECRET);
    // The list re-read after creation is the masked one.
    expect(wrapper.findAll("[data-testid='channel-row']")).toHaveLength(1);

    const before = requests.length;
    await wrapper.get("[data-testid='secrets-once-close']").trigger("click");
    await flushPromises();
    expect(wrapper.find("[data-testid='channel-secrets-once']").exists()).toBe(false);
    expect(wrapper.html()).not.toContain(CLEAR_SECRET);
    expect(requests.slice(before)).toEqual([]);
    expect(requests.filter((r) => r.startsWith("POST"))).toEqual(["POST /api/v1/channels"]);
    expect(requests.some((r) => r.includes("rotate-secret") || /\/channels\/\d+$/.test(r))).toBe(false);
  });

  it("rotating an API channel's secret shows the new one once", async () => {
    vi.spyOn(channelsApi, "list").mockResolvedValue([apiChannel()]);
    const rotate = vi.spyOn(channelsApi, "rotateSecret").mockResolvedValue({ ...apiChannel(), secrets: { webhook_secret: CLEAR_SECRET } });
    vi.spyOn(window, "confirm").mockReturnValue(true);
    const wrapper = mount(ChannelsSettings, { global });
    await flushPromises();
    await wrapper.get("[data-testid='channel-rotate']").trigger("click");
    await flushPromises();
    expect(rotate).toHaveBeenCalledWith(7);
    expect(wrapper.get("[data-testid='channel-secrets-once']").text()).toContain(CLEAR_SECRET);
    await wrapper.get("[data-testid='secrets-once-close']").trigger("click");
    expect(wrapper.html()).not.toContain(CLEAR_SECRET);
    expect(rotate).toHaveBeenCalledTimes(1);
  });

  it("channel form: nested 422 errors land on config.page_id; unknown ones in the summary", async () => {
    const create = vi.spyOn(channelsApi, "create").mockRejectedValue(invalid({ "config.page_id": ["digits only"], "config.colour": ["Unknown field."] }));
    const wrapper = mount(ChannelForm, { props: { channel: null, brands: [BRAND], callbackUrl: null }, global });
    expect(wrapper.get("[data-testid='meta-fields']").text()).toContain("message_reactions");
    await wrapper.get("[data-testid='channel-name']").setValue("  Maison Lune FB ");
    await wrapper.get("[data-testid='channel-page-id']").setValue("12ab");
    await wrapper.get("[data-testid='channel-access-token']").setValue("EAAB-token");
    await wrapper.get("[data-testid='channel-app-secret']").setValue("app-secret");
    await wrapper.get("form").trigger("submit");
    await flushPromises();
    expect(create).toHaveBeenCalledWith({
      brand_id: 1,
      kind: "facebook_page",
      name: "Maison Lune FB",
      config: { page_id: "12ab", access_token: "EAAB-token", app_secret: "app-secret" },
    });
    expect(wrapper.get("[data-field='config.page_id']").text()).toBe("digits only");
    expect(wrapper.get("[data-testid='channel-page-id']").attributes("aria-invalid")).toBe("true");
    expect(wrapper.get("[data-testid='channel-page-id']").attributes("aria-describedby")).toContain("channel-config-page_id-error");
    expect(wrapper.get("[data-testid='channel-access-token']").attributes("aria-invalid")).toBe("false");
    expect(wrapper.get("[data-testid='form-errors']").text()).toContain("config.colour");
  });

  it("channel form: a 409 naming a field (page already connected) is placed like a 422", async () => {
    vi.spyOn(channelsApi, "create").mockRejectedValue(
      new ApiError(409, { code: "conflict", message: "this account is already connected", fields: { "config.page_id": ["already connected"] } }),
    );
    const wrapper = mount(ChannelForm, { props: { channel: null, brands: [BRAND] }, global });
    await wrapper.get("[data-testid='channel-name']").setValue("FB");
    await wrapper.get("form").trigger("submit");
    await flushPromises();
    expect(wrapper.get("[data-field='config.page_id']").text()).toBe("already connected");
  });

  it("webhook log: status filter, highlighted alerts, body as text, replay", async () => {
    const failed = webhookEvent({ id: 52, status: "failed", error: "Graph API 500", attempts: 3, body: '<img src=x onerror="alert(1)">' });
    const list = vi.spyOn(webhookEventsApi, "list").mockImplementation(async (query) => {
      if (query.status === "failed") return { items: [failed], next_cursor: null };
      if (query.status) return { items: [], next_cursor: null };
      return { items: [webhookEvent(), failed, webhookEvent({ id: 40, status: "rejected", verification: "invalid" })], next_cursor: null };
    });
    vi.spyOn(webhookEventsApi, "get").mockImplementation(async (id) => (String(id) === "52" ? failed : webhookEvent({ id: Number(id) })));
    const replay = vi.spyOn(webhookEventsApi, "replay").mockResolvedValue({ ...failed, status: "pending", attempts: 0, error: null });

    const wrapper = mount(WebhooksSettings, { global });
    await flushPromises();
    expect(list).toHaveBeenLastCalledWith(expect.objectContaining({ status: undefined, limit: 50 }), expect.anything());
    expect(wrapper.findAll("[data-testid='webhook-event-row']").map((row) => row.attributes("data-status"))).toEqual(["processed", "failed", "rejected"]);
    expect(wrapper.get("[data-status='failed']").classes()).toContain("table__row--alert");
    expect(wrapper.get("[data-status='processed']").classes()).not.toContain("table__row--alert");

    await wrapper.get("[data-testid='webhook-status-filter']").setValue("failed");
    await flushPromises();
    expect(list).toHaveBeenLastCalledWith(expect.objectContaining({ status: "failed" }), expect.anything());
    const rows = wrapper.findAll("[data-testid='webhook-event-row']");
    expect(rows).toHaveLength(1);
    expect(rows[0]!.attributes("data-status")).toBe("failed");

    await rows[0]!.get("[data-testid='webhook-open']").trigger("click");
    await flushPromises();
    const drawer = wrapper.get("[data-testid='webhook-event-detail']");
    const body = drawer.get("[data-testid='webhook-body']");
    expect(body.element.tagName).toBe("PRE");
    expect(body.text()).toBe('<img src=x onerror="alert(1)">');
    expect(body.find("img").exists()).toBe(false);
    expect(drawer.get("[data-testid='webhook-error']").text()).toBe("Graph API 500");
    expect(drawer.get("[data-testid='webhook-headers']").text()).toContain("X-Hub-Signature-256");

    await drawer.get("[data-testid='webhook-replay']").trigger("click");
    await flushPromises();
    expect(replay).toHaveBeenCalledWith(52);
    expect(wrapper.get("[data-testid='webhook-replay-result']").text()).toContain("En file");
    expect(wrapper.get("[data-testid='webhook-event-row']").attributes("data-status")).toBe("pending");
  });

  it("webhook log: events with an invalid signature offer no replay", async () => {
    const rejected = webhookEvent({ id: 40, status: "rejected", verification: "invalid", verification_detail: "bad signature" });
    vi.spyOn(webhookEventsApi, "list").mockResolvedValue({ items: [rejected], next_cursor: null });
    vi.spyOn(webhookEventsApi, "get").mockResolvedValue(rejected);
    const wrapper = mount(WebhooksSettings, { global });
    await flushPromises();
    await wrapper.get("[data-testid='webhook-open']").trigger("click");
    await flushPromises();
    expect(wrapper.find("[data-testid='webhook-replay']").exists()).toBe(false);
    expect(wrapper.get("[data-testid='webhook-verification']").text()).toContain("bad signature");
  });

  it("admin tabs: hidden from supervisors and refused by the router; admins see the alert count", async () => {
    vi.spyOn(webhookEventsApi, "list").mockImplementation(async (query) =>
      query.status === "failed"
        ? { items: [webhookEvent({ status: "failed" }), webhookEvent({ id: 2, status: "failed" })], next_cursor: null }
        : query.status === "dead"
          ? { items: [webhookEvent({ id: 3, status: "dead" })], next_cursor: "3" }
          : { items: [], next_cursor: null },
    );
    vi.spyOn(channelsApi, "list").mockResolvedValue([]);
    vi.stubGlobal("fetch", vi.fn(async () => json(200, [])));
    const mountApp = async (path: string) => {
      const router = createAppRouter(createMemoryHistory());
      await router.push(path);
      await router.isReady();
      const wrapper = mount({ template: "<RouterView />" }, { global: { plugins: [createAppI18n("en"), router] } });
      await flushPromises();
      return { wrapper, router };
    };

    const admin = await mountApp("/settings/webhooks");
    expect(admin.router.currentRoute.value.name).toBe("settings-webhooks");
    for (const tab of ["channels", "brands", "teams", "agents", "webhooks"]) {
      expect(admin.wrapper.find(`[data-testid='settings-tab-${tab}']`).exists()).toBe(true);
    }
    expect(admin.wrapper.get("[data-testid='webhooks-alert-count']").text()).toBe("3+");

    useAuthStore().agent = { ...ME, role: "supervisor" };
    const supervisor = await mountApp("/settings/channels");
    expect(supervisor.router.currentRoute.value.name).toBe("settings-canned");
    expect(supervisor.wrapper.find("[data-testid='settings-tab-channels']").exists()).toBe(false);
    expect(supervisor.wrapper.find("[data-testid='settings-tab-webhooks']").exists()).toBe(false);
    expect(supervisor.wrapper.find("[data-testid='settings-tab-canned']").exists()).toBe(true);
  });

  it("helpers: replayable events and language lists", () => {
    expect(isReplayable({ verification: "valid", status: "dead" })).toBe(true);
    expect(isReplayable({ verification: "valid", status: "pending" })).toBe(false);
    expect(isReplayable({ verification: "invalid", status: "rejected" })).toBe(false);
    expect(parseLanguages(" fr, en-GB  es;FR ")).toEqual(["fr", "en-GB", "es"]);
  });
});
