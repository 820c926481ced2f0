/**
 * A `<textarea>` bound to a `CoeditClient`: each input event becomes one op (the difference
 * between the old and new value, placed at the caret), remote changes are applied to the value
 * with the local caret and selection moved through them, and the selection is published as
 * presence. Undo and redo (Ctrl/Cmd+Z, Ctrl+Shift+Z, Ctrl+Y, and the browser's own
 * `historyUndo`/`historyRedo` input events) go to the client's undo manager, which undoes only
 * the user's own edits; the browser's undo is prevented (it knows nothing of remote changes).
 *
 * Invariants:
 * - Positions sent to the client are Unicode scalar values; the textarea counts UTF-16 units.
 *   A diff never splits a surrogate pair, so emoji and other astral characters stay whole.
 * - After a change the textarea shows exactly `client.text`; a caret that was after a remote
 *   change stays after it (before it if the remote insert is at the caret); after an undo or
 *   redo it is placed at the end of what changed.
 * - Text an input method is still composing is not sent; the composed result is one op.
 * - The textarea is `readOnly` while the client's role cannot write (viewer, commenter).
 */
import type { CoeditClient } from './client.js';
import { changeEnd, transform, transformPosition, type TextOp } from './ot.js';
import { isHighSurrogate, isLowSurrogate, uniLength, uniToUtf16, utf16ToUni } from './unicode.js';

/**
 * The op turning `before` into `after` (both whole texts), as one replaced range. `caret` (a
 * UTF-16 offset in `after`, usually the caret after the edit) places the change where several
 * ranges would do, e.g. typing "a" into "aa". Returns `[]` when nothing changed.
 */
export function diffToOp(before: string, after: string, caret = after.length): TextOp {
  if (before === after) return [];
  const maxCommon = Math.min(before.length, after.length);
  // The changed range must reach the caret: limit the common suffix to after the caret.
  let suffix = 0;
  const suffixLimit = Math.min(maxCommon, after.length - Math.min(caret, after.length));
  while (
    suffix < suffixLimit &&
    before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)
  ) {
    suffix++;
  }
  let prefix = 0;
  const prefixLimit = maxCommon - suffix;
  while (prefix < prefixLimit && before.charCodeAt(prefix) === after.charCodeAt(prefix)) {
    prefix++;
  }
  // Never split a surrogate pair: widen the changed range to whole characters.
  if (prefix > 0 && isHighSurrogate(before.charCodeAt(prefix - 1))) prefix--;
  if (suffix > 0 && isLowSurrogate(before.charCodeAt(before.length - suffix))) suffix--;
  const removed = before.slice(prefix, before.length - suffix);
  const inserted = after.slice(prefix, after.length - suffix);
  const op: TextOp = [];
  const at = uniLength(before.slice(0, prefix));
  if (at > 0) op.push(at);
  if (removed.length > 0) op.push({ d: uniLength(removed) });
  if (inserted.length > 0) op.push(inserted);
  return op;
}

/** A selection moved through a remote op: UTF-16 offsets in `before` → offsets in `after`. */
export function moveSelection(
  before: string,
  after: string,
  op: TextOp,
  start: number,
  end: number,
): [number, number] {
  const move = (p: number) => uniToUtf16(after, transformPosition(utf16ToUni(before, p), op));
  return [move(start), move(end)];
}

/** Keys that move the caret (and so end an undo step). */
const NAVIGATION_KEYS = new Set([
  'ArrowLeft',
  'ArrowRight',
  'ArrowUp',
  'ArrowDown',
  'Home',
  'End',
  'PageUp',
  'PageDown',
]);

/** What [`bindTextarea`] returns. */
export interface Binding {
  /** Detaches every listener. */
  unbind(): void;
}

/** Binds `textarea` to `client` (see the module documentation). */
export function bindTextarea(textarea: HTMLTextAreaElement, client: CoeditClient): Binding {
  let shown = client.text;
  textarea.value = shown;

  const publishSelection = () => {
    const v = textarea.value;
    const a = utf16ToUni(v, textarea.selectionStart);
    const b = utf16ToUni(v, textarea.selectionEnd);
    const [anchor, head] = textarea.selectionDirection === 'backward' ? [b, a] : [a, b];
    client.setSelection([[anchor, head]]);
  };

  let composing = false;
  /** True while the binding submits its own edit (its change event is already shown). */
  let submitting = false;
  const submit = (op: TextOp): boolean => {
    submitting = true;
    try {
      return client.submit(op);
    } finally {
      submitting = false;
    }
  };
  /** Sends what the textarea shows beyond `shown` as one op. */
  const sync = () => {
    const value = textarea.value;
    const op = diffToOp(shown, value, textarea.selectionEnd);
    shown = value;
    if (op.length > 0 && !submit(op) && client.text !== value) {
      // Refused (read-only): show the document as it is.
      const caret = Math.min(textarea.selectionStart, client.text.length);
      shown = textarea.value = client.text;
      textarea.setSelectionRange(caret, caret);
    }
    publishSelection();
  };
  // While an input method composes (pinyin, for example), the text is provisional: it
  // becomes an op when the composition ends (or when a remote change must be shown).
  const onInput = (e?: Event) => {
    if (!composing && !(e as InputEvent | undefined)?.isComposing) sync();
  };

  const offChange = client.on('change', ({ op, text, local }) => {
    if (local && submitting) return; // typed here: already shown
    if (local) {
      // An undo, a redo, or an edit the application submitted: show it, caret at its end.
      textarea.value = shown = text;
      const at = uniToUtf16(text, changeEnd(op));
      if (typeof document !== 'undefined' && document.activeElement === textarea) {
        textarea.setSelectionRange(at, at);
        publishSelection();
      }
      return;
    }
    if (composing && textarea.value !== shown) {
      // A remote change lands while an input method composes: keep the provisional text by
      // sending it now (as if composed before the remote op, like any pending op), and show
      // the remote op transformed past it.
      const mine = diffToOp(shown, textarea.value, textarea.selectionEnd);
      submit(transform(mine, op, 'left'));
      op = transform(op, mine, 'right');
      shown = textarea.value;
      text = client.text;
    }
    const { selectionStart, selectionEnd, selectionDirection, scrollTop } = textarea;
    const focused = typeof document !== 'undefined' && document.activeElement === textarea;
    const [start, end] = moveSelection(shown, text, op, selectionStart, selectionEnd);
    shown = text;
    textarea.value = text;
    if (focused) textarea.setSelectionRange(start, end, selectionDirection);
    textarea.scrollTop = scrollTop;
  });

  const setReadOnly = () => {
    textarea.readOnly = !client.canWrite;
  };
  setReadOnly();
  const offAccess = client.on('access', setReadOnly);

  const undoRedo = (redo: boolean) => {
    if (composing) return;
    if (redo) client.redo();
    else client.undo();
  };
  const onKeyDown = (e?: Event) => {
    const k = e as KeyboardEvent;
    // A caret jump ends the undo step: typing elsewhere is undone separately.
    if (NAVIGATION_KEYS.has(k.key)) client.breakUndoGroup();
    if (!(k.ctrlKey || k.metaKey) || k.altKey || composing) return;
    const key = k.key.toLowerCase();
    if (key === 'z' || (key === 'y' && !k.shiftKey && !k.metaKey)) {
      k.preventDefault();
      undoRedo(key === 'y' || k.shiftKey);
    }
  };
  const onBeforeInput = (e?: Event) => {
    const type = (e as InputEvent).inputType;
    if (type === 'historyUndo' || type === 'historyRedo') {
      e!.preventDefault();
      undoRedo(type === 'historyRedo');
    }
  };
  const onMouseDown = () => client.breakUndoGroup();

  const onCompositionStart = () => {
    composing = true;
  };
  const onCompositionEnd = () => {
    composing = false;
    sync();
  };
  const events: [string, (e?: Event) => void][] = [
    ['input', onInput],
    ['keydown', onKeyDown],
    ['beforeinput', onBeforeInput],
    ['mousedown', onMouseDown],
    ['compositionstart', onCompositionStart],
    ['compositionend', onCompositionEnd],
    ['select', publishSelection],
    ['keyup', publishSelection],
    ['mouseup', publishSelection],
    ['focus', publishSelection],
  ];
  for (const [e, f] of events) textarea.addEventListener(e, f);
  const onSelectionChange = () => {
    if (document.activeElement === textarea) publishSelection();
  };
  document.addEventListener('selectionchange', onSelectionChange);
  return {
    unbind() {
      offChange();
      offAccess();
      for (const [e, f] of events) textarea.removeEventListener(e, f);
      document.removeEventListener('selectionchange', onSelectionChange);
    },
  };
}
