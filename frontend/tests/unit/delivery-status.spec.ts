import { mount } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { beforeEach, describe, expect, it } from "vitest";
import MessageItem from "@/components/MessageItem.vue";
import { createAppI18n } from "@/i18n";
import { message } from "../factories";

function outbound(delivery_status: string, delivery_error: string | null) {
  return mount(MessageItem, {
    props: { message: message({ id: 5, direction: "out", author: { type: "agent", id: 1, name: "Camille" },
                                delivery_status: delivery_status as never, delivery_error }) },
    global: { plugins: [createAppI18n("fr")] },
  });
}

describe("an outbound message's real delivery status", () => {
  beforeEach(() => setActivePinia(createPinia()));

  it("says why a queued reply is being tried again (the platform is down or limits us)", () => {
    const wrapper = outbound("queued", "retrying after: network error: POST /1000000001/messages: ConnectionError");
    expect(wrapper.get("[data-testid='delivery-status']").text()).toContain("en file");
    const retry = wrapper.get("[data-testid='delivery-retry']");
    expect(retry.text()).toBe("nouvel essai après une erreur : network error: POST /1000000001/messages: ConnectionError");
    expect(retry.attributes("title")).toBe("network error: POST /1000000001/messages: ConnectionError");
    expect(wrapper.find("[data-testid='delivery-error']").exists()).toBe(false);
  });

  it("shows nothing more for a reply simply waiting its turn, and the error of a failed one", () => {
    expect(outbound("queued", null).find("[data-testid='delivery-retry']").exists()).toBe(false);
    const failed = outbound("failed", "(#10) Outside of allowed window");
    expect(failed.get("[data-testid='delivery-error']").text()).toBe("Échec : (#10) Outside of allowed window");
    expect(failed.find("[data-testid='delivery-retry']").exists()).toBe(false);
  });

  it("renders the platform's error as text", () => {
    const wrapper = outbound("queued", "retrying after: <img src=x onerror=alert(1)>");
    expect(wrapper.find("img").exists()).toBe(false);
    expect(wrapper.get("[data-testid='delivery-retry']").text()).toContain("<img src=x onerror=alert(1)>");
  });
});
