import { createPinia, setActivePinia } from "pinia";
import { afterEach, beforeEach, vi, type MockInstance } from "vitest";
import { conversationsApi } from "@/api";
import { useAuthStore } from "@/stores/auth";
import { ME } from "./factories";

export interface StoreSession {
  /** The spy on `conversationsApi.list`, fresh for each test (mock its answers in the test or a later beforeEach). */
  list: MockInstance<typeof conversationsApi.list>;
}

/** For the describe block it is called in: before each test a fresh pinia with ME signed in, fake timers
 * (setTimeout, clearTimeout, Date) and a spy on the conversation list API; after it, real timers and no spies. */
export function storeSession(): StoreSession {
  const session = {} as StoreSession;
  beforeEach(() => {
    setActivePinia(createPinia());
    useAuthStore().startSession({ agent: ME, csrf_token: "t" });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    session.list = vi.spyOn(conversationsApi, "list");
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });
  return session;
}
