/**
 * `CoeditClient`: one document over one WebSocket. Owns the document half: join and rejoin,
 * local edits through the OT state (`state.ts`), remote ops, acknowledgements, roles, presence
 * (`presence.ts`) and undo (`undo.ts`). The connection, tokens and reconnects are in
 * `connection.ts`; event payloads in `events.ts`.
 *
 * Invariants:
 * - Local edits are never dropped silently. Pending ops (in flight and buffered) survive
 *   reconnects, token expiry and refused tokens; they are resent (the op in flight under its
 *   sequence number, so the server applies it exactly once). They are dropped only when the
 *   server's text replaces them (a rejoin outside its history, or an edit refused as
 *   read-only), and then reported in `lost`.
 * - A role that cannot write (viewer, commenter) changes nothing locally: `submit`, `undo` and
 *   `redo` are refused with an `error` 5006.
 * - The presence timer is armed only when there is a selection the user moved and not sent.
 */
import { Connection, type SocketLike } from './connection.js';
import type { ClientError, UnsentEvent } from './events.js';
import { normalize, transformPosition, type TextOp } from './ot.js';
import { PresenceTracker } from './presence.js';
import { OtState, type Outgoing, type RemoteOp } from './state.js';
import type { TokenProvider, TokenRefreshOptions } from './token.js';
import { DEFAULT_UNDO_GROUP_MS, UndoManager } from './undo.js';
import { uniLength } from './unicode.js';
import { ErrorCode, sanitizeUser, type PeerUser, type Range, type Role, type ServerMsg } from './wire.js';

export type { SocketLike } from './connection.js';
export type { ChangeEvent, ClientError, Status } from './events.js';
/** @deprecated Use `ClientError`. */
export type ServerError = ClientError;

/** The URL option as a non-empty list. */
function urlList(url: string | string[]): string[] {
  const urls = Array.isArray(url) ? url : [url];
  if (urls.length === 0 || urls.some((u) => typeof u !== 'string' || u === '')) {
    throw new TypeError('url: give a WebSocket URL or a non-empty list of them');
  }
  return [...urls];
}

/** Options of [`CoeditClient`]. */
export interface ClientOptions {
  /** Server WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`, or a cluster's nodes' URLs: the
   * first is used, and after a failed or lost connection the next (the session resumes there
   * by revision). */
  url: string | string[];
  /** Document id (or `tenant:name`). */
  doc: string;
  /** Access token, or a provider of fresh tokens (called before each connection and before
   * expiry), when the server requires one. */
  token?: string | TokenProvider;
  /** Name and colour shown with this user's caret (a token's claims take precedence). */
  user?: PeerUser;
  /** Client id from an earlier session (exactly-once key); assigned by the server if absent. */
  clientId?: string;
  /** WebSocket constructor (default: the global one). */
  WebSocket?: new (url: string) => SocketLike;
  /** First reconnect delay (doubles per failed attempt). */
  minBackoffMs?: number;
  /** Longest reconnect delay. */
  maxBackoffMs?: number;
  /** Interval between client pings. */
  pingIntervalMs?: number;
  /** Silence after which the connection is considered dead. */
  pingTimeoutMs?: number;
  /** When to refresh a token before it expires (with a provider); `false`: never refresh,
   * reconnect with a new token when the server closes the expired session. */
  tokenRefresh?: TokenRefreshOptions | false;
  /** Consecutive failures to get an accepted token (provider errors, refusals) before the
   * client stops (default 3). */
  maxTokenAttempts?: number;
  /** Local edits closer together than this form one undo step (default 500 ms). */
  undoGroupMs?: number;
}

/** Default first reconnect delay. */
export const DEFAULT_MIN_BACKOFF_MS = 200;
/** Default longest reconnect delay. */
export const DEFAULT_MAX_BACKOFF_MS = 5000;
/** Default ping interval. */
export const DEFAULT_PING_INTERVAL_MS = 5000;
/** Default silence before reconnecting. */
export const DEFAULT_PING_TIMEOUT_MS = 12000;
/** Default `maxTokenAttempts`. */
export const DEFAULT_MAX_TOKEN_ATTEMPTS = 3;
/** Delay that coalesces presence updates. */
export const PRESENCE_DELAY_MS = 30;
/** Wait before resending an op refused because the server is short of disk space. */
const RETRY_STORAGE_FULL_MS = 2000;
/** Wait before resending an op the server refused for now (rate limit, unavailable). */
const RETRY_OP_MS = 1000;
/** Roles that may edit. */
const WRITERS = new Set<Role>(['editor', 'owner']);

/** See the module documentation; events in `events.ts`. */
export class CoeditClient extends Connection {
  /** The OT state: text, revision, pending ops. */
  readonly state: OtState;
  /** The role on the document, from the join answer (`null` until the first answer). */
  role: Role | null = null;
  private readonly docId: string;
  private readonly presence = new PresenceTracker();
  private readonly history: UndoManager;
  private everJoined = false;
  private joined = false;
  /** A join without revision was sent to resynchronize: everything before its snapshot is
   * from the subscription it replaces and is ignored. */
  private awaitingSnapshot = false;
  /** The op in flight was sent on the current connection. */
  private inflightSent = false;
  private presenceTimer: ReturnType<typeof setTimeout> | null = null;
  /** The local selection, kept in local coordinates as remote ops arrive. */
  private selection: Range[] | null = null;
  /** The user moved the selection since it was last sent (or the connection is new). */
  private selectionDirty = false;

  constructor(options: ClientOptions) {
    super(
      {
        urls: urlList(options.url),
        WebSocket:
          options.WebSocket ??
          (globalThis as unknown as { WebSocket: new (url: string) => SocketLike }).WebSocket,
        user: sanitizeUser(options.user),
        minBackoffMs: options.minBackoffMs ?? DEFAULT_MIN_BACKOFF_MS,
        maxBackoffMs: options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS,
        pingIntervalMs: options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
        pingTimeoutMs: options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
        tokenRefresh: options.tokenRefresh ?? {},
        maxTokenAttempts: Math.max(1, options.maxTokenAttempts ?? DEFAULT_MAX_TOKEN_ATTEMPTS),
      },
      options.token,
    );
    this.docId = options.doc;
    this.history = new UndoManager(options.undoGroupMs ?? DEFAULT_UNDO_GROUP_MS);
    this.state = new OtState(options.clientId ?? '');
    this.connect();
  }

  /** The local text. */
  get text(): string {
    return this.state.text;
  }

  /** The document id. */
  get doc(): string {
    return this.docId;
  }

  /** The client id (empty until the first `welcome`). */
  get clientId(): string {
    return this.state.clientId;
  }

  /** The last server-confirmed revision (every op up to it is integrated). */
  get rev(): number {
    return this.state.rev;
  }

  /** True when every local edit is acknowledged. */
  get synced(): boolean {
    return this.state.synchronized;
  }

  /** Whether the role allows editing (true while the role is not known yet). */
  get canWrite(): boolean {
    return this.role === null || WRITERS.has(this.role);
  }

  /** Other participants' selections, in local Unicode positions (client id → ranges). Read
   * it; the client updates it. */
  get peers(): Map<string, Range[]> {
    return this.presence.peers;
  }

  /** Other participants' names and colours (client id → metadata; only those that have any). */
  get peerUsers(): ReadonlyMap<string, PeerUser> {
    return this.presence.users;
  }

  /** True when `undo()` would change something. */
  get canUndo(): boolean {
    return this.history.canUndo;
  }

  /** True when `redo()` would change something. */
  get canRedo(): boolean {
    return this.history.canRedo;
  }

  /** A local edit against the current local text; false if refused (read-only) or empty. */
  submit(op: TextOp): boolean {
    return this.applyLocal(op);
  }

  /** Undoes the user's last edit step (only their own edits, wherever they now are). */
  undo(): boolean {
    if (!this.canWrite) return this.refuseReadOnly();
    const op = this.history.undo(this.state.text);
    return op !== null && this.applyLocal(op, 'undo');
  }

  /** Redoes the last undone step. */
  redo(): boolean {
    if (!this.canWrite) return this.refuseReadOnly();
    const op = this.history.redo(this.state.text);
    return op !== null && this.applyLocal(op, 'redo');
  }

  /** Ends the current undo group: the next edit is a step of its own. */
  breakUndoGroup(): void {
    this.history.breakGroup();
  }

  /** The local user's selections (Unicode positions in the local text); `[]` hides them. */
  setSelection(sel: Range[]): void {
    const len = uniLength(this.state.text);
    this.selection = sel.map(([a, h]) => [Math.min(a, len), Math.min(h, len)]);
    this.selectionDirty = true;
    this.schedulePresence();
  }

  /** Closes the connection for good. */
  override close(): void {
    if (this.presenceTimer) clearTimeout(this.presenceTimer);
    this.presenceTimer = null;
    super.close();
  }

  protected helloClientId(): string {
    return this.state.clientId;
  }

  protected unsent(): UnsentEvent {
    return { ops: this.state.pending, text: this.state.text };
  }

  protected onDisconnected(): void {
    this.joined = this.inflightSent = this.awaitingSnapshot = false;
  }

  protected onWelcome(client: string): void {
    this.state.clientId = client;
    this.joined = this.inflightSent = this.awaitingSnapshot = false;
    const rev = this.everJoined ? this.state.rev : undefined;
    this.send({ join: { doc: this.docId, rev } });
  }

  protected onAuthed(roles: { doc: string; role: Role }[], sub: string | undefined): void {
    const mine = roles.find((r) => this.isMine(r.doc)) ?? (roles.length === 1 ? roles[0] : null);
    if (mine) this.setAccess(mine.role, sub);
  }

  private refuseReadOnly(): false {
    const msg = `read-only: your role on "${this.docId}" is ${this.role}; the edit was not applied`;
    this.report({ code: ErrorCode.ReadOnly, msg, doc: this.docId }, false);
    return false;
  }

  private applyLocal(op: TextOp, origin?: 'undo' | 'redo'): boolean {
    if (!this.canWrite) return this.refuseReadOnly();
    const norm = normalize(op);
    if (norm.length === 0) return false;
    const before = this.state.text;
    const base = this.state.rev;
    const out = this.state.local(norm);
    if (origin === undefined) this.history.record(norm, before);
    if (this.presence.move(norm)) this.emit('presence', this.presence.peers);
    const text = this.state.text;
    this.emit('change', { op: norm, text, local: true, rev: base, author: this.clientId, origin });
    if (out) this.sendOp(out);
    return true;
  }

  private sendOp(out: Outgoing): void {
    if (!this.joined || !this.ws) return;
    this.send({ op: { doc: this.docId, rev: out.rev, seq: out.seq, op: out.op } });
    this.inflightSent = true;
  }

  private setAccess(role: Role, sub: string | undefined): void {
    if (sub !== undefined) this.subject = sub;
    if (role === this.role) return;
    this.role = role;
    this.emit('access', { role, subject: this.subject, canWrite: this.canWrite });
  }

  /** True when `doc` (as the server names it: unqualified) is this client's document. */
  private isMine(doc: string | undefined): boolean {
    if (doc === undefined) return false;
    return doc === this.docId || doc === this.docId.slice(this.docId.indexOf(':') + 1);
  }

  protected handle(msg: ServerMsg): void {
    if ('snapshot' in msg) {
      this.onSnapshot(msg.snapshot);
    } else if ('ops' in msg) {
      if (this.awaitingSnapshot) return;
      const first = !this.joined;
      if (first && msg.ops.access) this.setAccess(msg.ops.access.role, msg.ops.access.sub);
      for (const r of msg.ops.ops) this.integrate(r);
      if (first) this.joinAnswered();
      this.catchUpPresence();
      this.schedulePresence();
    } else if ('ack' in msg) {
      if (this.awaitingSnapshot) return;
      const { seq, rev } = msg.ack;
      if (this.state.inflight?.seq !== seq) return;
      this.acknowledged(seq, rev, this.state.onAck(seq, rev));
    } else if ('presence' in msg) {
      if (this.awaitingSnapshot) return;
      const { rev, peers } = msg.presence;
      const pending = this.state.pending;
      const done = this.presence.receive(rev, peers, this.clientId, this.state.rev, pending);
      if (done) this.presenceChanged(done.usersChanged);
    } else if ('error' in msg) {
      this.onError(msg.error);
    }
  }

  private onSnapshot(s: { rev: number; text: string; access?: { role: Role; sub?: string } }): void {
    this.awaitingSnapshot = false;
    const before = this.state.text;
    const lost = this.state.reset(s.rev, s.text);
    this.presence.clear();
    this.history.clear();
    if (s.access) this.setAccess(s.access.role, s.access.sub);
    if (lost.length > 0) this.emit('lost', { ops: lost, text: before });
    if (before !== s.text || !this.everJoined) {
      const op = normalize([...(before ? [{ d: uniLength(before) }] : []), ...(s.text ? [s.text] : [])]);
      this.emit('change', { op, text: s.text, local: false, rev: s.rev, author: undefined });
    }
    this.joinAnswered();
  }

  private onError(e: { code: number; msg: string; doc?: string; seq?: number }): void {
    const { code } = e;
    if (
      (code === ErrorCode.UnknownDocument || code === ErrorCode.WrongTenant) &&
      (e.doc === undefined || this.isMine(e.doc))
    ) {
      // No (more) access to the document: stop, keeping the edits (`setToken()` resumes).
      this.giveUp(code, e.msg);
    } else if (code === ErrorCode.ReadOnly) {
      this.report(e, false);
      this.resyncFromSnapshot();
    } else if (code === ErrorCode.RevisionTooOld) {
      this.report(e, true);
      this.everJoined = false;
      this.dropConnection();
    } else if (
      (code === ErrorCode.RateLimited ||
        code === ErrorCode.Unavailable ||
        code === ErrorCode.StorageFull) &&
      e.seq !== undefined &&
      e.seq === this.state.inflight?.seq
    ) {
      // Not applied: send it again (same sequence number) a little later; a server short of
      // disk space is given longer.
      this.report(e, true);
      const seq = e.seq;
      const wait = code === ErrorCode.StorageFull ? RETRY_STORAGE_FULL_MS : RETRY_OP_MS;
      setTimeout(() => {
        const r = this.state.resend();
        if (r && r.seq === seq && !this.stopped) this.sendOp(r);
      }, wait);
    } else {
      this.report(e, false);
    }
  }

  /** Rejoins without a revision on this connection: the snapshot replaces the local text (the
   * refused edits are reported in `lost`). */
  private resyncFromSnapshot(): void {
    if (this.awaitingSnapshot) return;
    this.everJoined = false;
    if (!this.ws || !this.welcomed) return; // the next connection joins without a revision
    this.joined = false;
    this.awaitingSnapshot = true;
    this.send({ leave: { doc: this.docId } });
    this.send({ join: { doc: this.docId } });
  }

  /** The join on this connection was answered: resend what was in flight, go online. */
  private joinAnswered(): void {
    this.joined = true;
    this.everJoined = true;
    this.attempt = 0;
    this.authFailures = 0;
    this.setStatus('online');
    if (!this.inflightSent) {
      const r = this.state.resend();
      if (r) this.sendOp(r);
    }
    if (this.selection !== null) this.selectionDirty = true;
    this.catchUpPresence();
    this.schedulePresence();
  }

  private acknowledged(seq: number, rev: number, next: Outgoing | null): void {
    this.emit('ack', { seq, rev });
    if (next) this.sendOp(next);
    else if (this.state.synchronized) this.emit('synced', { rev: this.state.rev });
    this.schedulePresence();
  }

  private integrate(r: RemoteOp): void {
    const outcome = this.state.onServerOp(r);
    if (outcome.kind === 'stale') return;
    this.presence.recordServerOp(r);
    if (outcome.kind === 'ack') {
      this.acknowledged(r.seq, r.rev, outcome.next);
      return;
    }
    const op = outcome.op;
    if (this.selection) {
      this.selection = this.selection.map(([a, h]) => [
        transformPosition(a, op),
        transformPosition(h, op),
      ]);
    }
    this.history.transform(op);
    if (this.presence.move(op)) this.emit('presence', this.presence.peers);
    this.emit('change', { op, text: this.state.text, local: false, rev: r.rev, author: r.client });
  }

  private catchUpPresence(): void {
    const done = this.presence.catchUp(this.clientId, this.state.rev, this.state.pending);
    if (done) this.presenceChanged(done.usersChanged);
  }

  private presenceChanged(usersChanged: boolean): void {
    this.emit('presence', this.presence.peers);
    if (usersChanged) this.emit('users', this.presence.users);
  }

  /** Arms the presence timer, only when there is a moved selection to send. */
  private schedulePresence(): void {
    if (this.presenceTimer || this.selection === null || !this.selectionDirty) return;
    this.presenceTimer = setTimeout(() => {
      this.presenceTimer = null;
      this.flushPresence();
    }, PRESENCE_DELAY_MS);
  }

  /** Sends the local selection once the user moved it and it refers to server text (nothing
   * pending). Selections only moved by others' edits are not re-sent: the server moves them. */
  private flushPresence(): void {
    if (!this.joined || !this.selectionDirty || this.selection === null) return;
    if (!this.state.synchronized) return;
    this.selectionDirty = false;
    this.send({ presence: { doc: this.docId, rev: this.state.rev, sel: this.selection } });
  }
}
