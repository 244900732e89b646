import { computed, onScopeDispose, ref, watch } from "vue";
import { SEARCH_MIN_CHARACTERS, searchTerm } from "@/stores/conversationView";

/** Typing pauses shorter than this do not send a search. */
export const SEARCH_DEBOUNCE_MS = 300;

export interface SearchFieldOptions {
  /** The search in force (from the URL): the field shows it when it changes elsewhere (back button, a link). */
  applied: () => string;
  /** Puts a search term in force; "" for no search. */
  apply: (term: string) => void;
  delayMs?: number;
}

/**
 * The text of a search field and when it becomes the search: after a pause in typing, at once when emptied or
 * on Enter (flush), and only from SEARCH_MIN_CHARACTERS characters: a shorter text is no search at all (the
 * list shows the whole view) and `tooShort` says so.
 */
export function useSearchField(options: SearchFieldOptions) {
  const delayMs = options.delayMs ?? SEARCH_DEBOUNCE_MS;
  const text = ref(options.applied());
  /** Typed but not yet sent. */
  const pending = ref(false);
  let timer: ReturnType<typeof setTimeout> | null = null;

  const term = computed(() => searchTerm(text.value));
  const tooShort = computed(() => {
    const length = [...text.value.trim()].length;
    return length > 0 && length < SEARCH_MIN_CHARACTERS;
  });

  function cancel(): void {
    if (timer) clearTimeout(timer);
    timer = null;
    pending.value = false;
  }

  function flush(): void {
    cancel();
    if (term.value !== options.applied()) options.apply(term.value);
  }

  function input(value: string): void {
    text.value = value;
    cancel();
    if (term.value === options.applied()) return;
    if (value.trim() === "") return flush();
    pending.value = true;
    timer = setTimeout(flush, delayMs);
  }

  function clear(): void {
    text.value = "";
    flush();
  }

  // The search changed elsewhere: show it, unless the CM is typing the next one.
  watch(options.applied, (applied) => {
    if (!pending.value && term.value !== applied) text.value = applied;
  });
  onScopeDispose(cancel);

  return { text, term, pending, tooShort, input, clear, flush };
}
