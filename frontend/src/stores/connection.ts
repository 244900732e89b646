import { defineStore } from "pinia";
import { ref } from "vue";
import type { ConnectionState } from "@/socket/client";

export const useConnectionStore = defineStore("connection", () => {
  const state = ref<ConnectionState>("offline");
  const since = ref<number>(Date.now());

  function set(next: ConnectionState): void {
    if (next === state.value) return;
    state.value = next;
    since.value = Date.now();
  }

  return { state, since, set };
});
