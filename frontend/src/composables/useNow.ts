import { onScopeDispose, ref, type Ref } from "vue";

const now = ref(Date.now());
let subscribers = 0;
let timer: ReturnType<typeof setInterval> | null = null;

/**
 * One shared clock for every "waiting for" label, ticking every 15 s (SLA countdowns) (all rows re-render together,
 * once). The clock stops when nothing on screen uses it.
 */
export function useNow(intervalMs = 15_000): Readonly<Ref<number>> {
  subscribers++;
  if (!timer) {
    now.value = Date.now();
    timer = setInterval(() => {
      now.value = Date.now();
    }, intervalMs);
  }
  onScopeDispose(() => {
    subscribers--;
    if (subscribers === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  });
  return now;
}
