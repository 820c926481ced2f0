/**
 * Other participants' presence as the client shows it: their selections in local Unicode
 * positions and their names and colours.
 *
 * Invariants:
 * - `peers` positions refer to the local text: presence received for revision `rev` is moved
 *   through the server ops after `rev` (kept in `recent`) and then through the pending local
 *   ops, and every later change moves it again.
 * - Presence for a revision the client has not reached yet waits in `late` until it has.
 * - A participant with an empty selection is removed from `peers` and `users`.
 */
import { transformPosition, type TextOp } from './ot.js';
import type { RemoteOp } from './state.js';
import type { Peer, PeerUser, Range } from './wire.js';

/** Server ops kept to move late presence to the current revision. */
const HISTORY = 1024;

/** See the module documentation. */
export class PresenceTracker {
  /** Client id → selections, in local Unicode positions. */
  readonly peers = new Map<string, Range[]>();
  /** Client id → name and colour (only participants that have any). */
  readonly users = new Map<string, PeerUser>();
  private recent: RemoteOp[] = [];
  private late: { rev: number; peers: Peer[] }[] = [];

  /** Remembers a server op integrated at its revision. */
  recordServerOp(r: RemoteOp): void {
    this.recent.push(r);
    if (this.recent.length > HISTORY) this.recent.shift();
  }

  /** Moves every selection through a change of the local text; true if there are peers. */
  move(op: TextOp): boolean {
    for (const [client, sel] of this.peers) {
      this.peers.set(
        client,
        sel.map(([a, h]) => [transformPosition(a, op), transformPosition(h, op)]),
      );
    }
    return this.peers.size > 0;
  }

  /** Presence for revision `rev`; applied now if the client (at `currentRev`, with the local
   * ops `pending`) has reached it, else kept. Returns whether users' metadata changed, or
   * `null` if nothing was applied yet. */
  receive(
    rev: number,
    peers: Peer[],
    self: string,
    currentRev: number,
    pending: TextOp[],
  ): { usersChanged: boolean } | null {
    if (rev > currentRev) {
      this.late.push({ rev, peers });
      return null;
    }
    return this.apply(rev, peers, self, pending);
  }

  /** Applies the late presence the client has now reached; null when there was none. */
  catchUp(self: string, currentRev: number, pending: TextOp[]): { usersChanged: boolean } | null {
    const ready = this.late.filter((p) => p.rev <= currentRev);
    if (ready.length === 0) return null;
    this.late = this.late.filter((p) => p.rev > currentRev);
    let usersChanged = false;
    for (const p of ready) usersChanged = this.apply(p.rev, p.peers, self, pending).usersChanged || usersChanged;
    return { usersChanged };
  }

  /** Forgets everything (a snapshot replaced the text). */
  clear(): void {
    this.peers.clear();
    this.users.clear();
    this.recent = [];
    this.late = [];
  }

  private apply(rev: number, peers: Peer[], self: string, pending: TextOp[]): { usersChanged: boolean } {
    const later = this.recent.filter((r) => r.rev > rev).map((r) => r.op);
    const through = [...later, ...pending];
    const move = (pos: number) => through.reduce(transformPosition, pos);
    let usersChanged = false;
    for (const p of peers) {
      if (p.client === self) continue;
      if (p.sel.length === 0) {
        this.peers.delete(p.client);
        usersChanged = this.users.delete(p.client) || usersChanged;
        continue;
      }
      this.peers.set(
        p.client,
        p.sel.map(([a, h]) => [move(a), move(h)]),
      );
      if (p.user && (p.user.name !== undefined || p.user.color !== undefined)) {
        const old = this.users.get(p.client);
        if (old?.name !== p.user.name || old?.color !== p.user.color) {
          this.users.set(p.client, { ...p.user });
          usersChanged = true;
        }
      }
    }
    return { usersChanged };
  }
}
