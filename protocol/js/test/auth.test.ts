/** Tokens: the provider before each connection, refresh before expiry on the live session,
 * reconnecting with a fresh token after expiry without losing typed text, bounded retries,
 * stopping with `unsent` when no token can be had, and `setToken()` resuming. Against the
 * simulated server with authentication on. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoeditClient, type ClientOptions } from '../src/client.js';
import type { ClientError, UnsentEvent } from '../src/events.js';
import { refreshDelayMs } from '../src/token.js';
import { fakeToken, FakeServer, manualSockets, sleep, until } from './sim.js';

function authServer(): FakeServer {
  const server = new FakeServer(() => 1);
  server.auth = true;
  return server;
}

function options(server: FakeServer, extra: Partial<ClientOptions>): ClientOptions {
  return { url: 'fake', doc: 'd', WebSocket: server.WebSocket, minBackoffMs: 5, maxBackoffMs: 40, ...extra };
}

const hellos = (server: FakeServer) =>
  server.received.filter((m) => 'hello' in m).map((m) => m.hello as { token?: string });

/** Every applied sequence number of `client` once, 1..k. */
function appliedOnce(server: FakeServer, client: string): void {
  const seqs = [...(server.applied.get(client)?.keys() ?? [])].sort((x, y) => x - y);
  seqs.forEach((s, i) => assert.equal(s, i + 1));
  assert.equal(server.history.filter((r) => r.client === client).length, seqs.length);
}

test('refresh timing: a margin before expiry, half the lifetime for short tokens, never a tight loop', () => {
  assert.equal(refreshDelayMs(3_600_000), 3_600_000 - 360_000); // 10% of an hour
  assert.equal(refreshDelayMs(30_000), 25_000); // at least 5 s before
  assert.equal(refreshDelayMs(4_000), 2_000); // shorter than the margin: half-way
  assert.equal(refreshDelayMs(0), 1_000); // already expired by our clock: not at once
  assert.equal(refreshDelayMs(-50_000), 1_000);
  assert.equal(refreshDelayMs(60_000, { marginMs: 20_000, ratio: 0 }), 40_000);
  assert.equal(refreshDelayMs(100, { minIntervalMs: 10 }), 50);
});

test('the provider is called before each connection and its token goes in hello', async () => {
  const server = authServer();
  const given: string[] = [];
  const token = async () => {
    const t = fakeToken('alice', 'editor', 60_000);
    given.push(t);
    return t;
  };
  const c = new CoeditClient(options(server, { token }));
  await until(() => c.status === 'online', 2000, 'online');
  assert.equal(given.length, 1);
  assert.equal(c.subject, 'alice');
  assert.ok(c.exp && c.exp > Date.now() / 1000);
  for (const s of server.sockets) s.drop();
  await until(() => c.status === 'online' && hellos(server).length === 2, 2000, 'reconnected');
  assert.equal(given.length, 2);
  assert.deepEqual(hellos(server).map((h) => h.token), given);
  assert.deepEqual(server.violations, []);
  c.close();
});

test('a short-lived token is refreshed on the live session before it expires', async () => {
  const server = authServer();
  let calls = 0;
  const token = () => (calls++, fakeToken('alice', 'editor', 400));
  const statuses: string[] = [];
  const c = new CoeditClient(
    options(server, { token, tokenRefresh: { marginMs: 150, minIntervalMs: 20 } }),
  );
  c.on('status', (s) => statuses.push(s));
  await until(() => c.status === 'online', 2000, 'online');
  const firstExp = c.exp!;
  c.submit(['a']);
  await sleep(1200); // three lifetimes
  c.submit([1, 'b']);
  await until(() => server.text === 'ab' && c.synced, 2000, 'typed text saved');
  assert.equal(hellos(server).length, 1, 'one connection: never expired');
  assert.ok(server.received.filter((m) => 'auth' in m).length >= 3, 'refreshed with auth');
  assert.ok(c.exp! > firstExp);
  assert.ok(calls >= 4);
  assert.deepEqual(statuses, ['online']);
  c.close();
});

test('a token that expires mid-session never loses typed text: reconnect with a fresh one, resend once', async () => {
  const server = authServer();
  const token = () => fakeToken('alice', 'editor', 250);
  const c = new CoeditClient(options(server, { token, tokenRefresh: false }));
  const errors: ClientError[] = [];
  c.on('error', (e) => errors.push(e));
  await until(() => c.status === 'online', 2000, 'online');
  c.submit(['before ']);
  await until(() => c.synced, 2000, 'first edit saved');
  await until(() => errors.some((e) => e.code === 5003), 2000, 'the session expired');
  // Typing goes on while the client reconnects (and right after).
  c.submit([7, 'after']);
  await until(() => c.synced && c.status === 'online', 3000, 'saved after expiry');
  assert.equal(server.text, 'before after');
  assert.ok(hellos(server).length >= 2);
  assert.ok(errors.filter((e) => e.code === 5003).every((e) => e.willRetry));
  appliedOnce(server, c.clientId);
  c.close();
});

test('an op refused because the token expired is resent under its sequence number after a fresh token', async () => {
  const server = authServer();
  let n = 0;
  // The first token expires almost at once; the server only notices on the next op.
  const token = () => fakeToken('alice', 'editor', n++ === 0 ? 150 : 60_000);
  const c = new CoeditClient(options(server, { token, tokenRefresh: false }));
  await until(() => c.status === 'online', 2000, 'online');
  for (const s of server.sockets) if (s.expiryTimer) clearTimeout(s.expiryTimer);
  await sleep(200);
  c.submit(['typed late']);
  await until(() => server.text === 'typed late' && c.synced, 3000, 'resent and applied');
  const opMsgs = server.received.filter((m) => 'op' in m).map((m) => m.op as { seq: number });
  assert.deepEqual(opMsgs.map((o) => o.seq), [1, 1], 'refused once, resent under the same seq');
  appliedOnce(server, c.clientId);
  c.close();
});

test('a refused refresh keeps the session and is retried with a new token', async () => {
  const server = authServer();
  let n = 0;
  const token = () => (n++ === 1 ? 'not a token' : fakeToken('alice', 'editor', 400));
  const errors: ClientError[] = [];
  const c = new CoeditClient(options(server, { token, tokenRefresh: { marginMs: 150, minIntervalMs: 20 } }));
  c.on('error', (e) => errors.push(e));
  await until(() => c.status === 'online', 2000, 'online');
  await until(() => n >= 4, 3000, 'refreshed again after the refusal');
  assert.ok(errors.some((e) => e.code === 5002 && e.willRetry), JSON.stringify(errors));
  assert.equal(hellos(server).length, 1, 'the refusal did not close the session');
  assert.equal(c.status, 'online');
  c.close();
});

test('without a provider an expired token stops the client, reports unsent edits, and setToken resumes', async () => {
  const server = authServer();
  const c = new CoeditClient(options(server, { token: fakeToken('alice', 'editor', 150) }));
  const unsent: UnsentEvent[] = [];
  const errors: ClientError[] = [];
  c.on('unsent', (u) => unsent.push(u));
  c.on('error', (e) => errors.push(e));
  await until(() => c.status === 'online', 2000, 'online');
  c.submit(['saved ']);
  await until(() => c.synced, 2000, 'saved');
  // The server only checks expiry on the next op (as on every message).
  for (const s of server.sockets) if (s.expiryTimer) clearTimeout(s.expiryTimer);
  await sleep(200);
  c.submit([6, 'pending']);
  await until(() => c.status === 'closed', 2000, 'stopped');
  assert.equal(unsent.length, 1);
  assert.deepEqual(unsent[0].ops, [[6, 'pending']]);
  assert.equal(unsent[0].text, 'saved pending');
  const last = errors[errors.length - 1];
  assert.equal(last.code, 5003);
  assert.equal(last.willRetry, false);
  // Still editable offline; nothing is lost.
  c.submit([13, '!']);
  assert.equal(c.text, 'saved pending!');
  await sleep(100);
  assert.equal(c.status, 'closed', 'no retries without a new token');
  c.setToken(fakeToken('alice', 'editor', 60_000));
  await until(() => c.synced && c.status === 'online', 3000, 'resumed');
  assert.equal(server.text, 'saved pending!');
  appliedOnce(server, c.clientId);
  c.close();
});

test('a provider that keeps failing is asked a bounded number of times, with backoff, then the client stops', async () => {
  const server = authServer();
  const calls: number[] = [];
  const token = () => {
    calls.push(Date.now());
    return Promise.reject(new Error('backend down'));
  };
  const c = new CoeditClient(options(server, { token, minBackoffMs: 20, maxTokenAttempts: 3 }));
  await until(() => c.status === 'closed', 3000, 'stopped');
  await sleep(200);
  assert.equal(calls.length, 3);
  assert.ok(calls[2] - calls[0] >= 20, 'spaced by backoff');
  assert.equal(hellos(server).length, 0);
  c.setToken(() => fakeToken('alice', 'editor', 60_000));
  await until(() => c.status === 'online', 2000, 'resumed with a working provider');
  c.close();
});

test('tokens refused at hello again and again: bounded attempts, then closed', async () => {
  const server = authServer();
  const token = () => fakeToken('alice', 'editor', -1000); // already expired
  const c = new CoeditClient(options(server, { token, maxTokenAttempts: 3 }));
  await until(() => c.status === 'closed', 3000, 'stopped');
  await sleep(150);
  assert.equal(hellos(server).length, 3);
  c.close();
});

test("a token for another subject is not used to resend this user's edits", async () => {
  const server = authServer();
  let n = 0;
  const token = () => fakeToken(n++ === 0 ? 'alice' : 'bob', 'editor', 60_000);
  const c = new CoeditClient(options(server, { token }));
  const errors: ClientError[] = [];
  c.on('error', (e) => errors.push(e));
  await until(() => c.status === 'online', 2000, 'online');
  server.up = false;
  for (const s of server.sockets) s.drop();
  c.submit(['alice typed']);
  server.up = true;
  await until(() => c.status === 'closed', 2000, 'stopped');
  assert.equal(errors[errors.length - 1].code, 5007);
  assert.equal(server.text, '');
  assert.equal(c.text, 'alice typed');
});

test('a document the token no longer grants (5005) stops the client and keeps the edits', () => {
  const { WebSocket, sockets } = manualSockets();
  const c = new CoeditClient({ url: 'x', doc: 'd', WebSocket, token: 't' });
  const unsent: UnsentEvent[] = [];
  c.on('unsent', (u) => unsent.push(u));
  return (async () => {
    await until(() => sockets.length === 1, 1000, 'socket');
    const s = sockets[0];
    s.open();
    s.receive({ welcome: { v: 1, client: 'me' } });
    s.receive({ snapshot: { doc: 'd', rev: 0, text: '', access: { role: 'editor' } } });
    c.submit(['mine']);
    s.receive({ error: { code: 5005, msg: 'no document "d" (or no access to it)', doc: 'd' } });
    assert.equal(c.status, 'closed');
    assert.equal(s.closed, true);
    assert.deepEqual(unsent, [{ ops: [['mine']], text: 'mine' }]);
  })();
});

test('refresh follows the server clock: a client clock an hour slow still refreshes in time', () => {
  const { WebSocket, sockets } = manualSockets();
  let n = 0;
  const c = new CoeditClient({ url: 'x', doc: 'd', WebSocket, token: () => `t${n++}` });
  return (async () => {
    await until(() => sockets.length === 1, 1000, 'socket');
    const s = sockets[0];
    s.open();
    // The server's clock is an hour ahead of ours; its token has 2 s left by its clock.
    const serverNow = Math.floor(Date.now() / 1000) + 3600;
    s.receive({ welcome: { v: 1, client: 'me', sub: 'alice', exp: serverNow + 2, now: serverNow } });
    await until(() => s.sentOf('auth').length === 1, 3000, 'auth before the token expires by the server clock');
    // An answer without the server clock (an older server): our clock is trusted again.
    s.receive({ authed: { sub: 'alice', exp: serverNow + 3600, roles: [] } });
    await sleep(1500);
    assert.equal(s.sentOf('auth').length, 1, 'no early refresh with two hours left by our clock');
    c.close();
  })();
});
