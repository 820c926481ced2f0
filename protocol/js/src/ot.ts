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
