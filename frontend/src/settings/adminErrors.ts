import { useI18n } from "vue-i18n";
import { ApiError } from "@/api";
import { useErrorText } from "@/composables/useErrorText";

/**
 * Error text for the administration screens: a 409 there is not "the conversation changed" but a rule
 * the server explains (last admin, only API channels have a secret, only valid signatures replay).
 */
export function useAdminErrorText() {
  const { t } = useI18n();
  const errorText = useErrorText();
  return (error: unknown): string => {
    if (error instanceof ApiError && error.code === "conflict" && error.message) return t("settings.conflict", { message: error.message });
    return errorText(error);
  };
}
