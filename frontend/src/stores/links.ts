import { defineStore } from "pinia";
import { ref } from "vue";
import { conversationsApi, isApiError, type ApiError, type Conversation, type Id } from "@/api";
import { sameId } from "./conversationView";
import { useConversationStore } from "./conversations";

/** The conversations linked to the open one (same matter on several channels or threads). */
export const useLinksStore = defineStore("links", () => {
  const conversationId = ref<string | null>(null);
  const items = ref<Conversation[]>([]);
  const loading = ref(false);
  const error = ref<ApiError | null>(null);
  let token = 0;

  async function load(id: Id, fallbackIds: Id[] = []): Promise<void> {
    const mine = ++token;
    if (conversationId.value !== String(id)) items.value = [];
    conversationId.value = String(id);
    loading.value = true;
    error.value = null;
    try {
      const found = await conversationsApi.links(id);
      if (mine === token) items.value = found;
    } catch (cause) {
      if (mine !== token) return;
      if (!isApiError(cause)) throw cause;
      error.value = cause;
      // Without the links route, what the conversation JSON says is still worth showing.
      const conversations = useConversationStore();
      items.value = fallbackIds.map((other) => conversations.get(other)).filter((c): c is Conversation => c !== null);
    } finally {
      if (mine === token) loading.value = false;
    }
  }

  async function link(id: Id, otherId: Id): Promise<void> {
    await conversationsApi.link(id, otherId);
    await load(id);
  }

  async function unlink(id: Id, otherId: Id): Promise<void> {
    await conversationsApi.unlink(id, otherId);
    items.value = items.value.filter((c) => !sameId(c.id, otherId));
  }

  function clear(): void {
    token++;
    conversationId.value = null;
    items.value = [];
    error.value = null;
    loading.value = false;
  }

  return { conversationId, items, loading, error, load, link, unlink, clear };
});
