import { defineStore } from "pinia";
import { computed, ref } from "vue";
import { api, authApi, isApiError, type Agent, type Session } from "@/api";

export type AuthStatus = "unknown" | "anonymous" | "authenticated";

export const useAuthStore = defineStore("auth", () => {
  const agent = ref<Agent | null>(null);
  const status = ref<AuthStatus>("unknown");
  let pendingCheck: Promise<boolean> | null = null;

  const isAuthenticated = computed(() => status.value === "authenticated");

  function startSession(session: Session): void {
    agent.value = session.agent;
    api.setCsrfToken(session.csrf_token);
    status.value = "authenticated";
  }

  /** Forget the session locally (after sign-out, or when the server says it has ended). */
  function clear(): void {
    agent.value = null;
    api.setCsrfToken(null);
    status.value = "anonymous";
  }

  async function login(email: string, password: string): Promise<void> {
    startSession(await authApi.login(email, password));
  }

  /** Asks the server whether the session cookie is still valid; concurrent calls share one request. */
  function check(): Promise<boolean> {
    pendingCheck ??= authApi
      .me()
      .then((session) => {
        startSession(session);
        return true;
      })
      .catch((error: unknown) => {
        if (isApiError(error) && error.status === 401) {
          clear();
          return false;
        }
        // Network trouble is not a sign-out: keep what we know.
        if (status.value === "unknown") status.value = "anonymous";
        return status.value === "authenticated";
      })
      .finally(() => {
        pendingCheck = null;
      });
    return pendingCheck;
  }

  async function logout(): Promise<void> {
    try {
      await authApi.logout();
    } finally {
      clear();
    }
  }

  return { agent, status, isAuthenticated, login, check, logout, clear, startSession };
});
