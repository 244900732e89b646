import { api, type ApiClient } from "./client";
import type {
  AdminAgent,
  AgentBrief,
  AgentCreated,
  AgentInput,
  AgentPatch,
  AgentRouting,
  BrandRouting,
  Channel,
  ChannelCreated,
  ChannelCreateInput,
  ChannelPatch,
  TeamInput,
  WebhookEvent,
  WebhookEventQuery,
  AssignmentPolicy,
  Availability,
  Brand,
  BusinessCalendar,
  CalendarInput,
  CannedReply,
  CannedReplyInput,
  Agent,
  Conversation,
  ConversationPage,
  ConversationPatch,
  ConversationQuery,
  Id,
  Message,
  ModerationAction,
  NewMessage,
  Page,
  RenderedReply,
  Session,
  SlaEvent,
  SlaPolicy,
  SlaPolicyInput,
  Team,
} from "./types";

const seg = (id: Id) => encodeURIComponent(String(id));

/** Typed REST endpoints; every function takes the client last so tests can pass their own. */
export const authApi = {
  login: (email: string, password: string, client: ApiClient = api) =>
    client.post<Session>("/auth/login", { email, password }),
  me: (client: ApiClient = api) => client.get<Session>("/auth/me"),
  logout: (client: ApiClient = api) => client.post<unknown>("/auth/logout"),
  updateMe: (patch: { availability?: Availability }, client: ApiClient = api) =>
    client.patch<Agent>("/auth/me", patch),
};

export const conversationsApi = {
  list: (query: ConversationQuery, signal?: AbortSignal, client: ApiClient = api) =>
    client.get<ConversationPage>("/conversations", { query, signal }),
  get: (id: Id, client: ApiClient = api) => client.get<Conversation>(`/conversations/${seg(id)}`),
  update: (id: Id, patch: ConversationPatch, client: ApiClient = api) =>
    client.patch<Conversation>(`/conversations/${seg(id)}`, patch),
  claim: (id: Id, client: ApiClient = api) => client.post<Conversation>(`/conversations/${seg(id)}/claim`),
  slaEvents: (id: Id, client: ApiClient = api) => client.get<SlaEvent[]>(`/conversations/${seg(id)}/sla-events`),
  handoff: (id: Id, body: { team_id: number; note: string }, client: ApiClient = api) =>
    client.post<Conversation>(`/conversations/${seg(id)}/handoff`, body),
  links: async (id: Id, client: ApiClient = api): Promise<Conversation[]> =>
    asItems<Conversation>(await client.get<unknown>(`/conversations/${seg(id)}/links`)),
  link: (id: Id, otherId: Id, client: ApiClient = api) =>
    client.post<unknown>(`/conversations/${seg(id)}/links`, { conversation_id: Number(otherId) }),
  unlink: (id: Id, otherId: Id, client: ApiClient = api) =>
    client.delete<unknown>(`/conversations/${seg(id)}/links/${seg(otherId)}`),
  resolve: (id: Id, resolveLinked: boolean, client: ApiClient = api) =>
    client.post<Conversation>(`/conversations/${seg(id)}/resolve`, { resolve_linked: resolveLinked }),
};

export const contactsApi = {
  conversations: async (contactId: Id, client: ApiClient = api): Promise<Conversation[]> =>
    asItems<Conversation>(await client.get<unknown>(`/contacts/${seg(contactId)}/conversations`, { query: { limit: 50 } })),
};

export const cannedApi = {
  search: (
    query: { q?: string; conversation_id?: Id; limit?: number; archived?: boolean },
    signal?: AbortSignal,
    client: ApiClient = api,
  ) =>
    client.get<CannedReply[]>("/canned-replies", {
      query: { q: query.q, conversation_id: query.conversation_id, limit: query.limit, archived: query.archived },
      signal,
    }),
  create: (body: CannedReplyInput, client: ApiClient = api) => client.post<CannedReply>("/canned-replies", body),
  update: (id: Id, body: Partial<CannedReplyInput>, client: ApiClient = api) =>
    client.patch<CannedReply>(`/canned-replies/${seg(id)}`, body),
  remove: (id: Id, client: ApiClient = api) => client.delete<null>(`/canned-replies/${seg(id)}`),
  render: (id: Id, conversationId: Id, client: ApiClient = api) =>
    client.post<RenderedReply>(`/canned-replies/${seg(id)}/render`, { conversation_id: Number(conversationId) }),
};

export const calendarsApi = {
  list: (client: ApiClient = api) => client.get<BusinessCalendar[]>("/calendars"),
  create: (body: CalendarInput, client: ApiClient = api) => client.post<BusinessCalendar>("/calendars", body),
  update: (id: Id, body: Partial<CalendarInput>, client: ApiClient = api) =>
    client.patch<BusinessCalendar>(`/calendars/${seg(id)}`, body),
  /** The backend takes text/calendar or JSON `{"ics": "..."}`; the client speaks JSON. */
  importHolidays: (id: Id, ics: string, client: ApiClient = api) =>
    client.post<BusinessCalendar & { imported: number }>(`/calendars/${seg(id)}/holidays/import`, { ics }),
};

export const slaPoliciesApi = {
  list: (client: ApiClient = api) => client.get<SlaPolicy[]>("/sla-policies"),
  create: (body: SlaPolicyInput, client: ApiClient = api) => client.post<SlaPolicy>("/sla-policies", body),
  update: (id: Id, body: Partial<SlaPolicyInput>, client: ApiClient = api) =>
    client.patch<SlaPolicy>(`/sla-policies/${seg(id)}`, body),
  remove: (id: Id, client: ApiClient = api) => client.delete<null>(`/sla-policies/${seg(id)}`),
};

export const assignmentApi = {
  get: (teamId: Id, client: ApiClient = api) => client.get<AssignmentPolicy>(`/teams/${seg(teamId)}/assignment-policy`),
  put: (teamId: Id, body: AssignmentPolicy, client: ApiClient = api) =>
    client.request<AssignmentPolicy>("PUT", `/teams/${seg(teamId)}/assignment-policy`, { body }),
};

export const directoryApi = {
  teams: (client: ApiClient = api) => client.get<Team[]>("/teams"),
  /** Teams serving the conversation's brand: where an agent may hand it over. */
  handoffTargets: (conversationId: Id, client: ApiClient = api) =>
    client.get<Team[]>(`/conversations/${seg(conversationId)}/handoff-targets`),
  brands: (client: ApiClient = api) => client.get<Brand[]>("/brands"),
  agents: (client: ApiClient = api) => client.get<AgentBrief[]>("/agents"),
};

/** Lists come bare (`[...]`) or paged (`{items}`); both read the same. */
function asItems<T>(payload: unknown): T[] {
  if (Array.isArray(payload)) return payload as T[];
  if (payload && typeof payload === "object" && Array.isArray((payload as { items?: unknown }).items)) {
    return (payload as { items: T[] }).items;
  }
  return [];
}

export const messagesApi = {
  list: (conversationId: Id, cursor: string | null, limit = 50, client: ApiClient = api) =>
    client.get<Page<Message>>(`/conversations/${seg(conversationId)}/messages`, {
      query: { limit, cursor },
    }),
  send: (conversationId: Id, message: NewMessage, client: ApiClient = api) =>
    client.post<Message>(`/conversations/${seg(conversationId)}/messages`, message),
  moderate: (messageId: Id, action: ModerationAction, client: ApiClient = api) =>
    client.post<Message>(`/messages/${seg(messageId)}/moderate`, { action }),
  /** A failed (or unknown) reply queued again for sending (409 when it is not failed or unknown any more). */
  retry: (messageId: Id, client: ApiClient = api) => client.post<Message>(`/messages/${seg(messageId)}/retry`),
};

// ---------- administration (admins; supervisors read their teams and agents) ----------

export const brandsApi = {
  list: (client: ApiClient = api) => client.get<Brand[]>("/brands"),
  create: (body: { name: string }, client: ApiClient = api) => client.post<Brand>("/brands", body),
  update: (id: Id, body: { name: string }, client: ApiClient = api) => client.patch<Brand>(`/brands/${seg(id)}`, body),
  routing: (id: Id, client: ApiClient = api) => client.get<BrandRouting>(`/brands/${seg(id)}/routing`),
  setRouting: (id: Id, defaultTeamId: number | null, client: ApiClient = api) =>
    client.request<BrandRouting>("PUT", `/brands/${seg(id)}/routing`, { body: { default_team_id: defaultTeamId } }),
};

export const channelsApi = {
  /** Credentials come masked; the clear ones only ever in `create` / `rotateSecret` answers. */
  list: (client: ApiClient = api) => client.get<Channel[]>("/channels"),
  create: (body: ChannelCreateInput, client: ApiClient = api) => client.post<ChannelCreated>("/channels", body),
  update: (id: Id, body: ChannelPatch, client: ApiClient = api) => client.patch<Channel>(`/channels/${seg(id)}`, body),
  /** API channels only: a new webhook signing secret, in clear in this answer alone. */
  rotateSecret: (id: Id, client: ApiClient = api) => client.post<ChannelCreated>(`/channels/${seg(id)}/rotate-secret`),
};

export const teamsApi = {
  list: (client: ApiClient = api) => client.get<Team[]>("/teams"),
  create: (body: TeamInput, client: ApiClient = api) => client.post<Team>("/teams", body),
  update: (id: Id, body: Partial<TeamInput>, client: ApiClient = api) => client.patch<Team>(`/teams/${seg(id)}`, body),
  remove: (id: Id, client: ApiClient = api) => client.delete<null>(`/teams/${seg(id)}`),
};

export const agentsApi = {
  list: (client: ApiClient = api) => client.get<AdminAgent[]>("/agents"),
  create: (body: AgentInput, client: ApiClient = api) => client.post<AgentCreated>("/agents", body),
  update: (id: Id, body: AgentPatch, client: ApiClient = api) => client.patch<AdminAgent>(`/agents/${seg(id)}`, body),
  routing: (id: Id, client: ApiClient = api) => client.get<AgentRouting>(`/agents/${seg(id)}/routing`),
  setRouting: (id: Id, languages: string[], client: ApiClient = api) =>
    client.request<AgentRouting>("PUT", `/agents/${seg(id)}/routing`, { body: { languages } }),
};

export const webhookEventsApi = {
  list: (query: WebhookEventQuery, signal?: AbortSignal, client: ApiClient = api) =>
    client.get<Page<WebhookEvent>>("/webhook-events", { query, signal }),
  get: (id: Id, client: ApiClient = api) => client.get<WebhookEvent>(`/webhook-events/${seg(id)}`),
  /** Back to pending for another processing run (valid signatures only; 409 otherwise). */
  replay: (id: Id, client: ApiClient = api) => client.post<WebhookEvent>(`/webhook-events/${seg(id)}/replay`),
};
