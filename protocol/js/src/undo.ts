/**
 * The undo manager: undo and redo of the local user's own edits in a shared document.
 *
 * Each local edit is recorded as its inverse (computed from the text before it). Remote ops
 * move every recorded entry (both stacks are transformed through each remote op, the way a
 * pending op is), so an undo after someone else's change still removes exactly the user's own
 * edit, where it now is, and never touches the other people's text. Consecutive edits within
 * `groupMs` of each other form one step (typing a word is undone at once).
 *
 * Invariants:
 * - `undo[i]` applies to the text the document would have after `undo[i+1..]` were applied to
 *   the current local text (the top entry applies to the current local text); the same holds
 *   for `redo`.
 * - An entry that remote ops reduced to nothing (others deleted the text it would remove) is
 *   skipped, never counted as a step.
 * - A new local edit (not an undo or redo) clears the redo stack.
 */
import { compose, invert, isNoop, normalize, transform, type TextOp } from './ot.js';

/** Default window that groups consecutive edits into one undo step. */
export const DEFAULT_UNDO_GROUP_MS = 500;
/** Default number of undo steps kept. */
export const DEFAULT_UNDO_LIMIT = 500;

/** See the module documentation. */
export class UndoManager {
  private undoStack: TextOp[] = [];
  private redoStack: TextOp[] = [];
  private lastAt = -Infinity;

  constructor(
    private readonly groupMs = DEFAULT_UNDO_GROUP_MS,
    private readonly limit = DEFAULT_UNDO_LIMIT,
  ) {}

  /** True when there is a step to undo. */
  get canUndo(): boolean {
    return this.undoStack.some((op) => !isNoop(op));
  }

  /** True when there is a step to redo. */
  get canRedo(): boolean {
    return this.redoStack.some((op) => !isNoop(op));
  }

  /** A local edit `op` of `before` (the text before it), made at time `now`. */
  record(op: TextOp, before: string, now = Date.now()): void {
    const inverse = invert(op, before);
    if (isNoop(inverse)) return;
    const top = this.undoStack.length - 1;
    if (top >= 0 && now - this.lastAt <= this.groupMs) {
      this.undoStack[top] = normalize(compose(inverse, this.undoStack[top]));
    } else {
      this.undoStack.push(inverse);
      if (this.undoStack.length > this.limit) this.undoStack.shift();
    }
    this.lastAt = now;
    this.redoStack = [];
  }

  /** Ends the current group: the next edit starts a new undo step. */
  breakGroup(): void {
    this.lastAt = -Infinity;
  }

  /** Takes the op that undoes the last step of `text` (the current local text), and records
   * its inverse for redo; `null` when there is nothing to undo. Apply the op as a local edit. */
  undo(text: string): TextOp | null {
    return this.take(this.undoStack, this.redoStack, text);
  }

  /** Takes the op that redoes the last undone step of `text`, recording its inverse for undo;
   * `null` when there is nothing to redo. */
  redo(text: string): TextOp | null {
    return this.take(this.redoStack, this.undoStack, text);
  }

  /** Moves every entry through a remote op (in local coordinates: it applies to the current
   * local text). */
  transform(remote: TextOp): void {
    this.undoStack = moveStack(this.undoStack, remote);
    this.redoStack = moveStack(this.redoStack, remote);
  }

  /** Forgets everything (the text was replaced by a snapshot). */
  clear(): void {
    this.undoStack = [];
    this.redoStack = [];
    this.breakGroup();
  }

  private take(from: TextOp[], to: TextOp[], text: string): TextOp | null {
    this.breakGroup();
    for (;;) {
      const op = from.pop();
      if (op === undefined) return null;
      if (isNoop(op)) continue;
      to.push(invert(op, text));
      if (to.length > this.limit) to.shift();
      return op;
    }
  }
}

/** A stack transformed through `remote` (top first: each entry applies after those above it). */
function moveStack(stack: TextOp[], remote: TextOp): TextOp[] {
  const out = stack.slice();
  let r = remote;
  for (let i = out.length - 1; i >= 0; i--) {
    const entry = out[i];
    out[i] = transform(entry, r, 'left');
    r = transform(r, entry, 'right');
  }
  return out;
}
