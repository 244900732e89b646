/** Whether a key pressed in `target` is typing (a field, a text area, an editable element), not a shortcut. */
export function isEditableTarget(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

/**
 * Whether a modal dialog is open. The page behind a modal is out of reach, and so are its shortcuts, wherever the
 * focus is: in a field or on a button of the dialog, or on the page's body after a click on the dialog's text. A
 * modal says it is one with aria-modal="true" (which screen readers need anyway) and leaves the DOM when it closes
 * (v-if, not v-show); a panel beside the page, which leaves the page usable, says aria-modal="false".
 */
export function isModalOpen(): boolean {
  return typeof document !== "undefined" && document.querySelector("[aria-modal='true']") !== null;
}

/**
 * A plain key press (no Ctrl, Cmd or Alt) outside any text field, nobody else having handled it, and no modal
 * dialog open: every global shortcut goes through here. A dialog handles its own keys (Escape) on its element,
 * before the window's listeners, and marks them handled (preventDefault).
 */
export function isShortcut(event: KeyboardEvent): boolean {
  return (
    !event.defaultPrevented &&
    !event.ctrlKey &&
    !event.metaKey &&
    !event.altKey &&
    !isEditableTarget(event.target) &&
    !isModalOpen()
  );
}
