import { defineStore } from "pinia";
import { computed, ref } from "vue";
import { webhookEventsApi, WEBHOOK_ALERT_STATUSES, type WebhookEventStatus } from "@/api";

/** The API has no count route: each alert status is read with a small page, "N+" beyond it. */
export const ALERT_PAGE = 20;

/** How many inbound webhooks need an admin's eye (unroutable, failed, dead): the badge on the Webhooks tab. */
export const useWebhookAlertsStore = defineStore("webhookAlerts", () => {
  const counts = ref<Partial<Record<WebhookEventStatus, number>>>({});
  const more = ref(false);
  const loaded = ref(false);
  let pending: Promise<void> | null = null;

  const total = computed(() => Object.values(counts.value).reduce((sum, n) => sum + (n ?? 0), 0));
  const label = computed(() => (more.value ? `${total.value}+` : String(total.value)));

  function refresh(): Promise<void> {
    pending ??= Promise.allSettled(
      WEBHOOK_ALERT_STATUSES.map((status) => webhookEventsApi.list({ status, limit: ALERT_PAGE }).then((page) => ({ status, page }))),
    )
      .then((results) => {
        const next: Partial<Record<WebhookEventStatus, number>> = {};
        let beyond = false;
        for (const result of results) {
          if (result.status !== "fulfilled") continue;
          next[result.value.status] = result.value.page.items.length;
          if (result.value.page.next_cursor) beyond = true;
        }
        counts.value = next;
        more.value = beyond;
        loaded.value = true;
      })
      .finally(() => {
        pending = null;
      });
    return pending;
  }

  return { counts, more, loaded, total, label, refresh };
});
