/** Events an application needs: `synced`, `ack`, `change` with `rev` and `author`, transport
 * errors, faults in message handling caught and resynchronized, the presence timer left alone
 * without a selection, user metadata in hello and presence, throwing listeners. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoeditClient } from '../src/client.js';
import type { AckEvent, ChangeEvent, ClientError } from '../src/events.js';
import { FakeServer, manualSockets, sleep, until } from './sim.js';

/** A client on a manual socket, welcomed and joined at revision `rev` with `text`. */
async function joined(text = '', rev = 0) {
  const { WebSocket, sockets } = manualSockets();
  const c = new CoeditClient({ url: 'x', doc: 'd', WebSocket, minBackoffMs: 5, maxBackoffMs: 10 });
  await until(() => sockets.length === 1, 1000, 'socket');
  const s = sockets[0];
  s.open();
  s.receive({ welcome: { v: 1, client: 'me' } });
  s.receive({ snapshot: { doc: 'd', rev, text } });
  return { c, s, sockets };
}

const remote = (rev: number, op: unknown[], client = 'other', seq = rev) => ({
  ops: { doc: 'd', ops: [{ rev, client, seq, op }] },
});

test('change carries rev and author; ack and synced follow the acknowledgements', async () => {
  const server = new FakeServer(() => 1);
  const o = { url: 'fake', doc: 'd', WebSocket: server.WebSocket };
  const a = new CoeditClient(o);
  const b = new CoeditClient(o);
  const changesA: ChangeEvent[] = [];
  const changesB: ChangeEvent[] = [];
  const acks: AckEvent[] = [];
  const synced: number[] = [];
  a.on('change', (e) => changesA.push(e));
  b.on('change', (e) => changesB.push(e));
  a.on('ack', (e) => acks.push(e));
  a.on('synced', ({ rev }) => synced.push(rev));
  await until(() => a.status === 'online' && b.status === 'online', 2000, 'online');
  assert.equal(changesA[0].author, undefined, 'the first snapshot has no author');
  assert.equal(changesA[0].rev, 0);
  assert.equal(a.synced, true);
  a.submit(['one']);
  a.submit([3, ' two']); // buffered behind the op in flight
  assert.equal(a.synced, false);
  assert.deepEqual(
    changesA.slice(1).map((e) => [e.local, e.rev, e.author]),
    [
      [true, 0, a.clientId],
      [true, 0, a.clientId],
    ],
  );
  await until(() => a.synced && b.text === 'one two', 2000, 'synced');
  assert.deepEqual(acks, [
    { seq: 1, rev: 1 },
    { seq: 2, rev: 2 },
  ]);
  assert.deepEqual(synced, [2], 'synced once, when nothing was pending any more');
  assert.deepEqual(
    changesB.slice(1).map((e) => [e.local, e.rev, e.author]),
    [
      [false, 1, a.clientId],
      [false, 2, a.clientId],
    ],
  );
  assert.equal(a.rev, 2);
  a.close();
  b.close();
});

test('a transport error is reported as code 0', async () => {
  const { c, s } = await joined();
  const errors: ClientError[] = [];
  c.on('error', (e) => errors.push(e));
  s.onerror?.({ type: 'error' });
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 0);
  assert.match(errors[0].msg, /connection error/);
  assert.equal(errors[0].willRetry, true);
  c.close();
});

test('a revision gap is caught, reported, and the client rejoins from its last good revision', async () => {
  const { c, s, sockets } = await joined('abc', 5);
  const errors: ClientError[] = [];
  c.on('error', (e) => errors.push(e));
  s.receive(remote(6, [3, 'd']));
  assert.doesNotThrow(() => s.receive(remote(8, [4, 'f'])));
  assert.equal(errors.length, 1);
  assert.match(errors[0].msg, /expected revision 7, got 8/);
  assert.equal(errors[0].willRetry, true);
  assert.equal(s.closed, true);
  assert.equal(c.text, 'abcd');
  assert.equal(c.rev, 6);
  await until(() => sockets.length === 2, 1000, 'reconnect');
  const s2 = sockets[1];
  s2.open();
  s2.receive({ welcome: { v: 1, client: 'me' } });
  assert.deepEqual(s2.sentOf('join'), [{ doc: 'd', rev: 6 }]);
  s2.receive({ ops: { doc: 'd', ops: [remote(7, [4, 'e']).ops.ops[0], remote(8, [5, 'f']).ops.ops[0]] } });
  assert.equal(c.text, 'abcdef');
  assert.equal(c.status, 'online');
  c.close();
});

test('an op that does not fit is caught and leaves the state untouched', async () => {
  const { c, s } = await joined('abc', 1);
  c.submit([3, '!']); // pending: a bad remote op must not half-transform it
  const errors: ClientError[] = [];
  c.on('error', (e) => errors.push(e));
  assert.doesNotThrow(() => s.receive(remote(2, [50, 'x'])));
  assert.equal(errors.length, 1);
  assert.equal(c.text, 'abc!');
  assert.equal(c.rev, 1);
  assert.deepEqual(c.state.inflight?.op, [3, '!']);
  c.close();
});

/** Calls `fn`, counting the timers it arms. */
function countTimers(fn: () => void): number {
  const real = globalThis.setTimeout;
  let n = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    n++;
    return real(...args);
  }) as typeof setTimeout;
  try {
    fn();
  } finally {
    globalThis.setTimeout = real;
  }
  return n;
}

test('remote ops do not arm the presence timer when no selection was ever set', async () => {
  const { c, s } = await joined();
  let armed = 0;
  for (let rev = 1; rev <= 5; rev++) {
    armed += countTimers(() => s.receive(remote(rev, rev === 1 ? ['x'] : [rev - 1, 'x'])));
    await sleep(40); // longer than the presence delay: a timer armed here would have fired
  }
  assert.equal(c.text, 'xxxxx');
  assert.equal(armed, 0);
  // With a selection, one timer sends it.
  const before = s.sentOf('presence').length;
  assert.equal(countTimers(() => c.setSelection([[1, 1]])), 1);
  await sleep(40);
  assert.equal(s.sentOf('presence').length, before + 1);
  // Moved only by others' edits, it is not re-sent (the server moves it), and no timer is armed.
  assert.equal(countTimers(() => s.receive(remote(6, ['y']))), 0);
  c.close();
});

/** Waits until `client` has a peer entry for `id`. */
const seesPeer = (client: CoeditClient, id: string) => () => client.peers.has(id);

test('user metadata goes out in hello (cleaned) and comes back with peers', async () => {
  const server = new FakeServer(() => 1);
  const o = { url: 'fake', doc: 'd', WebSocket: server.WebSocket };
  const longName = `${'李'.repeat(70)}`;
  const a = new CoeditClient({ ...o, user: { name: 'Ann\u0007 Lee', color: '#00FF7f' } });
  const b = new CoeditClient({ ...o, user: { name: longName, color: 'red' } });
  const c = new CoeditClient(o);
  const usersEvents: number[] = [];
  c.on('users', (u) => usersEvents.push(u.size));
  await until(() => [a, b, c].every((x) => x.status === 'online'), 2000, 'online');
  // The three hellos, in whatever order the clients connected.
  const hellos = server.received
    .filter((m) => 'hello' in m)
    .map((m) => JSON.stringify((m.hello as { user?: unknown }).user ?? null))
    .sort();
  const want = [
    JSON.stringify({ name: 'Ann Lee', color: '#00FF7f' }),
    JSON.stringify({ name: '李'.repeat(64) }), // name cut to 64, bad colour dropped
    'null',
  ].sort();
  assert.deepEqual(hellos, want);
  a.setSelection([[0, 0]]);
  b.setSelection([[0, 0]]);
  await until(seesPeer(c, a.clientId), 2000, 'A at C');
  await until(seesPeer(c, b.clientId), 2000, 'B at C');
  assert.deepEqual(c.peerUsers.get(a.clientId), { name: 'Ann Lee', color: '#00FF7f' });
  assert.equal(c.peerUsers.get(b.clientId)?.name, '李'.repeat(64));
  assert.ok(usersEvents.length >= 2);
  assert.deepEqual(c.peers.get(a.clientId), [[0, 0]], 'peers keeps its shape');
  a.close();
  await until(() => !c.peerUsers.has(a.clientId) && !c.peers.has(a.clientId), 2000, 'A gone');
  assert.deepEqual(server.violations, []);
  b.close();
  c.close();
});

test('a listener that throws does not break the client', async () => {
  const server = new FakeServer(() => 1);
  const o = { url: 'fake', doc: 'd', WebSocket: server.WebSocket };
  const a = new CoeditClient(o);
  const b = new CoeditClient(o);
  const realError = console.error;
  let logged = 0;
  console.error = () => void logged++;
  try {
    b.on('change', () => {
      throw new Error('app bug');
    });
    await until(() => a.status === 'online' && b.status === 'online', 2000, 'online');
    a.submit(['x']);
    a.submit([1, 'y']);
    await until(() => b.text === 'xy' && a.synced, 2000, 'converged');
    assert.equal(b.status, 'online');
    assert.ok(logged >= 2);
  } finally {
    console.error = realError;
  }
  a.close();
  b.close();
});
