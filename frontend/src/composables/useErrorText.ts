import { useI18n } from "vue-i18n";
import { ApiError } from "@/api";

/** Turns any failure into a sentence for the agent: known codes are translated, else the server's text. */
export function useErrorText() {
  const { t, te } = useI18n();
  return (error: unknown): string => {
    if (!(error instanceof ApiError)) return t("errors.generic", { code: error instanceof Error ? error.name : "?" });
    const key = `errors.${error.code}`;
    if (error.code === "validation_error") {
      const details = Object.values(error.fields).flat().join(" ");
      return details ? `${t(key)} ${details}` : error.message || t(key);
    }
    if (te(key)) return t(key);
    return error.message || t("errors.generic", { code: error.code });
  };
}
