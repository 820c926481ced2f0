/**
 * The events a `CoeditClient` emits, their payloads, and the small emitter it uses. A listener
 * that throws is reported on the console and never breaks the client (the other listeners
 * still run, the client's state is not left half-updated).
 */
import type { TextOp } from './ot.js';
import type { PeerUser, Range, Role } from './wire.js';

/** Connection status. */
export type Status = 'connecting' | 'online' | 'offline' | 'closed';

/** A change of the local text. */
export interface ChangeEvent {
  /** The op, in local coordinates (apply it to the previous text). */
  op: TextOp;
  /** The text after it. */
  text: string;
  /** Whether the local user made it (typing, `submit`, `undo`, `redo`). */
  local: boolean;
  /** For a remote op or a snapshot, the server revision after it; for a local edit, the
   * server revision it is based on (it has no revision until acknowledged: see `ack`). */
  rev: number;
  /** Client id of the op's author: the remote author, or the client's own id for a local
   * edit; `undefined` for a snapshot (the whole text replaced). */
  author: string | undefined;
  /** `undo` or `redo` when the local edit came from the undo manager. */
  origin?: 'undo' | 'redo';
}

/** An error: from the server (its code, see PROTOCOL.md) or from the client itself (code 0 for
 * transport failures and client-side faults; 5006 for an edit refused locally because the role
 * cannot write). */
export interface ClientError {
  /** Error code. */
  code: number;
  /** What happened, for people. */
  msg: string;
  /** Document the error is about, if any. */
  doc?: string;
  /** Sequence number of the refused op, if any. */
  seq?: number;
  /** True when the client recovers by itself (reconnects, resends, fetches a new token,
   * resynchronizes): apps may log it rather than show it. False when the user's action
   * failed or the client stopped. */
  willRetry: boolean;
}

/** Local edits the server refused or could not take, dropped when the client resynchronized
 * with the server's text (`lost` event). */
export interface LostEvent {
  /** The dropped ops, in order (apply them to the server text the client last had). */
  ops: TextOp[];
  /** The local text just before the reset: what the user saw, to offer a copy of it. */
  text: string;
}

/** Local edits not yet acknowledged when the client stopped for lack of an accepted token
 * (`unsent` event). They are kept: `setToken()` resumes and resends them. */
export interface UnsentEvent {
  /** The pending ops, in order. */
  ops: TextOp[];
  /** The local text (server text plus the pending ops). */
  text: string;
}

/** The session's access to the document (`access` event). */
export interface AccessEvent {
  /** The role on the document. */
  role: Role;
  /** The token's subject (absent without authentication). */
  subject: string | undefined;
  /** Whether the role may edit. */
  canWrite: boolean;
}

/** An acknowledged local op (`ack` event). */
export interface AckEvent {
  /** Its sequence number. */
  seq: number;
  /** The revision it produced: the server-confirmed revision. */
  rev: number;
}

/** Every event and its payload. */
export interface Events {
  /** Every change of the local text. */
  change: ChangeEvent;
  /** Others' selections changed (client id → ranges in local Unicode positions). */
  presence: ReadonlyMap<string, Range[]>;
  /** Connection status changed. */
  status: Status;
  /** See [`ClientError`]. */
  error: ClientError;
  /** See [`LostEvent`]. */
  lost: LostEvent;
  /** See [`UnsentEvent`]. */
  unsent: UnsentEvent;
  /** See [`AccessEvent`]: after each join answer and token refresh that changes it. */
  access: AccessEvent;
  /** A local op was acknowledged. */
  ack: AckEvent;
  /** Every local edit is acknowledged (after having had pending edits). */
  synced: { rev: number };
  /** Name and colour of other participants changed (`client.peerUsers`). */
  users: ReadonlyMap<string, PeerUser>;
}

type Listener<T> = (value: T) => void;

/** A typed event emitter. */
export class Emitter<E extends object> {
  private readonly listeners = new Map<keyof E, Set<Listener<never>>>();

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof E>(event: K, fn: Listener<E[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => set.delete(fn as Listener<never>);
  }

  /** Calls every listener of `event`; a throwing listener is logged and skipped. */
  protected emit<K extends keyof E>(event: K, value: E[K]): void {
    for (const fn of [...(this.listeners.get(event) ?? [])]) {
      try {
        (fn as Listener<E[K]>)(value);
      } catch (e) {
        console.error(`coedit: a '${String(event)}' listener threw`, e);
      }
    }
  }
}
