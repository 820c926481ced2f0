// tests/yjs-interop/cluster.test.mjs: Yjs documents in cluster mode, with the real npm clients
// (y-websocket's WebsocketProvider, @hocuspocus/provider's HocuspocusProvider) connected to
// different coedit nodes of one cluster: three `coedit serve` on 127.0.0.1 sharing one
// `nats-server -js` (docs/CLUSTER.md), with authentication on (HMAC-SM3 tokens). One node
// orders each document (it holds the lease); the others route their sessions' sync, updates
// and awareness to it, and forward REST calls.
//
// Needs a nats-server: $COEDIT_NATS_SERVER or `nats-server` on the PATH (.ci/nats-server.sh
// installs one). Without it the suite is skipped, unless COEDIT_REQUIRE_NATS=1 (CI), where it
// fails. Every process it starts is killed at exit (harness.mjs); every wait is bounded.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  QUIET_MS,
  Y,
  allSynced,
  api,
  authLines,
  coedit,
  contentOf,
  converge,
  describeDocs,
  docName,
  hocus,
  killServer,
  natsBinary,
  prng,
  sleep,
  startNats,
  startServer,
  stopServer,
  tokenMaker,
  until,
  writeConfig,
  yws,
} from './harness.mjs';

const SEED = Number(process.env.YJS_INTEROP_SEED ?? Math.floor(Math.random() * 2 ** 32));
/** Lease time of the nodes (short: the failover test waits for it to expire). */
const LEASE_MS = 2_000;
const RENEW_MS = 500;
/** Longest a failover may take: the lease, the owner-silence detection, reconnect backoffs. */
const FAILOVER_MS = 30_000;

const NATS = natsBinary();
const REQUIRED = process.env.COEDIT_REQUIRE_NATS === '1';
if (!NATS && REQUIRED) throw new Error('COEDIT_REQUIRE_NATS=1 but no nats-server (set COEDIT_NATS_SERVER)');
const skip = NATS ? false : 'no nats-server (set COEDIT_NATS_SERVER or put nats-server on the PATH)';

const fx = { nodes: [] };

before(async () => {
  if (!NATS) return;
  fx.dir = mkdtempSync(join(tmpdir(), 'coedit-yjs-cluster-'));
  fx.keys = join(fx.dir, 'keys');
  coedit(['keygen', '--out', fx.keys]);
  fx.token = tokenMaker('hmac', fx.keys);
  fx.nats = await startNats(NATS, fx.dir);
  fx.nodes = await Promise.all(
    [0, 1, 2].map((i) => {
      const name = `node-${i}`;
      const config = writeConfig(fx.dir, name, authLines('hmac', fx.keys));
      appendFileSync(
        config,
        [
          '[storage]',
          'backend = "jetstream"',
          '[cluster]',
          `nats = ["${fx.nats.url}"]`,
          `node = "${name}"`,
          'replicas = 1',
          `lease_ms = ${LEASE_MS}`,
          `renew_ms = ${RENEW_MS}`,
          '',
        ].join('\n'),
      );
      return startServer({ dir: fx.dir, name, dataDir: join(fx.dir, `data-${name}`), config });
    }),
  );
});

after(async () => {
  await Promise.all(fx.nodes.map(stopServer));
  if (fx.nats) {
    fx.nats.child.kill('SIGKILL');
    await fx.nats.exited;
  }
  if (fx.dir && !process.env.YJS_INTEROP_KEEP) rmSync(fx.dir, { recursive: true, force: true });
});

/** Clients made in a test, destroyed when it ends (whatever happened). */
function clientsOf(t) {
  const made = [];
  t.after(() => {
    for (const c of made) {
      try {
        c.destroy();
      } catch {
        // already destroyed
      }
    }
  });
  return (c) => (made.push(c), c);
}

/** A random edit of the text and the map by `who`. */
function edit(doc, who, rng, n) {
  doc.transact(() => {
    const text = doc.getText('text');
    const len = text.length;
    if (len > 20 && rng.int(4) === 0) text.delete(rng.int(len - 3), 1 + rng.int(3));
    else text.insert(rng.int(len + 1), `${who}${n} `);
    if (rng.int(3) === 0) doc.getMap('map').set(`${who}`, n);
  });
}

/** An editor's token (every document of tenant acme). */
const editor = () => fx.token('editor');

/** GET …/state from `node`, applied to a fresh Y.Doc. */
async function stateFrom(node, name) {
  const r = await api(node, 'GET', `/api/docs/${name}/state`, { token: editor() });
  assert.equal(r.status, 200, `${node.name}: ${r.text}`);
  const doc = new Y.Doc();
  Y.applyUpdate(doc, r.bytes);
  return { doc, servedBy: r.headers.get('x-coedit-served-by') };
}

/** Whether state vector `have` covers `want` (every client's clock at least as far). */
function covers(have, want) {
  const h = Y.decodeStateVector(have);
  for (const [client, clock] of Y.decodeStateVector(want)) if ((h.get(client) ?? 0) < clock) return false;
  return true;
}

describe('cluster mode: Yjs documents routed between nodes (3 coedit nodes, one nats-server)', { skip }, () => {
  test('y-websocket and Hocuspocus clients on three nodes converge; awareness crosses nodes; REST from any node', async (t) => {
    const own = clientsOf(t);
    const [n0, n1, n2] = fx.nodes;
    const name = docName('cluster');
    const rng = prng(SEED);
    t.diagnostic(`SEED=${SEED} (replay: YJS_INTEROP_SEED=${SEED})`);
    // The first client's node takes the lease: node-0 orders the document.
    const a = own(yws(n0, name, { token: editor() }));
    await allSynced([a]);
    const b = own(hocus(n1, name, { token: editor() }));
    const c = own(yws(n2, name, { token: editor() }));
    const clients = [a, b, c];
    t.diagnostic(`initial sync of two clients on non-owner nodes: ${await allSynced(clients)} ms`);
    assert.deepEqual(b.log.scopes, ['read-write'], b.describe());

    let edits = 0;
    for (let round = 0; round < 20; round++) {
      for (const [i, x] of clients.entries()) edit(x.doc, 'ABC'[i], rng, edits++);
      await sleep(rng.int(30));
    }
    const ms = await converge(
      clients.map((x) => x.doc),
      `convergence across nodes (SEED=${SEED})`,
    );
    t.diagnostic(`${edits} concurrent edits on 3 nodes converged (${ms} ms of waiting)`);
    await until(() => b.provider.unsyncedChanges === 0, 'Hocuspocus (node-1) unsyncedChanges 0', { detail: b.describe });
    assert.ok(!b.log.syncStatus.includes(false), b.describe());

    // Awareness crosses nodes both ways.
    const aw = (x) => x.provider.awareness;
    const nameIn = (x, of) => aw(x).getStates().get(of.doc.clientID)?.user?.name;
    aw(a).setLocalStateField('user', { name: 'on-node-0' });
    b.provider.setAwarenessField('user', { name: 'on-node-1' });
    aw(c).setLocalStateField('user', { name: 'on-node-2' });
    await until(
      () =>
        nameIn(a, b) === 'on-node-1' &&
        nameIn(a, c) === 'on-node-2' &&
        nameIn(b, a) === 'on-node-0' &&
        nameIn(b, c) === 'on-node-2' &&
        nameIn(c, a) === 'on-node-0' &&
        nameIn(c, b) === 'on-node-1',
      'every awareness state at every client',
      { detail: () => clients.map((x) => `  ${x.kind}: ${JSON.stringify([...aw(x).getStates()])}`).join('\n') },
    );
    // A client leaving a non-owner node is removed at the others.
    c.destroy();
    await until(
      () => ![a, b].some((x) => aw(x).getStates().has(c.doc.clientID)),
      "the leaver's awareness removed at the others",
    );

    // REST from every node: the owner answers, the others forward to it (and say so).
    for (const node of fx.nodes) {
      const { doc, servedBy } = await stateFrom(node, name);
      assert.ok(
        contentOf(doc).text === contentOf(a.doc).text,
        `${node.name}: …/state differs from the clients:\n${describeDocs([doc, a.doc])}`,
      );
      assert.equal(servedBy, node === n0 ? null : 'node-0', `${node.name} answered for node-0's document`);
      const r = await api(node, 'GET', `/api/docs/${name}`, { token: editor() });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.kind, 'yjs', r.text);
    }
    // An update posted to a non-owner node reaches the clients.
    const fresh = (await stateFrom(n2, name)).doc;
    const sv = Y.encodeStateVector(fresh);
    fresh.getText('text').insert(0, '[posted to node-2] ');
    const posted = await api(n2, 'POST', `/api/docs/${name}/updates`, {
      token: editor(),
      body: Y.encodeStateAsUpdate(fresh, sv),
    });
    assert.equal(posted.status, 200, posted.text);
    assert.equal(posted.headers.get('x-coedit-served-by'), 'node-0', posted.text);
    await converge([fresh, a.doc, b.doc], 'the update posted to node-2 at every client');
  });

  test('a text document is refused to a Yjs client on another node, as on one node', async (t) => {
    const own = clientsOf(t);
    const [n0, n1] = fx.nodes;
    const name = docName('cluster-text');
    const created = await api(n0, 'POST', `/api/docs/${name}/ops`, {
      token: editor(),
      body: { base_rev: 0, op: ['hello'] },
    });
    assert.equal(created.status, 200, created.text);
    const ws = own(yws(n1, name, { token: editor() }));
    await until(() => ws.log.closes.some((x) => x !== 'local'), 'the y-websocket socket closed by node-1', {
      detail: ws.describe,
    });
    const close = ws.log.closes.find((x) => x !== 'local');
    assert.equal(close.code, 4409, ws.describe());
    assert.match(close.reason, /^3006 /, ws.describe());
    const r = await api(n1, 'GET', `/api/docs/${name}`, { token: editor() });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.text, 'hello', r.text);
    assert.equal(r.headers.get('x-coedit-served-by'), 'node-0', r.text);
  });

  test('viewers on non-owner nodes sync but their edits reach nobody; tokens are checked where calls arrive', async (t) => {
    const own = clientsOf(t);
    const [n0, n1, n2] = fx.nodes;
    const name = docName('cluster-viewer');
    const e = own(hocus(n0, name, { token: editor() }));
    await allSynced([e]);
    e.doc.getText('text').insert(0, 'written by the editor');
    await until(() => e.provider.unsyncedChanges === 0, 'the editor’s edit acknowledged', { detail: e.describe });
    const hv = own(hocus(n1, name, { token: fx.token('viewer') }));
    const wv = own(yws(n2, name, { token: fx.token('viewer') }));
    await allSynced([hv, wv]);
    assert.deepEqual(hv.log.scopes, ['readonly'], hv.describe());
    await converge([e.doc, hv.doc, wv.doc], 'the viewers to receive the document');
    hv.doc.getText('text').insert(0, 'HP-VIEWER ');
    wv.doc.getText('text').insert(0, 'WS-VIEWER ');
    await until(() => hv.log.syncStatus.includes(false), 'SyncStatus(false) for the Hocuspocus viewer on node-1', {
      detail: hv.describe,
    });
    await until(() => wv.log.denied.length > 0, 'permission denied for the y-websocket viewer on node-2', {
      detail: wv.describe,
    });
    for (const reason of wv.log.denied) assert.equal(JSON.parse(reason).error?.code, 5006, wv.describe());
    e.doc.getText('text').insert(e.doc.getText('text').length, ' and more');
    await until(
      () => [hv, wv].every((v) => v.doc.getText('text').toString().endsWith(' and more')),
      'the viewers to receive a later edit',
    );
    await sleep(QUIET_MS);
    assert.ok(!e.doc.getText('text').toString().includes('VIEWER'), e.doc.getText('text').toString());
    const { doc } = await stateFrom(n2, name);
    assert.ok(!doc.getText('text').toString().includes('VIEWER'), doc.getText('text').toString());
    // REST through a non-owner: the node a call reaches checks its token and role (and the
    // owner checks them again on a forwarded call): no token 401, a viewer reads (forwarded)
    // but does not write (403 / 5006), another tenant's token gets nothing.
    const anon = await api(n1, 'GET', `/api/docs/${name}`);
    assert.equal(anon.status, 401, anon.text);
    const read = await api(n1, 'GET', `/api/docs/${name}`, { token: fx.token('viewer') });
    assert.equal(read.status, 200, read.text);
    assert.equal(read.headers.get('x-coedit-served-by'), 'node-0', read.text);
    const u = new Y.Doc();
    Y.applyUpdate(u, (await api(n1, 'GET', `/api/docs/${name}/state`, { token: editor() })).bytes);
    const sv = Y.encodeStateVector(u);
    u.getText('text').insert(0, 'REST-VIEWER ');
    const denied = await api(n1, 'POST', `/api/docs/${name}/updates`, {
      token: fx.token('viewer'),
      body: Y.encodeStateAsUpdate(u, sv),
    });
    assert.equal(denied.status, 403, denied.text);
    assert.equal(denied.json?.error?.code, 5006, denied.text);
    const other = await api(n1, 'GET', `/api/docs/${name}`, { token: fx.token('editor', { tenant: 'other' }) });
    assert.ok([403, 404].includes(other.status), `another tenant's token: ${other.status} ${other.text}`);
  });

  // Last: it kills node-0.
  test('the owner is killed: clients on the other nodes carry on, nothing acknowledged is lost', async (t) => {
    const own = clientsOf(t);
    const [n0, n1, n2] = fx.nodes;
    const name = docName('cluster-failover');
    const rng = prng(SEED + 1);
    const a = own(yws(n0, name, { token: editor() }));
    await allSynced([a]);
    const b = own(hocus(n1, name, { token: editor() }));
    const c = own(yws(n2, name, { token: editor() }));
    await allSynced([a, b, c]);
    let edits = 0;
    for (let round = 0; round < 10; round++) {
      for (const [i, x] of [a, b, c].entries()) edit(x.doc, 'abc'[i], rng, edits++);
      await sleep(10);
    }
    await converge([a.doc, b.doc, c.doc], 'convergence before the kill');
    await until(() => b.provider.unsyncedChanges === 0, 'Hocuspocus unsyncedChanges 0 before the kill', {
      detail: b.describe,
    });
    // Relayed to clients on other nodes means durable (strict mode): all of it is acknowledged.
    const acked = Y.encodeStateVector(b.doc);
    const before = contentOf(b.doc).text;

    const killedAt = performance.now();
    await killServer(n0);
    a.destroy();
    // They type through the failover.
    for (let round = 0; round < 10; round++) {
      edit(b.doc, 'B', rng, edits++);
      edit(c.doc, 'C', rng, edits++);
      await sleep(100);
    }
    await until(() => b.synced() && c.synced() && b.provider.unsyncedChanges === 0, 'the clients of node-1 and node-2 synced again', {
      ms: FAILOVER_MS,
      detail: () => `${b.describe()}\n${c.describe()}`,
    });
    const failover = Math.round(performance.now() - killedAt);
    await converge([b.doc, c.doc], 'convergence after the failover');
    const { doc: stored, servedBy } = await stateFrom(n2, name);
    assert.ok(
      covers(Y.encodeStateVector(stored), acked),
      `an acknowledged update is missing after the failover:\nbefore: ${before}\nnow: ${contentOf(stored).text}`,
    );
    assert.ok(
      covers(Y.encodeStateVector(stored), Y.encodeStateVector(b.doc)),
      `the server lacks what the clients converged on:\n${describeDocs([stored, b.doc])}`,
    );
    assert.ok(['node-1', null].includes(servedBy), `served by ${servedBy}: node-0 is dead`);
    t.diagnostic(
      `owner node-0 killed: the clients on node-1 (Hocuspocus) and node-2 (y-websocket) synced again ` +
        `${failover} ms later (lease ${LEASE_MS} ms); ${edits} edits, none lost`,
    );
  });
});
