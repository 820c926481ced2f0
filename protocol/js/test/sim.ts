/**
 * A simulated coedit server and in-memory WebSockets with latency, for tests of the client
 * without a network. The server follows PROTOCOL.md: submitted ops are transformed as the
 * `left` side against every op applied since their base revision, applied once per
 * `(client, seq)` (a resend of an applied op gets `ack`), and every op is broadcast to every
 * subscriber, the author included. With `auth` on it checks tokens (fake ones, see
 * [`fakeToken`]) at `hello`, `auth` and on ops, closes sessions when their token expires,
 * reports roles in join answers and refuses ops from viewers (5006). It refuses client messages
 * with undocumented fields (1001) and records them in `violations`.
 *
 * [`ManualSocket`] is a socket the test drives by hand (message by message, synchronously).
 */
import { decode, encode } from '@msgpack/msgpack';
import { apply, transform, transformPosition, type TextOp } from '../src/ot.js';
import type { RemoteOp } from '../src/state.js';
import type { SocketLike } from '../src/client.js';
import type { PeerUser, Role } from '../src/wire.js';

/** A seeded random source (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of a randomized test: `SEED` from the environment or a fresh one (printed). */
export function seed(): number {
  const s = process.env.SEED ? Number(process.env.SEED) : Math.floor(Math.random() * 2 ** 31);
  console.log(`SEED=${s}`);
  return s;
}

type Msg = Record<string, Record<string, unknown>>;

/** One direction of a connection: FIFO, each message after its latency (never overtaking). */
class Lane {
  private queue: { at: number; run: () => void }[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  push(latency: number, run: () => void): void {
    const last = this.queue.length > 0 ? this.queue[this.queue.length - 1].at : 0;
    this.queue.push({ at: Math.max(last, Date.now() + latency), run });
    this.arm();
  }

  private arm(): void {
    if (this.timer || this.queue.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      while (this.queue.length > 0 && this.queue[0].at <= Date.now()) this.queue.shift()!.run();
      this.arm();
    }, Math.max(0, this.queue[0].at - Date.now()));
  }
}

/** One simulated connection. */
export class FakeSocket implements SocketLike {
  binaryType = 'arraybuffer';
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  client: string | null = null;
  joined = false;
  /** The session's token claims (with `auth`). */
  claims: FakeClaims | null = null;
  user: PeerUser | undefined;
  expiryTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly toServer = new Lane();
  private readonly toClient = new Lane();

  constructor(private readonly server: FakeServer) {
    if (!server.up) {
      setTimeout(() => this.drop(), 1);
      return;
    }
    server.sockets.add(this);
    setTimeout(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.({});
    }, server.latency());
  }

  send(data: Uint8Array): void {
    if (this.readyState !== 1) return;
    const msg = decode(data) as Msg;
    this.toServer.push(this.server.latency(), () => {
      if (this.readyState === 1) this.server.handle(this, msg);
    });
  }

  /** From the server to the client, in order, after the latency. */
  deliver(msg: Msg): void {
    const data = encode(msg);
    this.toClient.push(this.server.latency(), () => {
      if (this.readyState === 1) this.onmessage?.({ data });
    });
  }

  close(): void {
    this.drop();
  }

  /** The connection breaks (both sides notice). */
  drop(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.server.sockets.delete(this);
    this.server.left(this);
    setTimeout(() => this.onclose?.({ code: 1006 }), 0);
  }
}

/** Claims of a fake token. */
export interface FakeClaims {
  sub: string;
  role: Role;
  /** Expiry, Unix seconds (fractional here, to keep tests short). */
  exp: number;
}

/** A token the fake server accepts: the claims as JSON, expiring `ttlMs` from now. */
export function fakeToken(sub: string, role: Role, ttlMs: number): string {
  return JSON.stringify({ sub, role, exp: (Date.now() + ttlMs) / 1000 });
}

/** The fields each client message may have (PROTOCOL.md). */
const FIELDS: Record<string, string[]> = {
  hello: ['v', 'client', 'token', 'user'],
  auth: ['token'],
  join: ['doc', 'rev'],
  op: ['doc', 'rev', 'seq', 'op', 't'],
  presence: ['doc', 'rev', 'sel'],
  leave: ['doc'],
  ping: ['t'],
};

/** The simulated server (one document). */
export class FakeServer {
  text = '';
  rev = 0;
  history: RemoteOp[] = [];
  /** client → seq → revision it produced. */
  applied = new Map<string, Map<number, number>>();
  sockets = new Set<FakeSocket>();
  presence = new Map<string, [number, number][]>();
  up = true;
  /** While set, every op is refused with this error code and not applied. */
  refuseOps: number | null = null;
  /** Check tokens (see the module documentation). */
  auth = false;
  /** Client messages with undocumented fields (must stay empty). */
  violations: string[] = [];
  /** Every client message received, in order. */
  received: Msg[] = [];
  private next = 1;

  constructor(readonly latency: () => number = () => 1) {}

  /** The claims of `token`, or the error code refusing it. */
  private check(token: unknown): FakeClaims | number {
    if (typeof token !== 'string') return 5001;
    let c: FakeClaims;
    try {
      c = JSON.parse(token) as FakeClaims;
    } catch {
      return 5002;
    }
    if (typeof c.exp !== 'number' || typeof c.sub !== 'string') return 5002;
    return c.exp * 1000 <= Date.now() ? 5003 : c;
  }

  /** Refuses with an auth error and closes (as the server does for 5001–5003). */
  private refuseAuth(s: FakeSocket, code: number, extra: Record<string, unknown> = {}): void {
    s.deliver({ error: { code, msg: `auth refused (${code})`, ...extra } });
    setTimeout(() => s.drop(), this.latency() + 5);
  }

  /** Closes the session when its token expires. */
  private armExpiry(s: FakeSocket): void {
    if (s.expiryTimer) clearTimeout(s.expiryTimer);
    if (!s.claims) return;
    s.expiryTimer = setTimeout(() => {
      if (s.readyState === 1) this.refuseAuth(s, 5003);
    }, Math.max(0, s.claims.exp * 1000 - Date.now()));
  }

  /** A WebSocket constructor bound to this server. */
  get WebSocket(): new (url: string) => SocketLike {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const server = this;
    return class extends FakeSocket {
      constructor(_url: string) {
        super(server);
      }
    };
  }

  private broadcast(msg: Msg, except?: FakeSocket): void {
    for (const s of this.sockets) if (s.joined && s !== except) s.deliver(msg);
  }

  /** `{user}` of the session of `client`, if it announced one. */
  private userOf(client: string): { user?: PeerUser } {
    for (const s of this.sockets) if (s.client === client && s.user) return { user: s.user };
    return {};
  }

  left(s: FakeSocket): void {
    if (s.client && s.joined) {
      this.presence.delete(s.client);
      this.broadcast({ presence: { doc: 'd', rev: this.rev, peers: [{ client: s.client, sel: [] }] } });
    }
  }

  handle(s: FakeSocket, msg: Msg): void {
    this.received.push(msg);
    const [kind, body] = Object.entries(msg)[0] as [string, Record<string, unknown>];
    const extra = Object.keys(body).filter((k) => !(FIELDS[kind] ?? []).includes(k));
    if (!FIELDS[kind] || extra.length > 0) {
      this.violations.push(`${kind}: ${extra.join(', ')}`);
      s.deliver({ error: { code: 1001, msg: `unknown field in ${kind}` } });
      return;
    }
    if (kind !== 'hello' && kind !== 'ping' && s.client === null) {
      s.deliver({ error: { code: 1004, msg: 'send hello first' } });
      return;
    }
    switch (kind) {
      case 'hello': {
        let client = (body.client as string | undefined) ?? `c${this.next++}`;
        if (this.auth) {
          const c = this.check(body.token);
          if (typeof c === 'number') return this.refuseAuth(s, c);
          s.claims = c;
          if (!client.startsWith(`${c.sub}-`)) client = `${c.sub}-${client}`;
          this.armExpiry(s);
        }
        s.client = client;
        s.user = body.user as PeerUser | undefined;
        const claims = s.claims ? { sub: s.claims.sub, exp: s.claims.exp } : {};
        s.deliver({ welcome: { v: 1, client: s.client, ...claims } });
        break;
      }
      case 'auth': {
        const c = this.check(body.token);
        if (typeof c === 'number') {
          s.deliver({ error: { code: c, msg: `auth refused (${c})` } });
        } else if (s.claims && c.sub !== s.claims.sub) {
          s.deliver({ error: { code: 5007, msg: 'another subject' } });
        } else {
          s.claims = c;
          this.armExpiry(s);
          const roles = s.joined ? [{ doc: 'd', role: c.role }] : [];
          s.deliver({ authed: { sub: c.sub, exp: c.exp, roles } });
        }
        break;
      }
      case 'join': {
        s.joined = true;
        const rev = body.rev as number | undefined;
        const access = { role: s.claims?.role ?? 'owner', ...(s.claims ? { sub: s.claims.sub } : {}) };
        if (rev === undefined) s.deliver({ snapshot: { doc: 'd', rev: this.rev, text: this.text, access } });
        else s.deliver({ ops: { doc: 'd', ops: this.history.filter((r) => r.rev > rev), access } });
        const peers = [...this.presence].map(([client, sel]) => ({ client, sel, ...this.userOf(client) }));
        if (peers.length > 0) s.deliver({ presence: { doc: 'd', rev: this.rev, peers } });
        break;
      }
      case 'leave': {
        this.left(s);
        s.joined = false;
        break;
      }
      case 'op': {
        const client = s.client as string;
        const seq = body.seq as number;
        if (s.claims) {
          const c = this.check(JSON.stringify(s.claims));
          if (typeof c === 'number') return this.refuseAuth(s, c, { doc: 'd', seq });
          if (c.role === 'viewer' || c.role === 'commenter') {
            s.deliver({ error: { code: 5006, msg: `role ${c.role} is read-only`, doc: 'd', seq } });
            break;
          }
        }
        if (this.refuseOps !== null) {
          s.deliver({ error: { code: this.refuseOps, msg: 'refused', doc: 'd', seq } });
          break;
        }
        const done = this.applied.get(client)?.get(seq);
        if (done !== undefined) {
          s.deliver({ ack: { doc: 'd', seq, rev: done } });
          break;
        }
        let op = body.op as TextOp;
        for (const r of this.history.filter((h) => h.rev > (body.rev as number))) {
          op = transform(op, r.op, 'left');
        }
        this.text = apply(this.text, op);
        this.rev++;
        const r: RemoteOp = { rev: this.rev, client, seq, op };
        this.history.push(r);
        if (!this.applied.has(client)) this.applied.set(client, new Map());
        this.applied.get(client)!.set(seq, this.rev);
        for (const [c, sel] of this.presence) {
          this.presence.set(c, sel.map(([a, h]) => [transformPosition(a, op), transformPosition(h, op)]));
        }
        this.broadcast({ ops: { doc: 'd', ops: [r] } });
        break;
      }
      case 'presence': {
        let sel = body.sel as [number, number][];
        for (const r of this.history.filter((h) => h.rev > (body.rev as number))) {
          sel = sel.map(([a, h]) => [transformPosition(a, r.op), transformPosition(h, r.op)]);
        }
        this.presence.set(s.client as string, sel);
        const peer = { client: s.client as string, sel, ...this.userOf(s.client as string) };
        this.broadcast({ presence: { doc: 'd', rev: this.rev, peers: [peer] } }, s);
        break;
      }
      case 'ping':
        s.deliver({ pong: { t: body.t } });
        break;
    }
  }
}

/** Waits until `cond` holds, polling; fails after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A socket the test drives by hand: `open()`, `receive(msg)` (delivered synchronously), and
 * `sent` (the decoded messages the client sent). */
export class ManualSocket implements SocketLike {
  binaryType = 'arraybuffer';
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: Msg[] = [];
  closed = false;

  send(data: Uint8Array): void {
    this.sent.push(decode(data) as Msg);
  }

  close(): void {
    this.closed = true;
    this.readyState = 3;
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(msg: Msg): void {
    this.onmessage?.({ data: encode(msg) });
  }

  /** The messages of one kind the client sent. */
  sentOf(kind: string): Record<string, unknown>[] {
    return this.sent.filter((m) => kind in m).map((m) => m[kind]);
  }
}

/** A WebSocket constructor making [`ManualSocket`]s, with the list of sockets made. */
export function manualSockets(): { WebSocket: new (url: string) => SocketLike; sockets: ManualSocket[] } {
  const sockets: ManualSocket[] = [];
  return {
    sockets,
    WebSocket: class extends ManualSocket {
      constructor(_url: string) {
        super();
        sockets.push(this);
      }
    },
  };
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
