import { ref } from "vue";
import { useFormErrors } from "@/settings/formErrors";

/**
 * What every settings form shares: its server errors (`useFormErrors`, shown by `FormSummary` and `FieldError`),
 * `saving` while a request runs and `saved` once one succeeded.
 */
export function useSettingsForm(knownFields: () => readonly string[]) {
  const errors = useFormErrors(knownFields);
  const saving = ref(false);
  const saved = ref(false);

  /** Another item opened (or the same one reset): no errors, no "saved". */
  function resetStatus(): void {
    errors.clear();
    saved.value = false;
  }

  /**
   * Runs a save: `saving` meanwhile, errors cleared first and any failure captured for the fields / summary.
   * The action sets `saved` itself once the item is saved (a create that shows a one-time panel may not).
   */
  async function submitWith(action: () => Promise<void>): Promise<void> {
    saving.value = true;
    saved.value = false;
    errors.clear();
    try {
      await action();
    } catch (error) {
      errors.capture(error);
    } finally {
      saving.value = false;
    }
  }

  return { errors, saving, saved, resetStatus, submitWith };
}
