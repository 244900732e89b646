import { describe, expect, it } from "vitest";
import type { Message } from "@/api/types";
import { activityText } from "@/composables/activityText";
import { createAppI18n } from "@/i18n";

const fr = createAppI18n("fr").global;
const en = createAppI18n("en").global;

function row(activity: Record<string, unknown> | undefined, text = "English text from the API",
             author: Message["author"] = { type: "agent", id: 1, name: "Camille Martin" }): Message {
  return {
    id: 1, conversation_id: 7, direction: "out", kind: "activity", reply_type: null, text, attachments: [], author,
    platform_time: null, received_at: null, delivery_status: null, delivery_error: null, external_id: null,
    edited: false, deleted: false, hidden: false, liked: false, reply_to_id: null,
    extra: activity ? { activity: { type: "x", ...activity } } : {},
  };
}
const system = { type: "system" as const, id: null, name: null };

describe("activity rows in the agent's language", () => {
  it("writes each kind of row in French from its details", () => {
    const say = (activity: Record<string, unknown>, author?: Message["author"]) =>
      activityText(row(activity, undefined, author), fr.t);
    expect(say({ type: "claimed", agent_id: 3, agent_name: "Camille Martin" }))
      .toBe("Camille Martin a pris en charge la conversation");
    expect(say({ type: "assigned", assignee_id: 3, assignee_name: "Camille Martin", actor_name: "Yanis Benali" }))
      .toBe("Yanis Benali a assigné la conversation à Camille Martin");
    expect(say({ type: "assigned", assignee_id: null, assignee_name: null, actor_name: "Yanis Benali" }))
      .toBe("Yanis Benali a désassigné la conversation");
    expect(say({ type: "assigned", assignee_id: 3, assignee_name: "Camille Martin", by: "policy",
                 mode: "round_robin" }, system))
      .toBe("Assignée à Camille Martin (attribution automatique : Tour de rôle)");
    expect(say({ type: "assigned", assignee_id: null, by: "policy", reason: "offline",
                 previous_assignee_name: "Camille Martin", minutes: 15 }, system))
      .toBe("Désassignée : Camille Martin est hors ligne depuis plus de 15 min");
    expect(say({ type: "status", from: "open", to: "resolved", actor_name: "Camille Martin" }))
      .toBe("Camille Martin a passé la conversation en « Résolue »");
    expect(say({ type: "status", from: "snoozed", to: "open" }, system))
      .toBe("Fin de la pause : la conversation est rouverte");
    expect(say({ type: "handoff", actor_name: "Camille Martin", to_team_name: "SAV", from_team_name: "Community" }))
      .toBe("Camille Martin a transféré la conversation à SAV (depuis Community)");
    expect(say({ type: "handoff", actor_name: "Camille Martin", to_team_name: "SAV", from_team_name: null }))
      .toBe("Camille Martin a transféré la conversation à SAV");
    expect(say({ type: "linked", conversation_id: 12, actor_name: "Camille Martin" }))
      .toBe("Camille Martin a lié cette conversation à la n° 12");
    expect(say({ type: "unlinked", conversation_id: 12, actor_name: "Camille Martin" }))
      .toBe("Camille Martin a délié cette conversation de la n° 12");
    expect(say({ type: "priority", from: "normal", to: "urgent", actor_name: "Camille Martin" }))
      .toBe("Camille Martin a passé la priorité à « Urgente »");
    expect(say({ type: "labels", added: ["vip", "rappel"], removed: ["livraison"], actor_name: "Camille Martin" }))
      .toBe("Camille Martin a modifié les étiquettes : ajout de vip, rappel ; retrait de livraison");
    expect(say({ type: "labels", added: [], removed: ["vip"], actor_name: "Camille Martin" }))
      .toBe("Camille Martin a modifié les étiquettes : retrait de vip");
  });

  it("writes them in English too", () => {
    expect(activityText(row({ type: "status", from: "open", to: "pending", actor_name: "Sam" }), en.t))
      .toBe("Sam set the status to “Pending”");
    expect(activityText(row({ type: "linked", conversation_id: 4, actor_name: "Sam" }), en.t))
      .toBe("Sam linked this conversation to #4");
    expect(activityText(row({ type: "labels", added: ["vip"], removed: ["x"], actor_name: "Sam" }), en.t))
      .toBe("Sam changed the labels: added vip; removed x");
  });

  it("falls back to the row's text when the details cannot write the sentence", () => {
    // rows written before the names were kept, unknown types, unknown statuses or modes, no details at all
    for (const activity of [{ type: "claimed", agent_id: 3 }, { type: "assigned", assignee_id: 3 },
                            { type: "handoff", to_team_id: 2 }, { type: "something new" },
                            { type: "status", to: "archived", actor_name: "Sam" },
                            { type: "assigned", assignee_id: 3, assignee_name: "Sam", by: "policy", mode: "manual" },
                            { type: "status", from: "open", to: "open" },
                            { type: "priority", to: "critical", actor_name: "Sam" },
                            { type: "labels", added: [], removed: [], actor_name: "Sam" }, undefined]) {
      expect(activityText(row(activity), fr.t)).toBe("English text from the API");
    }
  });

  it("never interprets a name as markup or as a message format", () => {
    expect(activityText(row({ type: "claimed", agent_name: "{actor} <b>@x</b> | y" }), fr.t))
      .toBe("{actor} <b>@x</b> | y a pris en charge la conversation");
  });
});
