import { flushPromises, mount } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ApiError, calendarsApi, cannedApi, slaPoliciesApi } from "@/api";
import { createAppI18n } from "@/i18n";
import { useAuthStore } from "@/stores/auth";
import CalendarForm from "@/views/settings/CalendarForm.vue";
import CannedReplyForm from "@/views/settings/CannedReplyForm.vue";
import SlaPolicyForm from "@/views/settings/SlaPolicyForm.vue";
import { ME } from "../factories";

const invalid = (fields: Record<string, string[]>) =>
  new ApiError(422, { code: "validation_error", message: "invalid input", fields });

describe("settings forms show 422 field errors next to their fields", () => {
  beforeEach(() => {
    setActivePinia(createPinia());
    useAuthStore().agent = { ...ME, role: "admin" };
  });
  const global = { plugins: [createAppI18n("fr")] };

  it("canned reply: shortcut and body, and unknown fields in the summary", async () => {
    const create = vi.spyOn(cannedApi, "create").mockRejectedValue(
      invalid({ shortcut: ["1 to 64 lowercase letters"], body: ["unknown placeholder {{contact.frist_name}}"], _schema: ["nope"] }),
    );
    const wrapper = mount(CannedReplyForm, { props: { reply: null, brands: [], teams: [] }, global });
    await wrapper.get("[data-testid='canned-shortcut']").setValue("/Merci");
    await wrapper.get("[data-testid='canned-title']").setValue("Merci");
    await wrapper.get("[data-testid='canned-body']").setValue("Merci {{contact.frist_name}}");
    await wrapper.get("form").trigger("submit");
    await flushPromises();
    expect(create).toHaveBeenCalledWith(expect.objectContaining({ shortcut: "merci", scope: "global", brand_id: null }));
    expect(wrapper.get("[data-field='shortcut']").text()).toBe("1 to 64 lowercase letters");
    expect(wrapper.get("[data-field='body']").text()).toContain("frist_name");
    expect(wrapper.find("#canned-shortcut-error").exists()).toBe(true);
    expect(wrapper.get("[data-testid='canned-shortcut']").attributes("aria-invalid")).toBe("true");
    expect(wrapper.get("[data-testid='form-errors']").text()).toContain("nope");
  });

  it("canned reply preview fills sample values and keeps fallbacks", async () => {
    const wrapper = mount(CannedReplyForm, { props: { reply: null, brands: [], teams: [] }, global });
    await wrapper.get("[data-testid='canned-body']").setValue('Bonjour {{contact.first_name}}, {{unknown | "x"}} <b>ok</b>');
    expect(wrapper.get("[data-testid='canned-preview']").text()).toBe("Bonjour Léa, x <b>ok</b>");
  });

  it("calendar: nested interval errors land on the range they name", async () => {
    vi.spyOn(calendarsApi, "create").mockRejectedValue(invalid({ "intervals.1.end": ["a local time of day like '09:30'"], timezone: ["unknown time zone"] }));
    const wrapper = mount(CalendarForm, { props: { calendar: null }, global });
    await wrapper.get("[data-testid='calendar-name']").setValue("Bureau Paris");
    await wrapper.get("form").trigger("submit");
    await flushPromises();
    expect(wrapper.get("[data-field='timezone']").text()).toBe("unknown time zone");
    const tuesday = wrapper.get("[data-weekday='1']");
    expect(tuesday.get("[data-field='intervals']").text()).toContain("end:");
    expect(wrapper.get("[data-weekday='0']").find("[data-field='intervals']").exists()).toBe(false);
  });

  it("SLA policy: targets in hours and minutes, condition errors by dotted path", async () => {
    const create = vi.spyOn(slaPoliciesApi, "create").mockRejectedValue(invalid({ "conditions.brand_ids": ["unknown brand 9"], first_response_seconds: ["too long"] }));
    const wrapper = mount(SlaPolicyForm, { props: { policy: null, calendars: [], brands: [], nextPosition: 10 }, global });
    await wrapper.get("[data-testid='policy-name']").setValue("VIP");
    const first = wrapper.get("[data-testid='target-first_response_seconds']");
    await first.get("[data-testid='target-hours']").setValue("1");
    await first.get("[data-testid='target-minutes']").setValue("30");
    await wrapper.get("form").trigger("submit");
    await flushPromises();
    expect(create).toHaveBeenCalledWith(expect.objectContaining({ name: "VIP", position: 10, first_response_seconds: 5400, next_response_seconds: null, warning_ratio: 0.8 }));
    expect(wrapper.get("[data-field='conditions.brand_ids']").text()).toBe("unknown brand 9");
    expect(first.get("[data-field='first_response_seconds']").text()).toBe("too long");
  });
});
