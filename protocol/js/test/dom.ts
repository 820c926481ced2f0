/**
 * Just enough of a DOM to run `bindTextarea` in Node: a textarea with value, selection,
 * `readOnly` and listeners, and a `document` with `activeElement` and listeners. Events are
 * plain objects handed to the listeners; `preventDefault` is recorded.
 */

/** An event the fake dispatches. */
export interface FakeEvent {
  type: string;
  key?: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  shiftKey?: boolean;
  altKey?: boolean;
  inputType?: string;
  isComposing?: boolean;
  defaultPrevented: boolean;
  preventDefault(): void;
}

/** Makes an event of `type` with `fields`. */
export function event(type: string, fields: Partial<FakeEvent> = {}): FakeEvent {
  return {
    type,
    defaultPrevented: false,
    preventDefault() {
      this.defaultPrevented = true;
    },
    ...fields,
  };
}

/** A fake `<textarea>`. */
export class FakeTextarea {
  value = '';
  selectionStart = 0;
  selectionEnd = 0;
  selectionDirection: 'forward' | 'backward' | 'none' = 'forward';
  readOnly = false;
  scrollTop = 0;
  private listeners = new Map<string, Set<(e: FakeEvent) => void>>();

  addEventListener(type: string, f: (e: FakeEvent) => void): void {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(f);
  }

  removeEventListener(type: string, f: (e: FakeEvent) => void): void {
    this.listeners.get(type)?.delete(f);
  }

  setSelectionRange(start: number, end: number): void {
    this.selectionStart = start;
    this.selectionEnd = end;
  }

  /** Dispatches `e` to the listeners; returns it. */
  dispatch(e: FakeEvent): FakeEvent {
    for (const f of this.listeners.get(e.type) ?? []) f(e);
    return e;
  }

  /** Types `s` at the caret as the browser would: new value, caret after, one input event. */
  type(s: string): void {
    const v = this.value;
    this.value = v.slice(0, this.selectionStart) + s + v.slice(this.selectionEnd);
    this.selectionStart = this.selectionEnd = this.selectionStart + s.length;
    this.dispatch(event('input'));
  }
}

/** Installs a global `document` whose active element is `focused`; returns the uninstaller. */
export function installDocument(focused: FakeTextarea | null): () => void {
  const g = globalThis as unknown as { document?: unknown };
  const before = g.document;
  g.document = {
    activeElement: focused,
    addEventListener() {},
    removeEventListener() {},
  };
  return () => {
    g.document = before;
  };
}

/** The fake as the binding's parameter type. */
export const asTextarea = (t: FakeTextarea) => t as unknown as HTMLTextAreaElement;
