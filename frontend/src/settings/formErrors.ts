import { computed, ref } from "vue";
import { ApiError } from "@/api/client";

/**
 * A form's server errors: a 422's (or a 409's) `fields` (dotted paths for nested values: `intervals.0.start`,
 * `conditions.brand_ids.0`) shown next to the fields they name; whatever names no field on screen,
 * and any other failure, goes to the form's summary.
 */
export function useFormErrors(knownFields: () => readonly string[]) {
  const fields = ref<Record<string, string[]>>({});
  const failure = ref<unknown>(null);

  function capture(error: unknown): void {
    // 422: invalid input; 409 with fields: a conflict a field explains (`name` already exists, page already connected).
    if (error instanceof ApiError && (error.status === 422 || error.status === 409) && Object.keys(error.fields).length) {
      fields.value = { ...error.fields };
      failure.value = null;
    } else {
      fields.value = {};
      failure.value = error;
    }
  }

  function clear(): void {
    fields.value = {};
    failure.value = null;
  }

  /** Messages for a field and its nested parts (`intervals` takes `intervals.3.end`). */
  function errorsFor(name: string): string[] {
    const out: string[] = [];
    for (const [key, messages] of Object.entries(fields.value)) {
      if (key === name || key.startsWith(`${name}.`)) out.push(...messages);
    }
    return out;
  }

  /** Exact key only (`intervals.3.end`). */
  function exact(name: string): string[] {
    return fields.value[name] ?? [];
  }

  const unplaced = computed(() =>
    Object.entries(fields.value)
      .filter(([key]) => !knownFields().some((known) => key === known || key.startsWith(`${known}.`)))
      .map(([key, messages]) => (key === "_schema" ? messages.join(" ") : `${key}: ${messages.join(" ")}`)),
  );

  const hasFieldErrors = computed(() => Object.keys(fields.value).length > 0);

  return { fields, failure, capture, clear, errorsFor, exact, unplaced, hasFieldErrors };
}

export type FormErrors = ReturnType<typeof useFormErrors>;
