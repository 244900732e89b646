import { flushPromises, mount } from "@vue/test-utils";
import { afterEach, describe, expect, it, vi } from "vitest";
import { defineComponent, h } from "vue";
import { ApiError } from "@/api";
import { useSettingsForm } from "@/composables/useSettingsForm";
import { useSettingsList, type SettingsListOptions } from "@/composables/useSettingsList";
import { createAppI18n } from "@/i18n";

interface Item {
  id: number;
  name: string;
}

/** Runs the composable inside a component's setup, where `useI18n` works. */
function withSetup<T>(use: () => T): T {
  let result!: T;
  mount(defineComponent({ setup: () => ((result = use()), () => h("div")) }), { global: { plugins: [createAppI18n("en")] } });
  return result;
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

describe("useSettingsList", () => {
  afterEach(() => vi.restoreAllMocks());

  it("loads with loading state and words a failure as a load problem", async () => {
    const fetch = vi.fn<SettingsListOptions["fetch"]>().mockRejectedValueOnce(new Error("down")).mockResolvedValueOnce();
    const list = withSetup(() => useSettingsList<Item>({ fetch, errorText }));
    const first = list.load();
    expect(list.loading.value).toBe(true);
    await first;
    expect(list.loading.value).toBe(false);
    expect(list.problem.value).toBe("Could not load: down");
    await list.load();
    expect(list.problem.value).toBeNull();
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it("keeps a saved item open, closes a removed one, and re-reads", async () => {
    const fetch = vi.fn<SettingsListOptions["fetch"]>().mockResolvedValue();
    const list = withSetup(() => useSettingsList<Item>({ fetch, errorText }));
    list.onSaved({ id: 1, name: "a" });
    await flushPromises();
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(list.isEditing({ id: "1" })).toBe(true);
    list.closeIfEditing({ id: 2 });
    expect(list.editing.value).not.toBeNull();
    list.closeIfEditing({ id: 1 });
    expect(list.editing.value).toBeNull();
    list.editing.value = "new";
    expect(list.isEditing({ id: 1 })).toBe(false);
  });

  it("asks before acting, holds busy, and shows a failure as the problem", async () => {
    const list = withSetup(() => useSettingsList<Item>({ fetch: async () => {}, errorText }));
    const confirm = vi.spyOn(window, "confirm").mockReturnValueOnce(false).mockReturnValueOnce(true);
    const action = vi.fn(async () => {
      expect(list.busy.value).toBe("remove-1");
      throw new Error("refused");
    });
    expect(await list.perform(action, { confirm: "Sure?", busy: "remove-1" })).toBe(false);
    expect(action).not.toHaveBeenCalled();
    expect(await list.perform(action, { confirm: "Sure?", busy: "remove-1" })).toBe(false);
    expect(confirm).toHaveBeenCalledTimes(2);
    expect(action).toHaveBeenCalledTimes(1);
    expect(list.busy.value).toBeNull();
    expect(list.problem.value).toBe("refused");
    // Without clearProblem the earlier problem stays while the action succeeds.
    expect(await list.perform(async () => {}, { clearProblem: false })).toBe(true);
    expect(list.problem.value).toBe("refused");
    expect(await list.perform(async () => {})).toBe(true);
    expect(list.problem.value).toBeNull();
  });
});

describe("useSettingsForm", () => {
  it("tracks saving / saved and maps a 422 onto fields", async () => {
    const form = withSetup(() => useSettingsForm(() => ["name"]));
    let release!: () => void;
    const pending = form.submitWith(
      () =>
        new Promise<void>((resolve) => {
          release = () => {
            form.saved.value = true;
            resolve();
          };
        }),
    );
    expect(form.saving.value).toBe(true);
    release();
    await pending;
    expect(form.saving.value).toBe(false);
    expect(form.saved.value).toBe(true);

    await form.submitWith(async () => {
      throw new ApiError(422, { code: "validation_error", message: "invalid", fields: { name: ["taken"], other: ["x"] } });
    });
    expect(form.saved.value).toBe(false);
    expect(form.errors.errorsFor("name")).toEqual(["taken"]);
    expect(form.errors.unplaced.value).toEqual(["other: x"]);

    form.resetStatus();
    expect(form.errors.hasFieldErrors.value).toBe(false);
    expect(form.errors.failure.value).toBeNull();
  });
});
