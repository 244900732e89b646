import { flushPromises, mount, type VueWrapper } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { defineComponent, h, nextTick, ref } from "vue";
import { directoryApi, webhookEventsApi } from "@/api";
import HandoffDialog from "@/components/HandoffDialog.vue";
import { isModalOpen, isShortcut } from "@/composables/keyboard";
import { createAppI18n } from "@/i18n";
import WebhookEventDrawer from "@/views/settings/WebhookEventDrawer.vue";
import { mountInbox, type MountedInbox } from "../inboxRouter";
import { conversation, webhookEvent } from "../factories";

function press(target: EventTarget, key: string): KeyboardEvent {
  const event = new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true });
  target.dispatchEvent(event);
  return event;
}

describe("global shortcuts and modal dialogs", () => {
  afterEach(() => {
    document.body.innerHTML = "";
  });

  it("are no shortcuts while a modal dialog is open, wherever the focus is", () => {
    const outside = document.body.appendChild(document.createElement("button"));
    expect(isShortcut(new KeyboardEvent("keydown", { key: "j" }))).toBe(true);

    const dialog = document.createElement("div");
    dialog.setAttribute("role", "dialog");
    dialog.setAttribute("aria-modal", "true");
    const inside = dialog.appendChild(document.createElement("button"));
    document.body.appendChild(dialog);
    expect(isModalOpen()).toBe(true);
    for (const target of [inside, dialog, outside, document.body]) {
      const event = new KeyboardEvent("keydown", { key: "j", bubbles: true });
      target.dispatchEvent(event);
      expect(isShortcut(event)).toBe(false);
    }

    dialog.remove();
    expect(isModalOpen()).toBe(false);
    const event = new KeyboardEvent("keydown", { key: "j", bubbles: true });
    outside.dispatchEvent(event);
    expect(isShortcut(event)).toBe(true);
  });

  it("a non-modal panel (aria-modal false) leaves the page's shortcuts on", () => {
    const drawer = document.createElement("aside");
    drawer.setAttribute("role", "dialog");
    drawer.setAttribute("aria-modal", "false");
    document.body.appendChild(drawer);
    expect(isModalOpen()).toBe(false);
    expect(isShortcut(new KeyboardEvent("keydown", { key: "j" }))).toBe(true);
  });
});

describe("conversation list shortcuts behind the handoff dialog", () => {
  const items = [conversation({ id: 1 }), conversation({ id: 2 }), conversation({ id: 3 })];
  const dialogOpen = ref(false);
  let inbox: MountedInbox;
  let wrapper: VueWrapper;

  // The conversation pane, standing for ConversationView: it shows the handoff dialog while asked to.
  const Pane = defineComponent({
    render: () =>
      dialogOpen.value ? h(HandoffDialog, { conversation: items[0]!, onClose: () => (dialogOpen.value = false) }) : h("div"),
  });

  beforeEach(async () => {
    vi.spyOn(directoryApi, "handoffTargets").mockResolvedValue([{ id: 4, name: "Support niveau 2" }]);
    dialogOpen.value = false;
    inbox = await mountInbox(Pane, items);
    wrapper = inbox.wrapper;
  });

  afterEach(() => inbox.unmount());

  const active = () => inbox.active();
  const search = () => inbox.search();

  async function pressEverywhere(key: string) {
    const dialog = wrapper.get("[data-testid='handoff-dialog']");
    const targets = [
      dialog.get("[data-testid='handoff-team']").element,
      dialog.get("[data-testid='handoff-note']").element,
      dialog.get("button[type='button']").element,
      dialog.element,
      dialog.element.parentElement!, // the backdrop
      document.body, // the focus after a click on the dialog's text
    ];
    for (const target of targets) {
      const event = press(target, key);
      await nextTick();
      expect(event.defaultPrevented, `${key} on ${(target as Element).tagName}`).toBe(false);
    }
  }

  it("j, k, the arrows and / do nothing behind the dialog; Escape closes it, and the shortcuts come back", async () => {
    press(document.body, "j");
    await nextTick();
    expect(active()).toBe(0);

    dialogOpen.value = true;
    await flushPromises();
    const dialog = wrapper.get<HTMLFormElement>("[data-testid='handoff-dialog']");
    expect(dialog.attributes("aria-modal")).toBe("true");

    for (const key of ["j", "k", "/"]) await pressEverywhere(key);
    expect(active()).toBe(0);
    expect(document.activeElement).not.toBe(search());
    // the arrows move the list only with the focus in it, which a modal takes away too
    const row = wrapper.findAll("[data-testid='conversation-row']")[0]!.element;
    press(row, "ArrowDown");
    await nextTick();
    expect(active()).toBe(0);

    // what the dialog handles itself it still does: Escape, from wherever in it the focus is
    dialog.element.focus();
    expect(document.activeElement).toBe(dialog.element); // a click on its text keeps the focus in it
    const escape = press(dialog.element, "Escape");
    await flushPromises();
    expect(escape.defaultPrevented).toBe(true);
    expect(wrapper.find("[data-testid='handoff-dialog']").exists()).toBe(false);

    press(document.body, "j");
    await nextTick();
    expect(active()).toBe(1);
    press(document.body, "/");
    expect(document.activeElement).toBe(search());
  });
});

describe("webhook event drawer", () => {
  const event = webhookEvent();

  it("is not modal (the log beside it stays usable), and keeps the Escape it closes on from other handlers", async () => {
    setActivePinia(createPinia());
    vi.spyOn(webhookEventsApi, "get").mockResolvedValue(event);
    const wrapper = mount(WebhookEventDrawer, { props: { event }, global: { plugins: [createAppI18n("en")] }, attachTo: document.body });
    await flushPromises();
    const drawer = wrapper.get("[data-testid='webhook-event-detail']");
    expect(drawer.attributes("aria-modal")).toBe("false");
    expect(isModalOpen()).toBe(false);

    const escape = press(drawer.get("[data-testid='webhook-drawer-close']").element, "Escape");
    expect(wrapper.emitted("close")).toHaveLength(1);
    expect(escape.defaultPrevented).toBe(true);
    wrapper.unmount();
  });
});
