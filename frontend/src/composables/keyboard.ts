/** Whether a key pressed in `target` is typing (a field, a text area, an editable element), not a shortcut. */
export function isEditableTarget(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

/** A plain key press (no Ctrl, Cmd or Alt) outside any text field, nobody else having handled it. */
export function isShortcut(event: KeyboardEvent): boolean {
  return !event.defaultPrevented && !event.ctrlKey && !event.metaKey && !event.altKey && !isEditableTarget(event.target);
}
