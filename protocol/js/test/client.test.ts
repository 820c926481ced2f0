/** The state machine and the client against a simulated server: convergence, exactly-once
 * resends over dropped connections, offline edits, presence. Seeded: `SEED=n` replays. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoeditClient } from '../src/client.js';
import { OtState } from '../src/state.js';
import { FakeServer, FakeSocket, rng, seed, until } from './sim.js';

test('concurrent inserts at one position: the op the server applies later goes first', () => {
  const a = new OtState('a', 0, '');
  const b = new OtState('b', 0, '');
  const oa = a.local(['A'])!;
  const ob = b.local(['B'])!;
  // The server applies a first, then b transformed as the left side: "BA".
  assert.deepEqual(a.onServerOp({ rev: 1, client: 'a', seq: oa.seq, op: ['A'] }), { kind: 'ack', next: null });
  const applied = b.onServerOp({ rev: 1, client: 'a', seq: 1, op: ['A'] });
  assert.equal(applied.kind, 'apply');
  assert.equal(b.text, 'BA');
  assert.deepEqual(b.resend()?.op, ['B']);
  assert.equal(b.resend()?.rev, 1);
  b.onServerOp({ rev: 2, client: 'b', seq: ob.seq, op: ['B'] });
  a.onServerOp({ rev: 2, client: 'b', seq: 1, op: ['B'] });
  assert.equal(a.text, 'BA');
  assert.ok(a.synchronized && b.synchronized);
});

test('edits made while an op is in flight are composed into one and sent after the ack', () => {
  const s = new OtState('me', 0, '');
  const first = s.local(['ab'])!;
  assert.equal(first.seq, 1);
  assert.equal(s.local([2, 'c']), null);
  assert.equal(s.local([3, 'd']), null);
  assert.deepEqual(s.buffer, [2, 'cd']);
  const out = s.onServerOp({ rev: 1, client: 'me', seq: 1, op: ['ab'] });
  assert.deepEqual(out, { kind: 'ack', next: { rev: 1, seq: 2, op: [2, 'cd'] } });
  assert.equal(s.onServerOp({ rev: 1, client: 'x', seq: 9, op: ['zz'] }).kind, 'stale');
  assert.throws(() => s.onServerOp({ rev: 5, client: 'x', seq: 9, op: ['zz'] }));
});

test('clients converge over lossy connections, every op applied exactly once (seeded)', async () => {
  const r = rng(seed());
  const server = new FakeServer(() => Math.floor(r() * 4));
  const n = 3;
  const clients = Array.from({ length: n }, () =>
    new CoeditClient({
      url: 'fake',
      doc: 'd',
      WebSocket: server.WebSocket,
      minBackoffMs: 2,
      maxBackoffMs: 20,
      pingIntervalMs: 50,
      pingTimeoutMs: 200,
    }),
  );
  await until(() => clients.every((c) => c.status === 'online'), 5000, 'all online');
  const words = ['a', 'b', '中', '😀', 'xy', ' '];
  let sent = 0;
  for (let step = 0; step < 400; step++) {
    const c = clients[Math.floor(r() * n)];
    const len = [...c.text].length;
    const roll = r();
    if (roll < 0.05) {
      // The network drops this client's connection (mid-flight ops included).
      for (const s of server.sockets) if (s.client === c.clientId) s.drop();
    } else if (roll < 0.25 && len > 0) {
      const at = Math.floor(r() * len);
      c.submit([at, { d: 1 }]);
      sent++;
    } else {
      const at = Math.floor(r() * (len + 1));
      c.submit([at, words[Math.floor(r() * words.length)]]);
      sent++;
    }
    if (r() < 0.3) await new Promise((res) => setTimeout(res, Math.floor(r() * 3)));
  }
  await until(
    () => clients.every((c) => c.status === 'online' && c.state.synchronized && c.state.rev === server.rev),
    10000,
    'all synchronized',
  );
  for (const c of clients) assert.equal(c.text, server.text);
  // Exactly once: each client's sequence numbers were applied 1..k without gaps or repeats.
  let total = 0;
  for (const c of clients) {
    const seqs = [...(server.applied.get(c.clientId)?.keys() ?? [])].sort((x, y) => x - y);
    seqs.forEach((s, i) => assert.equal(s, i + 1));
    total += seqs.length;
  }
  assert.equal(server.history.length, total);
  assert.ok(total > 0 && total <= sent);
  clients.forEach((c) => c.close());
});

test('edits made offline are kept and sent on reconnect; presence is transformed', async () => {
  const server = new FakeServer(() => 1);
  const opts = { url: 'fake', doc: 'd', WebSocket: server.WebSocket, minBackoffMs: 5, maxBackoffMs: 10 };
  const a = new CoeditClient(opts);
  const b = new CoeditClient(opts);
  await until(() => a.status === 'online' && b.status === 'online');
  a.submit(['hello world']);
  await until(() => b.text === 'hello world');
  b.setSelection([[6, 11]]); // "world"
  await until(() => a.peers.get(b.clientId)?.[0]?.[0] === 6, 2000, 'presence at A');
  // A goes offline and keeps typing.
  server.up = false;
  for (const s of server.sockets) if (s.client === a.clientId) s.drop();
  await until(() => a.status === 'offline');
  a.submit([0, '😀 ']); // A's local text shifts B's selection by 2 characters
  a.submit([13, '!']);
  assert.deepEqual(a.peers.get(b.clientId), [[8, 13]]);
  b.submit([5, ',']);
  server.up = true;
  await until(() => a.status === 'online' && a.state.synchronized && b.text === a.text, 5000, 'converged');
  assert.equal(a.text, '😀 hello, world!');
  assert.equal(server.text, a.text);
  // B's selection, moved through B's own comma (server side) and A's edits (locally).
  await until(() => JSON.stringify(a.peers.get(b.clientId)) === JSON.stringify([[9, 14]]), 2000, 'moved');
  b.setSelection([]);
  await until(() => !a.peers.has(b.clientId), 2000, 'caret hidden');
  a.close();
  b.close();
});

test('an op refused for lack of disk space (4006) is kept and resent until applied', async () => {
  const server = new FakeServer();
  const c = new CoeditClient({ url: 'fake', doc: 'd', WebSocket: server.WebSocket });
  const errors: number[] = [];
  c.on('error', (e) => errors.push(e.code));
  await until(() => c.status === 'online', 5000, 'online');
  server.refuseOps = 4006;
  c.submit(['kept']);
  await until(() => errors.includes(4006), 5000, 'the refusal');
  assert.equal(server.rev, 0);
  assert.equal(c.state.synchronized, false, 'the op is still the client\'s');
  server.refuseOps = null;
  await until(() => server.rev === 1 && c.state.synchronized, 8000, 'applied after space returns');
  assert.equal(server.text, 'kept');
  assert.equal(c.text, 'kept');
  c.close();
});

test('a list of URLs: a server that is down is left for the next, and the session resumes there by revision', async () => {
  const server = new FakeServer();
  const dead = new FakeServer();
  dead.up = false;
  const down = new Set(['ws://node-a/ws']);
  const tried: string[] = [];
  const WebSocket = class extends FakeSocket {
    constructor(url: string) {
      tried.push(url);
      super(down.has(url) ? dead : server);
    }
  };
  assert.throws(() => new CoeditClient({ url: [], doc: 'd', WebSocket }), TypeError);
  const c = new CoeditClient({
    url: ['ws://node-a/ws', 'ws://node-b/ws'],
    doc: 'd',
    WebSocket,
    minBackoffMs: 2,
    maxBackoffMs: 10,
  });
  await until(() => c.status === 'online', 2000, 'online through node-b');
  assert.deepEqual(tried.slice(0, 2), ['ws://node-a/ws', 'ws://node-b/ws']);
  c.submit(['hello']);
  await until(() => c.synced && server.text === 'hello', 2000, 'acked');
  // node-b dies, node-a is back: the client moves to node-a, rejoins at its revision, and the
  // edits typed meanwhile arrive once.
  down.clear();
  down.add('ws://node-b/ws');
  for (const s of server.sockets) if (s.client === c.clientId) s.drop();
  c.submit([5, ' world']);
  await until(() => c.status === 'online' && c.synced, 2000, 'back online');
  assert.equal(tried.at(-1), 'ws://node-a/ws');
  assert.equal(server.text, 'hello world');
  assert.equal(c.text, 'hello world');
  c.close();
});
