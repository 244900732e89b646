import { flushPromises, mount } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { cannedApi, type CannedReply } from "@/api";
import { cannedQuery, filterCanned, moveIndex } from "@/canned/picker";
import CannedPicker from "@/components/CannedPicker.vue";
import MessageComposer from "@/components/MessageComposer.vue";
import { createAppI18n } from "@/i18n";
import { conversation } from "../factories";

const reply = (id: number, shortcut: string, title: string, body: string): CannedReply => ({
  id, shortcut, title, body, scope: "global", brand_id: null, team_id: null, language: "fr",
});
const REPLIES = [
  reply(1, "merci", "Remerciements", "Merci {{contact.first_name}} !"),
  reply(2, "livraison", "Retard de livraison", "Votre colis est en route."),
  reply(3, "rembourse", "Remboursement", "Nous vous remboursons sous 5 jours, merci."),
];

describe("canned reply filtering", () => {
  it("opens only on a leading slash", () => {
    expect(cannedQuery("/")).toBe("");
    expect(cannedQuery("/mer")).toBe("mer");
    expect(cannedQuery("bonjour /mer")).toBeNull();
    expect(cannedQuery("/merci beaucoup")).toBeNull();
  });

  it("ranks shortcut prefixes first, then title and body, ignoring accents", () => {
    expect(filterCanned(REPLIES, "mer").map((r) => r.id)).toEqual([1, 3]);
    expect(filterCanned(REPLIES, "RETARD").map((r) => r.id)).toEqual([2]);
    expect(filterCanned(REPLIES, "colis").map((r) => r.id)).toEqual([2]);
    expect(filterCanned(REPLIES, "remboursé").map((r) => r.id)).toEqual([3]);
    expect(filterCanned(REPLIES, "").length).toBe(3);
  });

  it("wraps keyboard movement", () => {
    expect(moveIndex(2, 1, 3)).toBe(0);
    expect(moveIndex(0, -1, 3)).toBe(2);
    expect(moveIndex(-1, 1, 0)).toBe(-1);
  });
});

describe("canned picker", () => {
  beforeEach(() => setActivePinia(createPinia()));

  it("searches as the agent types and moves with the arrows", async () => {
    const search = vi.fn().mockResolvedValue(REPLIES);
    const wrapper = mount(CannedPicker, {
      props: { query: "", conversationId: 3, listId: "l", search, debounceMs: 0 },
      global: { plugins: [createAppI18n("fr")] },
    });
    await flushPromises();
    expect(search).toHaveBeenLastCalledWith({ q: undefined, conversation_id: 3, limit: 20 }, expect.any(AbortSignal));
    expect(wrapper.findAll("[data-testid='canned-option']")).toHaveLength(3);

    await wrapper.setProps({ query: "mer" });
    await flushPromises();
    expect(search).toHaveBeenLastCalledWith({ q: "mer", conversation_id: 3, limit: 20 }, expect.any(AbortSignal));
    const options = () => wrapper.findAll("[data-testid='canned-option']");
    expect(options().map((o) => o.attributes("data-shortcut"))).toEqual(["merci", "rembourse"]);
    expect(options()[0]!.attributes("aria-selected")).toBe("true");

    const picker = wrapper.vm as unknown as { onKeydown: (e: KeyboardEvent) => boolean };
    expect(picker.onKeydown(new KeyboardEvent("keydown", { key: "ArrowDown" }))).toBe(true);
    await wrapper.vm.$nextTick();
    expect(options()[1]!.attributes("aria-selected")).toBe("true");
    picker.onKeydown(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(wrapper.emitted("pick")?.[0]?.[0]).toMatchObject({ shortcut: "rembourse" });
    picker.onKeydown(new KeyboardEvent("keydown", { key: "Escape" }));
    expect(wrapper.emitted("close")).toHaveLength(1);
  });

  it("inserts the server-rendered text on Enter and warns about missing values", async () => {
    vi.spyOn(cannedApi, "search").mockResolvedValue(REPLIES);
    const render = vi.spyOn(cannedApi, "render").mockResolvedValue({ text: "Merci  !", missing: ["contact.first_name"] });
    const wrapper = mount(MessageComposer, {
      props: { conversation: conversation({ id: 3 }), privateTarget: null },
      global: { plugins: [createAppI18n("fr")] },
    });
    const textarea = wrapper.get("[data-testid='composer-text']");
    await textarea.setValue("/mer");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await flushPromises();
    expect(wrapper.find("[data-testid='canned-picker']").exists()).toBe(true);
    expect(textarea.attributes("aria-expanded")).toBe("true");
    await textarea.trigger("keydown", { key: "Enter" });
    await flushPromises();
    expect(render).toHaveBeenCalledWith(1, 3);
    expect((textarea.element as HTMLTextAreaElement).value).toBe("Merci  !");
    expect(wrapper.find("[data-testid='canned-picker']").exists()).toBe(false);
    expect(wrapper.get("[data-testid='canned-missing']").text()).toContain("{{contact.first_name}}");
  });
});
