/**
 * Backend features the console was written against but which the backend does not offer yet
 * (checked against inbox/api/*.py). Flip a switch when the route lands; the UI follows.
 */
export const capabilities = {
  /** `sort=sla_due` in ConversationListQuerySchema (today: waiting | newest only). */
  slaDueSort: false,
  /** `POST /conversations/<id>/resolve {"resolve_linked"}`; without it the console PATCHes each status. */
  resolveRoute: false,
};
