/**
 * `CoeditClient`: one document over one WebSocket. Local edits go through the OT state machine
 * (one op in flight, the rest composed); remote ops are transformed and applied; presence goes
 * out when the client is synchronized and comes in transformed into local coordinates.
 *
 * Reconnects with exponential backoff (and at once when the browser says it is online again),
 * rejoins with its revision, and resends the op in flight under the same sequence number, so
 * the server applies it exactly once; edits made while offline are kept and sent after it.
 *
 * Events: `change` ({op, text, local}), `presence` (peers' selections, in local Unicode
 * positions), `status` ('connecting' | 'online' | 'offline' | 'closed'), `error` ({code,
 * msg}), `lost` (local edits the server could not take: only when a rejoin fell outside the
 * server's history and it answered with a snapshot).
 */
import { OtState, type Outgoing, type RemoteOp } from './state.js';
import { transformPosition, type TextOp } from './ot.js';
import { uniLength } from './unicode.js';
import {
  decodeMsg,
  encodeMsg,
  ErrorCode,
  PROTOCOL_VERSION,
  type ClientMsg,
  type Peer,
  type Range,
  type ServerMsg,
} from './wire.js';

/** Connection status. */
export type Status = 'connecting' | 'online' | 'offline' | 'closed';

/** A change of the local text. */
export interface ChangeEvent {
  /** The op, in local coordinates (apply it to the previous text). */
  op: TextOp;
  /** The text after it. */
  text: string;
  /** Whether the local user made it. */
  local: boolean;
}

/** An error reported by the server. */
export interface ServerError {
  code: number;
  msg: string;
}

interface Events {
  change: ChangeEvent;
  presence: ReadonlyMap<string, Range[]>;
  status: Status;
  error: ServerError;
  lost: TextOp[];
}

/** The subset of the WebSocket API the client uses (the browser's, or `ws` in Node). */
export interface SocketLike {
  binaryType: string;
  readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** Options of [`CoeditClient`]. */
export interface ClientOptions {
  /** Server WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`. */
  url: string;
  /** Document id (or `tenant:name`). */
  doc: string;
  /** Access token, when the server requires one. */
  token?: string;
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
}

/** Default first reconnect delay. */
export const DEFAULT_MIN_BACKOFF_MS = 200;
/** Default longest reconnect delay. */
export const DEFAULT_MAX_BACKOFF_MS = 5000;
/** Default ping interval. */
export const DEFAULT_PING_INTERVAL_MS = 5000;
/** Default silence before reconnecting. */
export const DEFAULT_PING_TIMEOUT_MS = 12000;
/** Server ops kept to move late presence to the current revision. */
const PRESENCE_HISTORY = 1024;
/** Delay that coalesces presence updates. */
const PRESENCE_DELAY_MS = 30;
/** Wait before resending an op refused because the server is short of disk space. */
const RETRY_STORAGE_FULL_MS = 2000;
/** Wait before resending an op the server refused for now (rate limit, unavailable). */
const RETRY_OP_MS = 1000;
/** WebSocket OPEN readyState. */
const OPEN = 1;
/** Server errors after which reconnecting cannot help. */
const FATAL = new Set<number>([
  ErrorCode.AuthRequired,
  ErrorCode.InvalidToken,
  ErrorCode.TokenExpired,
]);

type Listener<T> = (value: T) => void;

/** See the module documentation. */
export class CoeditClient {
  /** The OT state: text, revision, pending ops. */
  readonly state: OtState;
  /** Other participants' selections, in local Unicode positions. */
  readonly peers = new Map<string, Range[]>();
  /** Connection status. */
  status: Status = 'connecting';
  private readonly opts: Required<Omit<ClientOptions, 'token' | 'clientId'>> &
    Pick<ClientOptions, 'token'>;
  private ws: SocketLike | null = null;
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();
  /** Joined at least once: later joins give the revision. */
  private everJoined = false;
  /** The join on the current connection was answered. */
  private joined = false;
  /** The op in flight was sent on the current connection. */
  private inflightSent = false;
  private attempt = 0;
  private stopped = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private presenceTimer: ReturnType<typeof setTimeout> | null = null;
  private lastHeard = 0;
  /** The local selection, kept in local coordinates as remote ops arrive. */
  private selection: Range[] | null = null;
  /** The user moved the selection since it was last sent (or the connection is new). */
  private selectionDirty = false;
  /** Presence messages for revisions not reached yet. */
  private latePresence: { rev: number; peers: Peer[] }[] = [];
  /** Recent server ops, to move older presence to the current revision. */
  private recent: RemoteOp[] = [];
  private readonly onOnline = () => this.reconnectNow();
  private readonly onOffline = () => this.ws?.close();

  constructor(options: ClientOptions) {
    const WS =
      options.WebSocket ??
      (globalThis as unknown as { WebSocket: new (url: string) => SocketLike }).WebSocket;
    this.opts = {
      url: options.url,
      doc: options.doc,
      token: options.token,
      WebSocket: WS,
      minBackoffMs: options.minBackoffMs ?? DEFAULT_MIN_BACKOFF_MS,
      maxBackoffMs: options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS,
      pingIntervalMs: options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
      pingTimeoutMs: options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
    };
    this.state = new OtState(options.clientId ?? '');
    const g = globalThis as unknown as { addEventListener?: (e: string, f: () => void) => void };
    g.addEventListener?.('online', this.onOnline);
    g.addEventListener?.('offline', this.onOffline);
    this.connect();
  }

  /** The local text. */
  get text(): string {
    return this.state.text;
  }

  /** The document id. */
  get doc(): string {
    return this.opts.doc;
  }

  /** The client id (empty until the first `welcome`). */
  get clientId(): string {
    return this.state.clientId;
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => set.delete(fn as Listener<never>);
  }

  private emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const fn of this.listeners.get(event) ?? []) (fn as Listener<Events[K]>)(value);
  }

  private setStatus(s: Status): void {
    if (this.status !== s) {
      this.status = s;
      this.emit('status', s);
    }
  }

  /** A local edit against the current local text. */
  submit(op: TextOp): void {
    const before = this.state.text;
    const out = this.state.local(op);
    if (this.state.text === before && out === null && this.state.buffer === null) return;
    this.movePeers(op);
    this.emit('change', { op, text: this.state.text, local: true });
    if (out) this.sendOp(out);
  }

  /** The local user's selections (Unicode positions in the local text); `[]` hides them. */
  setSelection(sel: Range[]): void {
    const len = uniLength(this.state.text);
    this.selection = sel.map(([a, h]) => [Math.min(a, len), Math.min(h, len)]);
    this.selectionDirty = true;
    this.schedulePresence();
  }

  /** Closes the connection for good. */
  close(): void {
    this.stopped = true;
    const g = globalThis as unknown as {
      removeEventListener?: (e: string, f: () => void) => void;
    };
    g.removeEventListener?.('online', this.onOnline);
    g.removeEventListener?.('offline', this.onOffline);
    this.clearTimers();
    this.ws?.close(1000, 'closed by the client');
    this.ws = null;
    this.setStatus('closed');
  }

  private clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.presenceTimer) clearTimeout(this.presenceTimer);
    this.reconnectTimer = this.pingTimer = this.presenceTimer = null;
  }

  private connect(): void {
    if (this.stopped) return;
    this.setStatus('connecting');
    this.joined = false;
    this.inflightSent = false;
    let ws: SocketLike;
    try {
      ws = new this.opts.WebSocket(this.opts.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.lastHeard = Date.now();
      this.send({
        hello: {
          v: PROTOCOL_VERSION,
          client: this.state.clientId || undefined,
          token: this.opts.token,
        },
      });
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let msg: ServerMsg;
      try {
        msg = decodeMsg(ev.data as ArrayBuffer | string);
      } catch (e) {
        this.emit('error', { code: 0, msg: `undecodable frame: ${String(e)}` });
        return;
      }
      this.handle(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.pingTimer) clearInterval(this.pingTimer);
      this.pingTimer = null;
      if (!this.stopped && this.status !== 'closed') {
        this.setStatus('offline');
        this.scheduleReconnect();
      }
    };
    ws.onerror = () => {};
    this.pingTimer = setInterval(() => this.heartbeat(), this.opts.pingIntervalMs);
  }

  private heartbeat(): void {
    if (Date.now() - this.lastHeard > this.opts.pingTimeoutMs) {
      this.ws?.close();
      return;
    }
    this.send({ ping: { t: Date.now() } });
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const base = Math.min(this.opts.maxBackoffMs, this.opts.minBackoffMs * 2 ** this.attempt);
    this.attempt++;
    const delay = base * (0.5 + Math.random() / 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  private reconnectNow(): void {
    if (this.stopped || this.ws) return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.attempt = 0;
    this.connect();
  }

  private send(msg: ClientMsg): void {
    if (this.ws && this.ws.readyState === OPEN) this.ws.send(encodeMsg(msg));
  }

  private sendOp(out: Outgoing): void {
    if (!this.joined || !this.ws) return;
    this.send({ op: { doc: this.opts.doc, rev: out.rev, seq: out.seq, op: out.op } });
    this.inflightSent = true;
  }

  private handle(msg: ServerMsg): void {
    if ('welcome' in msg) {
      this.state.clientId = msg.welcome.client;
      this.send({
        join: { doc: this.opts.doc, rev: this.everJoined ? this.state.rev : undefined },
      });
    } else if ('snapshot' in msg) {
      const { rev, text } = msg.snapshot;
      const before = this.state.text;
      const lost = this.state.reset(rev, text);
      this.recent = [];
      this.peers.clear();
      if (lost.length > 0) this.emit('lost', lost);
      if (before !== text || !this.everJoined) {
        const op: TextOp = [{ d: uniLength(before) }, text];
        this.emit('change', { op, text, local: false });
      }
      this.joinAnswered();
    } else if ('ops' in msg) {
      for (const r of msg.ops.ops) this.integrate(r);
      if (!this.joined) this.joinAnswered();
      this.applyLatePresence();
      this.schedulePresence();
    } else if ('ack' in msg) {
      const next = this.state.onAck(msg.ack.seq, msg.ack.rev);
      if (next) this.sendOp(next);
      this.schedulePresence();
    } else if ('presence' in msg) {
      const { rev, peers } = msg.presence;
      if (rev > this.state.rev) this.latePresence.push({ rev, peers });
      else this.applyPresence(rev, peers);
    } else if ('error' in msg) {
      const { code, msg: text } = msg.error;
      this.emit('error', { code, msg: text });
      if (FATAL.has(code)) {
        this.stopped = true;
        this.clearTimers();
        this.setStatus('closed');
      } else if (code === ErrorCode.RevisionTooOld) {
        this.everJoined = false;
        this.ws?.close();
      } else if (
        (code === ErrorCode.RateLimited ||
          code === ErrorCode.Unavailable ||
          code === ErrorCode.StorageFull) &&
        msg.error.seq !== undefined &&
        msg.error.seq === this.state.inflight?.seq
      ) {
        // Not applied: send it again (same sequence number) a little later; a server short of
        // disk space is given longer.
        const seq = msg.error.seq;
        const wait = code === ErrorCode.StorageFull ? RETRY_STORAGE_FULL_MS : RETRY_OP_MS;
        setTimeout(() => {
          const r = this.state.resend();
          if (r && r.seq === seq) this.sendOp(r);
        }, wait);
      }
    }
  }

  /** The join on this connection was answered: resend what was in flight, go online. */
  private joinAnswered(): void {
    this.joined = true;
    this.everJoined = true;
    this.attempt = 0;
    this.setStatus('online');
    if (!this.inflightSent) {
      const r = this.state.resend();
      if (r) this.sendOp(r);
    }
    this.selectionDirty = true;
    this.schedulePresence();
  }

  private integrate(r: RemoteOp): void {
    const outcome = this.state.onServerOp(r);
    if (outcome.kind === 'stale') return;
    this.recent.push(r);
    if (this.recent.length > PRESENCE_HISTORY) this.recent.shift();
    if (outcome.kind === 'ack') {
      if (outcome.next) this.sendOp(outcome.next);
    } else {
      const op = outcome.op;
      if (this.selection) {
        this.selection = this.selection.map(([a, h]) => [
          transformPosition(a, op),
          transformPosition(h, op),
        ]);
      }
      this.movePeers(op);
      this.emit('change', { op, text: this.state.text, local: false });
    }
  }

  private movePeers(op: TextOp): void {
    for (const [client, sel] of this.peers) {
      this.peers.set(
        client,
        sel.map(([a, h]) => [transformPosition(a, op), transformPosition(h, op)]),
      );
    }
    if (this.peers.size > 0) this.emit('presence', this.peers);
  }

  /** Presence at `rev` (≤ the client's revision) into local coordinates. */
  private applyPresence(rev: number, peers: Peer[]): void {
    const later = this.recent.filter((r) => r.rev > rev).map((r) => r.op);
    const pending = [this.state.inflight?.op, this.state.buffer].filter(
      (o): o is TextOp => !!o,
    );
    for (const p of peers) {
      if (p.client === this.state.clientId) continue;
      if (p.sel.length === 0) {
        this.peers.delete(p.client);
        continue;
      }
      const move = (pos: number) => [...later, ...pending].reduce(transformPosition, pos);
      this.peers.set(
        p.client,
        p.sel.map(([a, h]) => [move(a), move(h)]),
      );
    }
    this.emit('presence', this.peers);
  }

  private applyLatePresence(): void {
    const ready = this.latePresence.filter((p) => p.rev <= this.state.rev);
    this.latePresence = this.latePresence.filter((p) => p.rev > this.state.rev);
    for (const p of ready) this.applyPresence(p.rev, p.peers);
  }

  private schedulePresence(): void {
    if (this.presenceTimer) return;
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
    this.send({ presence: { doc: this.opts.doc, rev: this.state.rev, sel: this.selection } });
  }
}
