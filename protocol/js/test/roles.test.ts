/** Roles: the join answer's access, viewers refused locally (5006, nothing changed), a server
 * refusal of an op in flight resynchronizing from a snapshot with the edits in `lost`, and the
 * textarea binding's `readOnly`. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoeditClient } from '../src/client.js';
import type { AccessEvent, ClientError, LostEvent } from '../src/events.js';
import { bindTextarea } from '../src/textarea.js';
import { asTextarea, FakeTextarea, installDocument } from './dom.js';
import { fakeToken, FakeServer, manualSockets, until } from './sim.js';

function authServer(): FakeServer {
  const server = new FakeServer(() => 1);
  server.auth = true;
  return server;
}

const opts = (server: FakeServer, token: string) => ({
  url: 'fake',
  doc: 'd',
  WebSocket: server.WebSocket,
  minBackoffMs: 5,
  maxBackoffMs: 40,
  token,
});

test('without authentication the role is owner; the access event reports it', async () => {
  const server = new FakeServer(() => 1);
  const c = new CoeditClient({ url: 'fake', doc: 'd', WebSocket: server.WebSocket });
  const seen: AccessEvent[] = [];
  c.on('access', (a) => seen.push(a));
  assert.equal(c.role, null);
  assert.equal(c.canWrite, true, 'writable until told otherwise');
  await until(() => c.status === 'online', 2000, 'online');
  assert.equal(c.role, 'owner');
  assert.deepEqual(seen, [{ role: 'owner', subject: undefined, canWrite: true }]);
  c.close();
});

test('a viewer cannot change the text: submit and undo are refused locally with 5006', async () => {
  const server = authServer();
  const editor = new CoeditClient(opts(server, fakeToken('ed', 'editor', 60_000)));
  await until(() => editor.status === 'online', 2000, 'editor online');
  editor.submit(['shared text']);
  await until(() => server.text === 'shared text', 2000, 'saved');
  const viewer = new CoeditClient(opts(server, fakeToken('vic', 'viewer', 60_000)));
  const errors: ClientError[] = [];
  const access: AccessEvent[] = [];
  viewer.on('error', (e) => errors.push(e));
  viewer.on('access', (a) => access.push(a));
  await until(() => viewer.status === 'online' && viewer.text === 'shared text', 2000, 'viewer online');
  assert.equal(viewer.role, 'viewer');
  assert.equal(viewer.subject, 'vic');
  assert.equal(viewer.canWrite, false);
  assert.deepEqual(access, [{ role: 'viewer', subject: 'vic', canWrite: false }]);
  let changes = 0;
  viewer.on('change', () => changes++);
  assert.equal(viewer.submit([0, 'x']), false);
  assert.equal(viewer.undo(), false);
  assert.equal(viewer.text, 'shared text');
  assert.equal(changes, 0);
  assert.equal(errors.length, 2);
  assert.equal(errors[0].code, 5006);
  assert.match(errors[0].msg, /read-only.*viewer/);
  assert.equal(errors[0].willRetry, false);
  assert.equal(server.received.filter((m) => 'op' in m).length, 1, "only the editor's op was sent");
  editor.close();
  viewer.close();
});

test('an op in flight refused as read-only (5006): error, resync from a snapshot, edits in lost', async () => {
  const server = authServer();
  const a = new CoeditClient(opts(server, fakeToken('ann', 'editor', 60_000)));
  const b = new CoeditClient(opts(server, fakeToken('bob', 'editor', 60_000)));
  await until(() => a.status === 'online' && b.status === 'online', 2000, 'online');
  a.submit(['base']);
  await until(() => b.text === 'base', 2000, 'shared');
  // The server downgrades A without A knowing yet (a grant changed).
  for (const s of server.sockets) if (s.client === a.clientId) s.claims!.role = 'viewer';
  const errors: ClientError[] = [];
  const lost: LostEvent[] = [];
  a.on('error', (e) => errors.push(e));
  a.on('lost', (l) => lost.push(l));
  b.submit([4, ' from B']);
  a.submit([0, 'A: ']);
  await until(() => lost.length === 1, 2000, 'lost reported');
  await until(() => a.text === server.text && a.synced, 2000, 'resynced');
  assert.equal(errors[0].code, 5006);
  assert.equal(errors[0].willRetry, false);
  assert.equal(server.text, 'base from B');
  assert.equal(a.text, 'base from B', 'local text matches the server');
  assert.deepEqual(lost[0].ops.length, 1);
  assert.ok(lost[0].text.startsWith('A: base'), lost[0].text);
  assert.equal(a.role, 'viewer', 'the snapshot told the new role');
  assert.equal(a.canWrite, false);
  assert.deepEqual(server.violations, []);
  a.close();
  b.close();
});

test('the textarea is read-only while the role cannot write, and writable again after authed', async () => {
  const restore = installDocument(null);
  try {
    const { WebSocket, sockets } = manualSockets();
    const c = new CoeditClient({ url: 'x', doc: 'd', WebSocket, token: 'viewer-token' });
    const ta = new FakeTextarea();
    const binding = bindTextarea(asTextarea(ta), c);
    assert.equal(ta.readOnly, false);
    await until(() => sockets.length === 1, 1000, 'socket');
    const s = sockets[0];
    s.open();
    s.receive({ welcome: { v: 1, client: 'me', sub: 'vic', exp: Date.now() / 1000 + 60 } });
    s.receive({ snapshot: { doc: 'd', rev: 3, text: 'hello', access: { role: 'viewer', sub: 'vic' } } });
    assert.equal(ta.value, 'hello');
    assert.equal(ta.readOnly, true);
    // Even if an input gets through, the text is put back and nothing is sent.
    ta.selectionStart = ta.selectionEnd = 5;
    ta.type('!');
    assert.equal(ta.value, 'hello');
    assert.equal(s.sentOf('op').length, 0);
    c.setToken('editor-token');
    await until(() => s.sentOf('auth').length === 1, 1000, 'auth sent');
    assert.deepEqual(s.sentOf('auth')[0], { token: 'editor-token' });
    s.receive({ authed: { sub: 'vic', exp: Date.now() / 1000 + 60, roles: [{ doc: 'd', role: 'editor' }] } });
    assert.equal(c.role, 'editor');
    assert.equal(ta.readOnly, false);
    ta.type('!');
    assert.equal(c.text, 'hello!');
    assert.deepEqual(s.sentOf('op')[0], { doc: 'd', rev: 3, seq: 1, op: [5, '!'] });
    binding.unbind();
    c.close();
  } finally {
    restore();
  }
});
