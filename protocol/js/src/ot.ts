/**
 * Text operations: the `text-unicode` type from ShareDB's `ot-text-unicode` package, the
 * reference implementation of the semantics the coedit server follows, so client and server
 * agree by construction. An op is a list of retains (numbers), inserts (strings) and deletes
 * (`{d: n}`), counted in Unicode scalar values.
 */
import { type as textUnicode } from 'ot-text-unicode';

/** One component: retain, insert or delete. */
export type Component = number | string | { d: number | string };
/** An operation. */
export type TextOp = Component[];

/** Applies `op` to `doc`; throws if it does not fit. */
export function apply(doc: string, op: TextOp): string {
  return textUnicode.apply(doc, op as never);
}

/** `op` transformed so it applies after `other`; `side` breaks ties between inserts at one
 * position (`left`: this op's insert goes first). */
export function transform(op: TextOp, other: TextOp, side: 'left' | 'right'): TextOp {
  return textUnicode.transform(op as never, other as never, side) as TextOp;
}

/** The op equivalent to `a` then `b`. */
export function compose(a: TextOp, b: TextOp): TextOp {
  return textUnicode.compose(a as never, b as never) as TextOp;
}

/** Canonical form. */
export function normalize(op: TextOp): TextOp {
  return textUnicode.normalize(op as never) as TextOp;
}

/** A caret position moved through `op`. */
export function transformPosition(pos: number, op: TextOp): number {
  return textUnicode.transformPosition(pos, op as never);
}

/** True for an op that changes nothing. */
export function isNoop(op: TextOp): boolean {
  return normalize(op).length === 0;
}

/** The op that undoes `op` applied to `doc` (the text before it): its inserts become deletes and
 * its deletes become inserts of the text they removed. Walks `doc` only up to the op's last
 * component (typing near the start of a large document stays cheap). */
export function invert(op: TextOp, doc: string): TextOp {
  const out: TextOp = [];
  let i = 0; // UTF-16 offset in doc
  /** UTF-16 offset `n` scalar values after `from`. */
  const skip = (from: number, n: number) => {
    let j = from;
    for (let k = 0; k < n && j < doc.length; k++) {
      const c = doc.charCodeAt(j);
      j += c >= 0xd800 && c <= 0xdbff && j + 1 < doc.length ? 2 : 1;
    }
    return j;
  };
  for (const c of normalize(op)) {
    if (typeof c === 'number') {
      out.push(c);
      i = skip(i, c);
    } else if (typeof c === 'string') {
      out.push({ d: [...c].length });
    } else {
      const n = typeof c.d === 'number' ? c.d : [...c.d].length;
      const end = skip(i, n);
      out.push(doc.slice(i, end));
      i = end;
    }
  }
  return normalize(out);
}

/** The position just after `op`'s last change, in the text after it (where a caret goes after
 * an undo). */
export function changeEnd(op: TextOp): number {
  let pos = 0;
  let end = 0;
  for (const c of op) {
    if (typeof c === 'number') pos += c;
    else if (typeof c === 'string') end = pos += [...c].length;
    else end = pos;
  }
  return end;
}
