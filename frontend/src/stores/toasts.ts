import { defineStore } from "pinia";
import { shallowRef } from "vue";
import type { Composer } from "vue-i18n";
import type { Id } from "@/api/types";

export type ToastTone = "info" | "success" | "warning" | "error";

/** Text written when shown, so a toast follows a language switch. */
export type ToastText = string | ((i18n: Pick<Composer, "t" | "d" | "n" | "te">) => string);

export interface Toast {
  id: number;
  tone: ToastTone;
  text: ToastText;
  conversationId: Id | null;
}

export interface ToastInput {
  tone?: ToastTone;
  text: ToastText;
  conversationId?: Id | null;
  /** Milliseconds before it goes away by itself; 0 keeps it until dismissed. */
  timeoutMs?: number;
}

const MAX_TOASTS = 5;

export const useToastStore = defineStore("toasts", () => {
  const toasts = shallowRef<Toast[]>([]);
  let nextId = 1;

  function push(input: ToastInput): number {
    const toast: Toast = {
      id: nextId++,
      tone: input.tone ?? "info",
      text: input.text,
      conversationId: input.conversationId ?? null,
    };
    toasts.value = [...toasts.value, toast].slice(-MAX_TOASTS);
    const timeout = input.timeoutMs ?? 8000;
    if (timeout > 0) setTimeout(() => dismiss(toast.id), timeout);
    return toast.id;
  }

  function dismiss(id: number): void {
    toasts.value = toasts.value.filter((toast) => toast.id !== id);
  }

  function clear(): void {
    toasts.value = [];
  }

  return { toasts, push, dismiss, clear };
});
