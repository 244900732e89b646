import { CONVERSATION_STATUSES, PRIORITIES, type Message } from "@/api/types";

type Translate = (key: string, named?: Record<string, unknown>) => string;

function name(value: unknown): string | null {
  return typeof value === "string" && value.trim() !== "" ? value : null;
}

/** The sentence of an activity row in the agent's language, written from its `extra.activity` details (type and
 * names); the row's own `text` (English, as the API gives it) when the details are of an unknown type or lack a
 * name the sentence needs (rows written before the names were kept). */
export function activityText(message: Message, t: Translate): string {
  const a = message.extra?.activity;
  const fallback = message.text ?? "";
  if (!a) return fallback;
  const actor = name(a.actor_name);
  switch (a.type) {
    case "claimed": {
      const agent = name(a.agent_name);
      return agent ? t("activity.claimed", { agent }) : fallback;
    }
    case "assigned": {
      if (a.by === "policy") {
        if (a.reason === "offline") {
          const previous = name(a.previous_assignee_name);
          return previous && typeof a.minutes === "number"
            ? t("activity.unassignedOffline", { agent: previous, minutes: a.minutes }) : fallback;
        }
        const assignee = name(a.assignee_name);
        const mode = typeof a.mode === "string" ? a.mode : "";
        return assignee && ["round_robin", "least_loaded"].includes(mode)
          ? t("activity.autoAssigned", { agent: assignee, mode: t(`settings.assignment.modes.${mode}`) }) : fallback;
      }
      if (!actor) return fallback;
      if (a.assignee_id === null || a.assignee_id === undefined) return t("activity.unassigned", { actor });
      const assignee = name(a.assignee_name);
      return assignee ? t("activity.assigned", { actor, agent: assignee }) : fallback;
    }
    case "status": {
      const to = typeof a.to === "string" ? a.to : "";
      if (!(CONVERSATION_STATUSES as readonly string[]).includes(to)) return fallback;
      if (actor) return t("activity.status", { actor, status: t(`status.${to}`) });
      return a.from === "snoozed" && to === "open" && message.author.type === "system"
        ? t("activity.snoozeEnded") : fallback;
    }
    case "handoff": {
      const team = name(a.to_team_name);
      if (!actor || !team) return fallback;
      const from = name(a.from_team_name);
      return from ? t("activity.handoffFrom", { actor, team, from }) : t("activity.handoff", { actor, team });
    }
    case "priority": {
      const to = typeof a.to === "string" ? a.to : "";
      return actor && (PRIORITIES as readonly string[]).includes(to)
        ? t("activity.priority", { actor, priority: t(`priority.${to}`) }) : fallback;
    }
    case "labels": {
      const list = (value: unknown) => (Array.isArray(value) ? value.filter((v) => typeof v === "string") : []);
      const added = list(a.added);
      const removed = list(a.removed);
      if (!actor || added.length + removed.length === 0) return fallback;
      const parts = [
        ...(added.length ? [t("activity.labelsAdded", { labels: added.join(", ") })] : []),
        ...(removed.length ? [t("activity.labelsRemoved", { labels: removed.join(", ") })] : []),
      ];
      return t("activity.labels", { actor, changes: parts.join(t("activity.labelsSeparator")) });
    }
    case "linked":
    case "unlinked":
      return actor && typeof a.conversation_id === "number"
        ? t(`activity.${a.type}`, { actor, id: a.conversation_id }) : fallback;
    default:
      return fallback;
  }
}
