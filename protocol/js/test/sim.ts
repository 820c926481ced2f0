/**
 * A simulated coedit server and in-memory WebSockets with latency, for tests of the client
 * without a network. The server follows PROTOCOL.md: submitted ops are transformed as the
 * `left` side against every op applied since their base revision, applied once per
 * `(client, seq)` (a resend of an applied op gets `ack`), and every op is broadcast to every
 * subscriber, the author included.
 */
import { decode, encode } from '@msgpack/msgpack';
import { apply, transform, transformPosition, type TextOp } from '../src/ot.js';
import type { RemoteOp } from '../src/state.js';
import type { SocketLike } from '../src/client.js';

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
    this.server.sockets.delete(this);
    this.server.left(this);
    setTimeout(() => this.onclose?.({ code: 1006 }), 0);
  }
}

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
  private next = 1;

  constructor(readonly latency: () => number = () => 1) {}

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

  left(s: FakeSocket): void {
    if (s.client && s.joined) {
      this.presence.delete(s.client);
      this.broadcast({ presence: { doc: 'd', rev: this.rev, peers: [{ client: s.client, sel: [] }] } });
    }
  }

  handle(s: FakeSocket, msg: Msg): void {
    const [kind, body] = Object.entries(msg)[0] as [string, Record<string, unknown>];
    switch (kind) {
      case 'hello': {
        s.client = (body.client as string | undefined) ?? `c${this.next++}`;
        s.deliver({ welcome: { v: 1, client: s.client } });
        break;
      }
      case 'join': {
        s.joined = true;
        const rev = body.rev as number | undefined;
        if (rev === undefined) s.deliver({ snapshot: { doc: 'd', rev: this.rev, text: this.text } });
        else s.deliver({ ops: { doc: 'd', ops: this.history.filter((r) => r.rev > rev) } });
        const peers = [...this.presence].map(([client, sel]) => ({ client, sel }));
        if (peers.length > 0) s.deliver({ presence: { doc: 'd', rev: this.rev, peers } });
        break;
      }
      case 'op': {
        const client = s.client as string;
        const seq = body.seq as number;
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
        this.broadcast({ presence: { doc: 'd', rev: this.rev, peers: [{ client: s.client, sel }] } }, s);
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
