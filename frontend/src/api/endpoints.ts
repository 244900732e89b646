import { api, type ApiClient } from "./client";
import type {
  Conversation,
  ConversationPage,
  ConversationPatch,
  ConversationQuery,
  Id,
  Message,
  ModerationAction,
  NewMessage,
  Page,
  Session,
} from "./types";

const seg = (id: Id) => encodeURIComponent(String(id));

/** Typed REST endpoints; every function takes the client last so tests can pass their own. */
export const authApi = {
  login: (email: string, password: string, client: ApiClient = api) =>
    client.post<Session>("/auth/login", { email, password }),
  me: (client: ApiClient = api) => client.get<Session>("/auth/me"),
  logout: (client: ApiClient = api) => client.post<unknown>("/auth/logout"),
};

export const conversationsApi = {
  list: (query: ConversationQuery, signal?: AbortSignal, client: ApiClient = api) =>
    client.get<ConversationPage>("/conversations", { query, signal }),
  get: (id: Id, client: ApiClient = api) => client.get<Conversation>(`/conversations/${seg(id)}`),
  update: (id: Id, patch: ConversationPatch, client: ApiClient = api) =>
    client.patch<Conversation>(`/conversations/${seg(id)}`, patch),
  claim: (id: Id, client: ApiClient = api) => client.post<Conversation>(`/conversations/${seg(id)}/claim`),
};

export const messagesApi = {
  list: (conversationId: Id, cursor: string | null, limit = 50, client: ApiClient = api) =>
    client.get<Page<Message>>(`/conversations/${seg(conversationId)}/messages`, {
      query: { limit, cursor },
    }),
  send: (conversationId: Id, message: NewMessage, client: ApiClient = api) =>
    client.post<Message>(`/conversations/${seg(conversationId)}/messages`, message),
  moderate: (messageId: Id, action: ModerationAction, client: ApiClient = api) =>
    client.post<Message>(`/messages/${seg(messageId)}/moderate`, { action }),
};
