import type { ContactRef, Conversation, Id, IsoDateTime, Message } from "@/api/types";

/** Every server event arrives wrapped with its sequence number. */
export interface Envelope<T> {
  seq: number;
  data: T;
}

export interface SlaAlert {
  conversation_id: Id;
  metric: string;
  due_at: IsoDateTime;
}

export interface ServerEvents {
  "conversation.created": Conversation;
  "conversation.updated": Conversation;
  /** A contact's name or picture was looked up: how its conversations show it, nothing else about them. */
  "contact.updated": ContactRef;
  "message.created": Message;
  "message.updated": Message;
  "sla.warning": SlaAlert;
  "sla.breached": SlaAlert;
}

export type ServerEventName = keyof ServerEvents;

export const SERVER_EVENTS: readonly ServerEventName[] = [
  "conversation.created",
  "conversation.updated",
  "contact.updated",
  "message.created",
  "message.updated",
  "sla.warning",
  "sla.breached",
];

/** One applied event, discriminated by name so a `switch` narrows its data. */
export type ServerEvent = {
  [E in ServerEventName]: { event: E; data: ServerEvents[E]; seq: number };
}[ServerEventName];
