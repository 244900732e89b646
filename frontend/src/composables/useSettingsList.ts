import { ref, type Ref } from "vue";
import { useI18n } from "vue-i18n";
import type { Id } from "@/api";
import { sameId } from "@/settings/admin";

export interface SettingsListOptions {
  /** Reads the page's data into the view's own refs; a failure shows as "could not load". */
  fetch: () => Promise<void>;
  /** How a failure is worded (`useAdminErrorText` for admin pages, `useErrorText` otherwise). */
  errorText: (error: unknown) => string;
}

export interface PerformOptions {
  /** Asked first with `window.confirm`; declining does nothing. */
  confirm?: string;
  /** Clears the page's problem before acting (default true). */
  clearProblem?: boolean;
  /** Held in `busy` while the action runs (buttons disable themselves on it). */
  busy?: string;
}

/**
 * What every settings list page shares: its load with loading / problem state, the item open in the side
 * form (`"new"` while creating), re-reading after a save, and row actions (delete, archive, toggle) that may
 * ask first and whose failure shows in the page's problem.
 */
export function useSettingsList<T extends { id: Id }>(options: SettingsListOptions) {
  const { t } = useI18n();
  const loading = ref(false);
  const problem = ref<string | null>(null);
  const busy = ref<string | null>(null);
  const editing = ref(null) as Ref<T | "new" | null>;

  async function load(): Promise<void> {
    loading.value = true;
    problem.value = null;
    try {
      await options.fetch();
    } catch (error) {
      problem.value = t("settings.loadFailed", { message: options.errorText(error) });
    } finally {
      loading.value = false;
    }
  }

  /** The form saved `item`: keep it open (now as saved) and re-read the list. */
  function onSaved(item: T): void {
    editing.value = item;
    void load();
  }

  /** Whether `item` is the one open in the form. */
  function isEditing(item: { id: Id }): boolean {
    return editing.value !== null && editing.value !== "new" && sameId(editing.value.id, item.id);
  }

  /** Closes the form if it shows `item` (deleted, archived). */
  function closeIfEditing(item: { id: Id }): void {
    if (isEditing(item)) editing.value = null;
  }

  /** Runs a row action; returns false when declined or failed (the failure then in `problem`). */
  async function perform(action: () => Promise<unknown>, opts: PerformOptions = {}): Promise<boolean> {
    if (opts.confirm !== undefined && !window.confirm(opts.confirm)) return false;
    if (opts.busy !== undefined) busy.value = opts.busy;
    if (opts.clearProblem !== false) problem.value = null;
    try {
      await action();
      return true;
    } catch (error) {
      problem.value = options.errorText(error);
      return false;
    } finally {
      if (opts.busy !== undefined) busy.value = null;
    }
  }

  return { loading, problem, busy, editing, load, onSaved, isEditing, closeIfEditing, perform };
}
