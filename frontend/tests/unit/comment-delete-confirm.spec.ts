import { flushPromises, mount, type VueWrapper } from "@vue/test-utils";
import { createPinia, setActivePinia } from "pinia";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { defineComponent, h, nextTick } from "vue";
import MessageItem from "@/components/MessageItem.vue";
import { isModalOpen } from "@/composables/keyboard";
import { createAppI18n } from "@/i18n";
import { mountInbox, type MountedInbox } from "../inboxRouter";
import { conversation, message } from "../factories";

function press(target: EventTarget, key: string, init: KeyboardEventInit = {}): KeyboardEvent {
  const event = new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true, ...init });
  target.dispatchEvent(event);
  return event;
}

const comment = () => message({ id: 3, kind: "comment", direction: "in", text: "Arnaque !" });

describe("the comment-delete confirmation is a modal alertdialog", () => {
  let wrapper: VueWrapper;

  beforeEach(() => {
    setActivePinia(createPinia());
    wrapper = mount(MessageItem, {
      props: { message: comment() },
      global: { plugins: [createAppI18n("en")] },
      attachTo: document.body,
    });
  });

  afterEach(() => {
    wrapper.unmount();
    document.body.innerHTML = "";
  });

  const deleteButton = () => wrapper.get<HTMLButtonElement>("[data-testid='comment-delete']").element;
  const dialog = () => wrapper.get<HTMLElement>("[role='alertdialog']");
  const cancel = () => wrapper.get<HTMLButtonElement>("[data-testid='comment-delete-cancel']").element;
  const confirm = () => wrapper.get<HTMLButtonElement>("[data-testid='comment-delete-confirm']").element;

  async function open() {
    deleteButton().focus();
    await wrapper.get("[data-testid='comment-delete']").trigger("click");
    await flushPromises();
  }

  it("is modal, labelled by its question and described by its warning, and puts the focus on Cancel", async () => {
    expect(isModalOpen()).toBe(false);
    await open();
    const element = dialog().element;
    expect(element.getAttribute("aria-modal")).toBe("true");
    expect(isModalOpen()).toBe(true);

    const label = document.getElementById(element.getAttribute("aria-labelledby") ?? "");
    const description = document.getElementById(element.getAttribute("aria-describedby") ?? "");
    expect(label && element.contains(label)).toBe(true);
    expect(description && element.contains(description)).toBe(true);
    expect(label!.textContent).toBe("Delete this comment on the platform?");
    expect(description!.textContent).toBe("This cannot be undone.");

    // the safe choice has the focus, not the destructive one
    expect(document.activeElement).toBe(cancel());
  });

  it("keeps Tab and Shift+Tab within its two buttons", async () => {
    await open();
    expect(document.activeElement).toBe(cancel());
    const tab = press(cancel(), "Tab");
    expect(tab.defaultPrevented).toBe(true);
    expect(document.activeElement).toBe(confirm());
    const back = press(confirm(), "Tab", { shiftKey: true });
    expect(back.defaultPrevented).toBe(true);
    expect(document.activeElement).toBe(cancel());
  });

  it("closes on Escape without deleting, keeps the Escape from other handlers, and gives the focus back to Delete", async () => {
    const onWindowKeydown = vi.fn();
    window.addEventListener("keydown", onWindowKeydown);
    try {
      await open();
      const escape = press(cancel(), "Escape");
      await flushPromises();
      expect(escape.defaultPrevented).toBe(true);
      expect(onWindowKeydown).not.toHaveBeenCalled();
      expect(wrapper.find("[role='alertdialog']").exists()).toBe(false);
      expect(wrapper.emitted("moderate")).toBeUndefined();
      expect(isModalOpen()).toBe(false);
      expect(document.activeElement).toBe(deleteButton());
    } finally {
      window.removeEventListener("keydown", onWindowKeydown);
    }
  });

  it("closes on Escape from its own text too (focus on the dialog itself)", async () => {
    await open();
    dialog().element.focus();
    expect(document.activeElement).toBe(dialog().element);
    press(dialog().element, "Escape");
    await flushPromises();
    expect(wrapper.find("[role='alertdialog']").exists()).toBe(false);
    expect(wrapper.emitted("moderate")).toBeUndefined();
  });

  it("Cancel closes it without deleting and gives the focus back to Delete", async () => {
    await open();
    cancel().click();
    await flushPromises();
    expect(wrapper.find("[role='alertdialog']").exists()).toBe(false);
    expect(wrapper.emitted("moderate")).toBeUndefined();
    expect(document.activeElement).toBe(deleteButton());
  });

  it("the confirm button still deletes, and the modal is gone", async () => {
    await open();
    confirm().click();
    await flushPromises();
    expect(wrapper.emitted("moderate")).toEqual([["delete"]]);
    expect(wrapper.find("[role='alertdialog']").exists()).toBe(false);
    expect(isModalOpen()).toBe(false);
  });

  it("after the confirm, the focus goes back to Delete, or to the comment's actions while the delete keeps Delete disabled", async () => {
    await open();
    confirm().click();
    await flushPromises();
    expect(document.activeElement).toBe(deleteButton());

    // as in MessageList: the delete is in flight as soon as it is asked for, which disables the buttons
    wrapper.setProps({ onModerate: () => void wrapper.setProps({ pendingAction: "delete" }) } as never);
    await wrapper.get("[data-testid='comment-delete']").trigger("click");
    await flushPromises();
    confirm().click();
    await flushPromises();
    expect(deleteButton().disabled).toBe(true);
    expect(document.activeElement).toBe(wrapper.get("[role='group']").element);
  });

  it("a click on the page behind does not act on it: it only closes the confirmation, without deleting", async () => {
    const outside = document.body.appendChild(document.createElement("button"));
    const onOutsideClick = vi.fn();
    outside.addEventListener("click", onOutsideClick);
    await open();
    outside.focus();
    expect(document.activeElement).not.toBe(outside); // the focus stays in the dialog
    outside.click();
    await flushPromises();
    expect(onOutsideClick).not.toHaveBeenCalled();
    expect(wrapper.find("[role='alertdialog']").exists()).toBe(false);
    expect(wrapper.emitted("moderate")).toBeUndefined();
    expect(document.activeElement).toBe(deleteButton());

    outside.click();
    expect(onOutsideClick).toHaveBeenCalledTimes(1); // closed, the page is usable again
  });
});

describe("conversation list shortcuts behind the comment-delete confirmation", () => {
  const items = [conversation({ id: 1 }), conversation({ id: 2 }), conversation({ id: 3 })];
  let inbox: MountedInbox;
  let wrapper: VueWrapper;

  // The conversation pane, standing for ConversationView: one customer comment with its actions.
  const Pane = defineComponent({ render: () => h(MessageItem, { message: comment() }) });

  beforeEach(async () => {
    inbox = await mountInbox(Pane, items);
    wrapper = inbox.wrapper;
  });

  afterEach(() => inbox.unmount());

  const active = () => inbox.active();
  const search = () => inbox.search();

  it("j, k, Enter and / do nothing while it is open; Escape closes it and the shortcuts come back", async () => {
    press(document.body, "j");
    await nextTick();
    expect(active()).toBe(0);

    await wrapper.get("[data-testid='comment-delete']").trigger("click");
    await flushPromises();
    const cancel = wrapper.get("[data-testid='comment-delete-cancel']").element;
    expect(isModalOpen()).toBe(true);

    for (const target of [cancel, wrapper.get("[role='alertdialog']").element, document.body]) {
      for (const key of ["j", "k", "/"]) {
        const event = press(target, key);
        await nextTick();
        expect(event.defaultPrevented, `${key} on ${(target as Element).tagName}`).toBe(false);
      }
    }
    expect(active()).toBe(0);
    expect(document.activeElement).not.toBe(search());
    const row = wrapper.findAll("[data-testid='conversation-row']")[1]!.element;
    expect(press(row, "Enter").defaultPrevented).toBe(false);
    await flushPromises();
    expect(wrapper.find("[role='alertdialog']").exists()).toBe(true);

    press(document.activeElement ?? document.body, "Escape");
    await flushPromises();
    expect(wrapper.find("[role='alertdialog']").exists()).toBe(false);
    expect(isModalOpen()).toBe(false);

    press(document.body, "j");
    await nextTick();
    expect(active()).toBe(1);
  });
});
