/** Unsent composer text per conversation, kept while the page lives. */
export const drafts = new Map<string, string>();
