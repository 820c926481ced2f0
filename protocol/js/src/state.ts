/**
 * The client's OT state machine, with no I/O: the classic ShareDB/ot.js scheme. At most one op
 * is in flight (sent, not yet acknowledged); later local edits are composed into one buffered
 * op. Remote ops are transformed against both, and both against them, exactly as the server
 * transforms (pending ops are the `left` side: the op the server applies later goes first).
 *
 * Invariants:
 * - `text` = server text at `rev`, then the in-flight op, then the buffer.
 * - Sequence numbers start at 1 and grow by one per op sent; a resend after a reconnect reuses
 *   the in-flight op's number, so the server applies it exactly once.
 * - Server ops with a revision at or below `rev` are ignored (duplicates after a rejoin).
 */
import { apply, compose, isNoop, normalize, transform, type TextOp } from './ot.js';

/** An op to send: `{rev, seq, op}` as in the wire `op` message. */
export interface Outgoing {
  /** Base revision. */
  rev: number;
  /** Sequence number. */
  seq: number;
  /** The op. */
  op: TextOp;
}

/** An op from the server's ordered stream. */
export interface RemoteOp {
  /** Revision it produced. */
  rev: number;
  /** Author's client id. */
  client: string;
  /** Author's sequence number. */
  seq: number;
  /** The op as applied by the server. */
  op: TextOp;
}

/** What integrating a server op did. */
export type ServerOpOutcome =
  | { kind: 'stale' }
  | { kind: 'ack'; next: Outgoing | null }
  | { kind: 'apply'; op: TextOp };

/** Thrown when the server's stream contradicts the client's state. */
export class StateError extends Error {}

/** See the module documentation. */
export class OtState {
  /** The local text. */
  text: string;
  /** The last server revision integrated. */
  rev: number;
  /** The client id (from `welcome`). */
  clientId: string;
  /** The op sent and not yet acknowledged. */
  inflight: Outgoing | null = null;
  /** Local edits made while an op was in flight, composed. */
  buffer: TextOp | null = null;
  private lastSeq = 0;

  constructor(clientId = '', rev = 0, text = '') {
    this.clientId = clientId;
    this.rev = rev;
    this.text = text;
  }

  /** True when every local edit is acknowledged. */
  get synchronized(): boolean {
    return this.inflight === null && this.buffer === null;
  }

  /** The local edits not yet acknowledged (the op in flight, then the buffer), no-ops left
   * out: apply them in order to the server text at `rev` to get `text`. */
  get pending(): TextOp[] {
    return [this.inflight?.op, this.buffer].filter((o): o is TextOp => !!o && !isNoop(o));
  }

  /** A local edit, already meant for `text`: applies it and returns the op to send now, if
   * nothing is in flight. */
  local(op: TextOp): Outgoing | null {
    const norm = normalize(op);
    if (norm.length === 0) return null;
    this.text = apply(this.text, norm);
    if (this.inflight === null) {
      this.inflight = { rev: this.rev, seq: ++this.lastSeq, op: norm };
      return this.inflight;
    }
    this.buffer = this.buffer === null ? norm : compose(this.buffer, norm);
    return null;
  }

  /** Integrates one op of the server's stream. */
  onServerOp(r: RemoteOp): ServerOpOutcome {
    if (r.rev <= this.rev) return { kind: 'stale' };
    if (r.rev !== this.rev + 1) {
      throw new StateError(`expected revision ${this.rev + 1}, got ${r.rev}`);
    }
    if (this.inflight !== null && r.client === this.clientId && r.seq === this.inflight.seq) {
      this.rev = r.rev;
      return { kind: 'ack', next: this.promote() };
    }
    // Everything is computed first and committed at the end: an op that does not fit (a
    // server bug, a damaged frame) throws and leaves the state as it was.
    let remote = r.op;
    let inflight = this.inflight;
    let buffer = this.buffer;
    if (inflight !== null) {
      const mine = inflight.op;
      inflight = { ...inflight, op: transform(mine, remote, 'left') };
      remote = transform(remote, mine, 'right');
    }
    if (buffer !== null) {
      const mine = buffer;
      buffer = transform(mine, remote, 'left');
      remote = transform(remote, mine, 'right');
    }
    const text = apply(this.text, remote);
    this.inflight = inflight;
    this.buffer = buffer;
    this.text = text;
    this.rev = r.rev;
    return { kind: 'apply', op: remote };
  }

  /** An `ack` (answer to a resend of an op the server had applied). */
  onAck(seq: number, rev: number): Outgoing | null {
    if (this.inflight === null || this.inflight.seq !== seq) return null;
    this.rev = Math.max(this.rev, rev);
    return this.promote();
  }

  /** The in-flight op to resend after a reconnect and rejoin (same sequence number, based on
   * the current revision: it has been transformed through every op integrated since), if any.
   * If the server had applied it, it answers with `ack` and applies nothing. */
  resend(): Outgoing | null {
    return this.inflight === null ? null : { ...this.inflight, rev: this.rev };
  }

  /** Restarts from a snapshot (a join answered without history). Local edits not yet
   * acknowledged are dropped and returned, so the caller can report them. */
  reset(rev: number, text: string): TextOp[] {
    const lost = this.pending;
    this.inflight = null;
    this.buffer = null;
    this.rev = rev;
    this.text = text;
    return lost;
  }

  /** Moves the buffer into flight. */
  private promote(): Outgoing | null {
    this.inflight = null;
    if (this.buffer === null) return null;
    this.inflight = { rev: this.rev, seq: ++this.lastSeq, op: this.buffer };
    this.buffer = null;
    return this.inflight;
  }
}
