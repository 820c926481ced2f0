/**
 * The connection half of `CoeditClient`: one WebSocket at a time, `hello` with a token,
 * heartbeats, reconnects with backoff, token refresh on the live session (`auth`), and stopping
 * (keeping the client's state) when no accepted token can be had. `client.ts` builds the
 * document logic on top of it through the abstract hooks.
 *
 * Invariants:
 * - At most one connection is live; handlers of a replaced or dropped connection do nothing.
 * - The token source is asked before every connection and, with a provider, shortly before the
 *   current token expires. Consecutive failures to connect with an accepted token (provider
 *   errors, refusals at `hello`, sessions ended by expiry) are bounded by `maxTokenAttempts`
 *   and spaced by backoff; the count resets once a join is answered or a refresh accepted. A
 *   refused refresh is retried with backoff while the current token lasts.
 * - A session refused for its token (5001/5002/5003) is dropped at once and reported once:
 *   as recoverable if a new token will be tried, else the client stops (`closed`) with its
 *   pending edits kept and reported in `unsent`; `setToken()` resumes.
 * - Nothing is thrown out of a socket handler: a fault while handling a message is reported
 *   and the connection is dropped, so the next one rejoins from the last good revision.
 */
import { Emitter, type ClientError, type Events, type Status, type UnsentEvent } from './events.js';
import { refreshDelayMs, TokenSource, type TokenProvider, type TokenRefreshOptions } from './token.js';
import {
  decodeMsg,
  encodeMsg,
  ErrorCode,
  PROTOCOL_VERSION,
  type ClientMsg,
  type PeerUser,
  type Role,
  type ServerMsg,
} from './wire.js';

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

/** Connection settings (all resolved). */
export interface ConnectionSettings {
  /** The servers (a cluster's nodes), tried in turn: the first, then after each failed or
   * lost connection the next. */
  urls: string[];
  WebSocket: new (url: string) => SocketLike;
  user: PeerUser | undefined;
  minBackoffMs: number;
  maxBackoffMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  tokenRefresh: TokenRefreshOptions | false;
  maxTokenAttempts: number;
}

/** WebSocket OPEN readyState. */
const OPEN = 1;
/** Errors that end a session for want of a valid token (the server closes it). */
const AUTH_FATAL = new Set<number>([
  ErrorCode.AuthRequired,
  ErrorCode.InvalidToken,
  ErrorCode.TokenExpired,
]);
/** Errors that answer a refused `auth` (the session goes on with the old token). */
const AUTH_REFUSED = new Set<number>([...AUTH_FATAL, ErrorCode.NotPermitted]);

/** A thrown value as text. */
export const describe = (e: unknown) => (e instanceof Error ? e.message : String(e));
const isOffline = () =>
  (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine === false;

/** See the module documentation. */
export abstract class Connection extends Emitter<Events> {
  /** Connection status. */
  status: Status = 'connecting';
  /** The token's subject (with authentication). */
  subject: string | undefined;
  /** The current token's expiry, Unix seconds (with authentication). */
  exp: number | undefined;
  /** When the current token expires on this machine's clock (ms): the lifetime the server
   * reported (`exp - now` by the server's clock) from when it was received, so a client clock
   * that is off does not make the refresh late. */
  private expiresAtMs: number | undefined;
  protected readonly conn: ConnectionSettings;
  protected ws: SocketLike | null = null;
  /** `welcome` received on the current connection. */
  protected welcomed = false;
  /** Stopped for good (`close()`) or until `setToken()` (no accepted token). */
  protected stopped = false;
  protected attempt = 0;
  protected authFailures = 0;
  private readonly tokens: TokenSource;
  /** Bumped per connection attempt: a token that arrives for an older attempt is not used. */
  private connectGen = 0;
  private closedBy: 'user' | 'auth' | null = null;
  private authPending = false;
  /** Consecutive refused or failed refreshes on this session. */
  private refreshFailures = 0;
  /** The server refused the session's token; reported when the connection is gone. */
  private fatalAuth: { code: number; msg: string } | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  /** Index in `conn.urls` of the server in use. */
  private urlIndex = 0;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private readonly onOnline = () => this.reconnectNow();
  private readonly onOffline = () => this.dropConnection();

  constructor(settings: ConnectionSettings, token: string | TokenProvider | undefined) {
    super();
    this.conn = settings;
    this.tokens = new TokenSource(token);
    const g = globalThis as unknown as { addEventListener?: (e: string, f: () => void) => void };
    g.addEventListener?.('online', this.onOnline);
    g.addEventListener?.('offline', this.onOffline);
  }

  /** The client id to announce in `hello` (empty: let the server assign one). */
  protected abstract helloClientId(): string;
  /** `welcome` was accepted: join. */
  protected abstract onWelcome(client: string): void;
  /** A refresh was accepted: the roles on the joined documents. */
  protected abstract onAuthed(roles: { doc: string; role: Role }[], sub: string | undefined): void;
  /** Every other server message. */
  protected abstract handle(msg: ServerMsg): void;
  /** The connection is gone (before any reconnect is scheduled). */
  protected abstract onDisconnected(): void;
  /** The edits not acknowledged yet, reported when the client stops. */
  protected abstract unsent(): UnsentEvent;

  /**
   * Replaces the token or provider. On a live session the new token is presented at once
   * (`auth`); a client stopped for want of a token reconnects and resends what it kept.
   */
  setToken(token: string | TokenProvider): void {
    this.tokens.set(token);
    this.authFailures = 0;
    if (this.closedBy === 'auth') {
      this.closedBy = null;
      this.stopped = false;
      this.attempt = 0;
      this.connect();
    } else if (this.ws && this.welcomed && !this.stopped) {
      void this.refresh();
    }
  }

  /** Closes the connection for good. */
  close(): void {
    this.stopped = true;
    this.closedBy = 'user';
    const g = globalThis as unknown as {
      removeEventListener?: (e: string, f: () => void) => void;
    };
    g.removeEventListener?.('online', this.onOnline);
    g.removeEventListener?.('offline', this.onOffline);
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, 'closed by the client');
    this.setStatus('closed');
  }

  protected setStatus(s: Status): void {
    if (this.status !== s) {
      this.status = s;
      this.emit('status', s);
    }
  }

  protected report(e: Omit<ClientError, 'willRetry'>, willRetry: boolean): void {
    this.emit('error', { ...e, willRetry });
  }

  protected clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.reconnectTimer = this.refreshTimer = this.pingTimer = null;
  }

  /** Gets a token, then opens a connection. */
  protected connect(): void {
    if (this.stopped) return;
    if (isOffline()) {
      // No network: asking the provider would only fail. Wait for 'online' (or the backoff).
      this.setStatus('offline');
      this.scheduleReconnect();
      return;
    }
    this.setStatus('connecting');
    const gen = ++this.connectGen;
    this.tokens.get().then(
      (token) => {
        if (gen === this.connectGen && !this.stopped && !this.ws) this.open(token);
      },
      (e) => {
        if (gen !== this.connectGen || this.stopped) return;
        if (isOffline()) {
          // The network went away meanwhile: not the provider's fault.
          this.setStatus('offline');
          this.scheduleReconnect();
          return;
        }
        this.authFailed(0, `could not get an access token: ${describe(e)}`);
      },
    );
  }

  private open(token: string | undefined): void {
    this.welcomed = this.authPending = false;
    let ws: SocketLike;
    try {
      ws = new this.conn.WebSocket(this.url);
    } catch (e) {
      this.report({ code: 0, msg: `cannot open ${this.url}: ${describe(e)}` }, true);
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.lastHeard = Date.now(); // the attempt gets the whole ping timeout to connect
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      const client = this.helloClientId() || undefined;
      this.send({ hello: { v: PROTOCOL_VERSION, client, token, user: this.conn.user } });
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      try {
        this.dispatch(decodeMsg(ev.data as ArrayBuffer | string));
      } catch (e) {
        // A revision gap, an op that does not fit, garbage: start again from the last good
        // revision rather than go on from a state that may be wrong.
        this.report({ code: 0, msg: `${describe(e)}; resynchronizing` }, true);
        this.dropConnection();
      }
    };
    ws.onclose = () => {
      if (this.ws === ws) this.onSocketClosed();
    };
    ws.onerror = () => {
      if (this.ws !== ws) return;
      this.report({ code: 0, msg: `connection error (${this.url})` }, !this.stopped);
    };
    this.pingTimer = setInterval(() => this.heartbeat(), this.conn.pingIntervalMs);
  }

  /** Closes the current connection at once and handles it as closed. */
  protected dropConnection(): void {
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close();
    } catch {
      // already closed
    }
    this.onSocketClosed();
  }

  private onSocketClosed(): void {
    this.ws = null;
    this.welcomed = this.authPending = false;
    this.refreshFailures = 0;
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.pingTimer = this.refreshTimer = null;
    this.onDisconnected();
    if (this.stopped) return;
    const fatal = this.fatalAuth;
    this.fatalAuth = null;
    if (fatal) {
      this.authFailed(fatal.code, fatal.msg);
      return;
    }
    this.setStatus('offline');
    this.scheduleReconnect();
  }

  /** No accepted token on this attempt: retry with a new one, or stop if none can be had. */
  private authFailed(code: number, msg: string): void {
    this.authFailures++;
    if (!this.tokens.refreshable || this.authFailures >= this.conn.maxTokenAttempts) {
      this.giveUp(code, msg);
      return;
    }
    this.report({ code, msg: `${msg}; retrying with a new token` }, true);
    this.setStatus('offline');
    this.scheduleReconnect();
  }

  /** Stops for want of access, keeping every pending edit (`setToken()` resumes). */
  protected giveUp(code: number, msg: string): void {
    this.stopped = true;
    this.closedBy = 'auth';
    this.clearTimers();
    this.dropConnection();
    this.setStatus('closed');
    const unsent = this.unsent();
    if (unsent.ops.length > 0) this.emit('unsent', unsent);
    const kept = unsent.ops.length > 0 ? `; ${unsent.ops.length} unsent edit(s) kept` : '';
    this.report({ code, msg: `${msg}${kept}; call setToken() to resume` }, false);
  }

  private heartbeat(): void {
    if (Date.now() - this.lastHeard > this.conn.pingTimeoutMs) {
      this.dropConnection();
      return;
    }
    this.send({ ping: { t: Date.now() } });
  }

  /** The server the next (or current) connection goes to. */
  get url(): string {
    return this.conn.urls[this.urlIndex % this.conn.urls.length];
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    // The next server: a node that died or closed the connection is left for another, and
    // the session resumes there by revision (every node serves every document).
    this.urlIndex = (this.urlIndex + 1) % this.conn.urls.length;
    const base = Math.min(this.conn.maxBackoffMs, this.conn.minBackoffMs * 2 ** this.attempt);
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

  /** Records the token's expiry; `now` is the server's clock when it said so (older servers
   * do not send it: the local clock is trusted then). */
  private setExpiry(exp: number | undefined, now: number | undefined): void {
    this.exp = exp;
    if (exp === undefined) this.expiresAtMs = undefined;
    else if (now === undefined) this.expiresAtMs = exp * 1000;
    else this.expiresAtMs = Date.now() + (exp - now) * 1000;
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    const opts = this.conn.tokenRefresh;
    if (opts === false || !this.tokens.refreshable || this.expiresAtMs === undefined) return;
    const delay = refreshDelayMs(this.expiresAtMs - Date.now(), opts);
    this.refreshTimer = setTimeout(() => void this.refresh(), delay);
  }

  /** Presents a new token on the live session. */
  private async refresh(): Promise<void> {
    this.refreshTimer = null;
    const ws = this.ws;
    if (!ws || !this.welcomed || this.stopped) return;
    let token: string | undefined;
    try {
      token = await this.tokens.get();
    } catch (e) {
      if (this.ws === ws) this.refreshFailed(0, `the token provider failed: ${describe(e)}`);
      return;
    }
    if (this.ws !== ws || !this.welcomed || token === undefined) return;
    this.authPending = true;
    this.send({ auth: { token } });
  }

  /** A refresh failed; the session goes on with the old token until it expires. Retried with
   * backoff while the token lasts; after that the server ends the session and reconnecting
   * asks the provider again (with its own bounded attempts). */
  private refreshFailed(code: number, msg: string): void {
    this.refreshFailures++;
    this.report({ code, msg: `token refresh failed: ${msg}` }, true);
    const delay = Math.min(this.conn.maxBackoffMs, this.conn.minBackoffMs * 2 ** this.refreshFailures);
    if (this.expiresAtMs !== undefined && Date.now() + delay >= this.expiresAtMs) return;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => void this.refresh(), delay);
  }

  protected send(msg: ClientMsg): void {
    if (this.ws && this.ws.readyState === OPEN) this.ws.send(encodeMsg(msg));
  }

  /** Handles what concerns the connection and access, hands the rest to `handle`. */
  private dispatch(msg: ServerMsg): void {
    if ('welcome' in msg) {
      const { client, sub, exp, now } = msg.welcome;
      if (this.subject !== undefined && sub !== undefined && sub !== this.subject) {
        // Another user's token: resending this user's edits under it would break
        // exactly-once (the client id is bound to the subject).
        const why = `the token is for "${sub}", this client for "${this.subject}": use a new client`;
        this.giveUp(ErrorCode.NotPermitted, why);
        return;
      }
      this.welcomed = true;
      this.setExpiry(exp, now);
      if (sub !== undefined) this.subject = sub;
      this.scheduleRefresh();
      this.onWelcome(client);
    } else if ('authed' in msg) {
      const { sub, exp, now, roles = [] } = msg.authed;
      this.authPending = false;
      this.authFailures = this.refreshFailures = 0;
      this.setExpiry(exp, now);
      if (sub !== undefined) this.subject = sub;
      this.scheduleRefresh();
      this.onAuthed(roles, sub);
    } else if (
      'error' in msg &&
      this.authPending &&
      msg.error.doc === undefined &&
      AUTH_REFUSED.has(msg.error.code)
    ) {
      this.authPending = false;
      this.refreshFailed(msg.error.code, msg.error.msg);
    } else if ('error' in msg && AUTH_FATAL.has(msg.error.code)) {
      // The server closes the session: reconnect with a new token (or stop without one).
      this.fatalAuth = { code: msg.error.code, msg: msg.error.msg };
      this.dropConnection();
    } else if (!('pong' in msg)) {
      this.handle(msg);
    }
  }
}
