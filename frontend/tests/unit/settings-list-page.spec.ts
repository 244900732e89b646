import { mount } from "@vue/test-utils";
import { describe, expect, it } from "vitest";
import SettingsListPage from "@/components/SettingsListPage.vue";
import { createAppI18n } from "@/i18n";

const base = {
  title: "Teams",
  testid: "settings-things",
  newTestid: "thing-new",
  loading: false,
  empty: false,
  emptyText: "Nothing yet",
  problem: null as string | null,
  columns: ["Name", "Size"],
};

function mountPage(props: Partial<typeof base> & { newLabel?: string } = {}, slots: Record<string, string> = {}) {
  return mount(SettingsListPage, { props: { ...base, ...props }, slots, global: { plugins: [createAppI18n("en")] } });
}

describe("SettingsListPage", () => {
  it("renders the header, the table with a hidden edit column and the rows slot", async () => {
    const wrapper = mountPage({}, { rows: '<tr data-testid="thing-row"><td>A</td><td>1</td><td></td></tr>' });
    expect(wrapper.get('[data-testid="settings-things"]').element.tagName).toBe("SECTION");
    expect(wrapper.get("h2").text()).toBe("Teams");
    const headers = wrapper.findAll("thead th");
    expect(headers.map((th) => th.text()).slice(0, 2)).toEqual(["Name", "Size"]);
    expect(headers).toHaveLength(3);
    expect(headers[2]!.find(".visually-hidden").exists()).toBe(true);
    expect(wrapper.findAll('tbody [data-testid="thing-row"]')).toHaveLength(1);
    expect(wrapper.find('[role="alert"]').exists()).toBe(false);
    expect(wrapper.find(".settings-split__form").exists()).toBe(false);
    await wrapper.get('[data-testid="thing-new"]').trigger("click");
    expect(wrapper.emitted("new")).toHaveLength(1);
  });

  it("shows loading, empty and problem states", () => {
    expect(mountPage({ loading: true, empty: true }).find(".settings-split__list p.muted").text()).not.toBe("Nothing yet");
    const empty = mountPage({ empty: true, problem: "Boom" });
    expect(empty.find("table").exists()).toBe(false);
    expect(empty.get(".settings-split__list p.muted").text()).toBe("Nothing yet");
    expect(empty.get('[role="alert"]').text()).toBe("Boom");
  });

  it("renders the optional slots in place and a custom new label", () => {
    const wrapper = mountPage(
      { newLabel: "Connect" },
      { intro: '<form role="search"></form>', before: '<aside data-testid="once"></aside>', actions: '<button data-testid="extra"></button>', form: "<div data-testid=\"the-form\"></div>" },
    );
    expect(wrapper.get('[data-testid="thing-new"]').text()).toBe("Connect");
    expect(wrapper.find('header [data-testid="extra"]').exists()).toBe(true);
    expect(wrapper.find('.settings-split__form [data-testid="the-form"]').exists()).toBe(true);
    const order = Array.from((wrapper.element as HTMLElement).children).map((el) => el.tagName);
    expect(order).toEqual(["HEADER", "FORM", "ASIDE", "DIV"]);
  });
});
