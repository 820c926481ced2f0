// Interoperability of coedit's Yjs documents with the real npm clients (node --test; run by
// ./test.sh): yjs 13.6, y-websocket 3.x (WebsocketProvider on GET /yjs/{doc}) and
// @hocuspocus/provider 4.x (HocuspocusProvider on GET /hocuspocus), on the `ws` package,
// against the real coedit binary on 127.0.0.1.
//
// 1. Convergence: y-websocket and Hocuspocus clients edit a Y.Text, a Y.Map (with a nested
//    map), a Y.XmlFragment (paragraphs of Y.XmlText, a heading with an attribute) and a
//    Y.Array concurrently, seeded (SEED=…, replay with YJS_INTEROP_SEED); all converge, the
//    REST view (GET /api/docs/{id}) and the whole state (GET …/state) match, and an update
//    posted over REST (POST …/updates) reaches every client. Awareness crosses protocols, a
//    late joiner is told who is present, a client that leaves is removed. One Hocuspocus
//    socket carries two documents without crosstalk.
// 2. Offline and back, on either protocol: nothing typed offline is lost or doubled.
// 3. Durability: a Hocuspocus client's `unsyncedChanges` reaching 0 (every update answered
//    SyncStatus(true)) means durable: SIGKILL at that instant, restart, and a fresh client of
//    either protocol sees every edit. Likewise for y-websocket edits once another client has
//    received them (the server broadcasts only what is durable).
// 4. Authentication (hmac-sm3 and sm2 servers, tokens from protocol/issuers/node): editors
//    are `read-write`, viewers `readonly` and their edits reach nobody (Hocuspocus
//    SyncStatus(false); y-websocket Auth permission denied with the JSON error 5006); bad,
//    forged, expired and missing tokens get nothing (a y-websocket client is closed with 4401,
//    which it takes as final); tenants are separate namespaces; REST honours
//    the same roles.
// 5. Older providers: @hocuspocus/provider 2.x and 3.x beside 4.x on one document.
// 6. Kinds: a plain-text document's id is refused on both Yjs endpoints and keeps its kind;
//    a Yjs document refuses text ops; history (/versions, ?rev=N); a deleted Yjs document
//    frees its id.
//
// Owns every server it starts (127.0.0.1, port 0, data under one temp dir; stopped in the
// after hook, killed at exit or on a signal) and every client (destroyed after each test).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';

import {
  QUIET_MS,
  ROOTS,
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
  hocusSocket,
  prng,
  restartServer,
  sameDocs,
  sleep,
  startServer,
  stopServer,
  svHex,
  tokenMaker,
  until,
  writeConfig,
  yws,
} from './harness.mjs';

const SEED = Number(process.env.YJS_INTEROP_SEED ?? Math.floor(Math.random() * 2 ** 32));
/** Rounds of concurrent random edits in the convergence test. */
const ROUNDS = 25;

const fx = {};

before(async () => {
  fx.dir = mkdtempSync(join(tmpdir(), 'coedit-yjs-interop-'));
  fx.keys = join(fx.dir, 'keys');
  coedit(['keygen', '--out', fx.keys]);
  const start = (name, auth) =>
    startServer({
      dir: fx.dir,
      name,
      dataDir: join(fx.dir, `data-${name}`),
      config: writeConfig(fx.dir, name, auth),
    });
  [fx.plain, fx.hmac, fx.sm2] = await Promise.all([
    start('plain', null),
    start('hmac', authLines('hmac', fx.keys)),
    start('sm2', authLines('sm2', fx.keys)),
  ]);
});

after(async () => {
  await Promise.all([fx.plain, fx.hmac, fx.sm2, fx.durable].map(stopServer));
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

// ---- edits -------------------------------------------------------------------------------

/** `i` moved left off the middle of a surrogate pair (an index Yjs and the server agree on). */
function safeIndex(s, i) {
  return i > 0 && i < s.length && (s.charCodeAt(i - 1) & 0xfc00) === 0xd800 ? i - 1 : i;
}

const paragraph = (text) => {
  const p = new Y.XmlElement('paragraph');
  p.insert(0, [new Y.XmlText(text)]);
  return p;
};

/** The content every convergence run starts from, written by one client. */
function writeInitial(doc) {
  doc.transact(() => {
    doc.getText('text').insert(0, 'Hello 你好 😀 world.');
    const map = doc.getMap('map');
    map.set('title', 'interop');
    map.set('count', 0);
    map.set('flags', { a: true, list: [1, 2, 3], half: 0.5 });
    map.set('nested', new Y.Map());
    const heading = new Y.XmlElement('heading');
    heading.setAttribute('level', '1');
    heading.insert(0, [new Y.XmlText('Title')]);
    doc.getXmlFragment('prosemirror').insert(0, [heading, paragraph('first paragraph')]);
    doc.getArray('list').insert(0, ['zero', 1, { two: 2 }]);
  });
}

const PIECES = ['ab', '你好', '😀', 'ü', ' ', 'xyz', '🦊中'];

/** One random edit of `doc` by `who` (its own transaction, so its own update). */
function randomEdit(doc, who, rng, n) {
  const text = doc.getText('text');
  const map = doc.getMap('map');
  const frag = doc.getXmlFragment('prosemirror');
  const list = doc.getArray('list');
  const tag = `[${who}${n}${rng.pick(PIECES)}]`;
  const edits = [
    () => text.insert(safeIndex(text.toString(), rng.int(text.length + 1)), tag),
    () => text.insert(text.length, tag),
    () => {
      if (text.length < 12) return;
      const s = text.toString();
      const from = safeIndex(s, rng.int(s.length - 4));
      const to = safeIndex(s, Math.min(s.length, from + 1 + rng.int(4)));
      if (to > from) text.delete(from, to - from);
    },
    () => {
      const s = text.toString();
      const from = safeIndex(s, rng.int(s.length));
      const to = safeIndex(s, Math.min(s.length, from + 1 + rng.int(6)));
      if (to > from) text.format(from, to - from, { bold: true });
    },
    () => map.set(`${who}-${n}`, rng.pick([n, `v${n}`, true, { n, who }, [n, n + 1]])),
    () => map.set('winner', who),
    () => map.set('count', n),
    () => {
      const nested = map.get('nested');
      if (nested instanceof Y.Map) nested.set(who, n);
    },
    () => {
      const own = [...map.keys()].filter((k) => k.startsWith(`${who}-`));
      if (own.length) map.delete(rng.pick(own));
    },
    () => frag.insert(rng.int(frag.length + 1), [paragraph(`p ${who}${n} ${rng.pick(PIECES)}`)]),
    () => {
      if (frag.length === 0) return;
      const el = frag.get(rng.int(frag.length));
      const child = el instanceof Y.XmlElement && el.length ? el.get(0) : null;
      if (child instanceof Y.XmlText) {
        const s = child.toString();
        child.insert(safeIndex(s, rng.int(s.length + 1)), ` ${who}${n}`);
      }
    },
    () => {
      const ps = frag.toArray().map((el, i) => [el, i]).filter(([el]) => el.nodeName === 'paragraph');
      if (ps.length > 2) frag.delete(rng.pick(ps)[1], 1);
    },
    () => {
      const heading = frag.toArray().find((el) => el.nodeName === 'heading');
      heading?.setAttribute('level', String(1 + rng.int(3)));
    },
    () => list.insert(rng.int(list.length + 1), [`${who}${n}`]),
    () => list.push([{ who, n }]),
    () => {
      if (list.length > 3) list.delete(rng.int(list.length), 1);
    },
  ];
  doc.transact(rng.pick(edits));
}

/** What the REST view shows for a root with no content (or that it omits). */
const EMPTY = { text: '', map: {}, array: [], xml: '' };
const isEmpty = (v) =>
  v === null || v === '' || (Array.isArray(v) ? v.length === 0 : typeof v === 'object' && Object.keys(v).length === 0);

/**
 * The REST `content` in the shape of `contentOf`: every root the tests write (one the server
 * omits is empty: a root with no items is not in the update), and `extra`, the roots it shows
 * with content that the tests never wrote (there must be none).
 */
function restRoots(content) {
  const roots = {};
  for (const [name, kind] of Object.entries(ROOTS)) roots[name] = content[name] ?? EMPTY[kind];
  const extra = Object.keys(content).filter((k) => !(k in ROOTS) && !isEmpty(content[k]));
  return { roots, extra };
}

/** `content` (REST) shows the same roots as `doc`, rendered the same. */
function sameContent(content, doc) {
  const { roots, extra } = restRoots(content);
  return extra.length === 0 && isDeepStrictEqual(roots, contentOf(doc));
}

/** The REST view of document `name` equals `doc`'s content; answers the GET body. */
async function assertRestContent(server, name, doc, token) {
  let r;
  await until(
    async () => {
      r = await api(server, 'GET', `/api/docs/${name}`, { token });
      return r.status === 200 && r.json?.content && sameContent(r.json.content, doc);
    },
    `GET /api/docs/${name} to show the clients' content`,
    {
      ms: 5_000,
      detail: () =>
        `last answer: HTTP ${r?.status} ${r?.text?.slice(0, 1500)}\nclients: ${JSON.stringify(contentOf(doc)).slice(0, 1500)}`,
    },
  );
  assert.equal(r.json.id, name);
  assert.equal(r.json.kind, 'yjs');
  assert.equal(typeof r.json.rev, 'number', r.text);
  return r.json;
}

/** GET …/state applied to a fresh Y.Doc gives the same document as `doc`; answers the bytes. */
async function assertRestState(server, name, doc, token) {
  const r = await api(server, 'GET', `/api/docs/${name}/state`, { token });
  assert.equal(r.status, 200, r.text);
  assert.match(r.type, /^application\/octet-stream/);
  const fresh = new Y.Doc();
  Y.applyUpdate(fresh, r.bytes);
  assert.ok(sameDocs([fresh, doc]), `…/state differs from the clients:\n${describeDocs([fresh, doc])}`);
  return r.bytes;
}

/** Occurrences of `needle` in `s`. */
const count = (s, needle) => s.split(needle).length - 1;

// ---- 1. convergence ----------------------------------------------------------------------------

describe('convergence across protocols (no authentication)', () => {
  test('y-websocket and Hocuspocus clients converge; REST content, /state and POST /updates agree', async (t) => {
    const own = clientsOf(t);
    const name = docName('converge');
    const rng = prng(SEED);
    t.diagnostic(`SEED=${SEED} (replay: YJS_INTEROP_SEED=${SEED})`);
    const a = own(yws(fx.plain, name));
    const b = own(hocus(fx.plain, name));
    const c = own(yws(fx.plain, name));
    const clients = [a, b, c];
    const docs = clients.map((x) => x.doc);
    t.diagnostic(`initial sync of 3 clients: ${await allSynced(clients)} ms`);
    assert.deepEqual(b.log.scopes, ['read-write'], b.describe());
    assert.equal(b.provider.authorizedScope, 'read-write');

    writeInitial(a.doc);
    t.diagnostic(`initial content from y-websocket to the others: ${await converge(docs)} ms`);

    let edits = 0;
    let last = performance.now();
    for (let round = 0; round < ROUNDS; round++) {
      // Every client edits in the same tick: none has seen the others' edits of this round.
      for (const [i, x] of clients.entries()) {
        for (let k = 1 + rng.int(3); k > 0; k--) randomEdit(x.doc, 'ABC'[i], rng, edits++);
      }
      last = performance.now();
      await sleep(rng.int(30));
    }
    const ms = await converge(docs, `convergence (SEED=${SEED})`);
    t.diagnostic(
      `${edits} concurrent edits in ${ROUNDS} rounds by 3 clients: converged ` +
        `${Math.round(performance.now() - last)} ms after the last edit (${ms} ms of waiting)`,
    );
    const final = contentOf(a.doc);
    assert.ok(final.text.length > 0 && final.prosemirror.includes('<heading level='), JSON.stringify(final));
    assert.ok(Object.keys(final.map).length > 3, JSON.stringify(final.map));

    // Hocuspocus: every update answered SyncStatus(true).
    await until(() => b.provider.unsyncedChanges === 0, 'Hocuspocus unsyncedChanges 0', { detail: b.describe });
    assert.ok(!b.log.syncStatus.includes(false), b.describe());

    const view = await assertRestContent(fx.plain, name, a.doc);
    const state = await assertRestState(fx.plain, name, a.doc);
    t.diagnostic(`REST: rev ${view.rev}, state ${state.length} bytes`);

    // An update posted over REST reaches every client, after the state it was made on.
    const fresh = new Y.Doc();
    Y.applyUpdate(fresh, state);
    const sv = Y.encodeStateVector(fresh);
    fresh.transact(() => {
      fresh.getText('text').insert(fresh.getText('text').length, ' [posted over REST]');
      fresh.getMap('map').set('rest', { posted: true });
      fresh.getXmlFragment('prosemirror').insert(0, [paragraph('from REST')]);
    });
    const update = Y.encodeStateAsUpdate(fresh, sv);
    const t0 = performance.now();
    const posted = await api(fx.plain, 'POST', `/api/docs/${name}/updates`, { body: update });
    const postMs = Math.round(performance.now() - t0);
    assert.equal(posted.status, 200, posted.text);
    assert.equal(posted.json?.id, name, posted.text);
    assert.ok(posted.json.rev > view.rev, `rev ${posted.json.rev} after ${view.rev}: ${posted.text}`);
    const seenMs = await converge([fresh, ...docs], 'the REST update at every client');
    t.diagnostic(`POST …/updates answered (durable) in ${postMs} ms; every client had it ${seenMs} ms later`);
    const again = await assertRestContent(fx.plain, name, fresh);
    assert.ok(again.rev >= posted.json.rev, `GET rev ${again.rev} < posted rev ${posted.json.rev}`);

    // A REST update that adds nothing (already integrated) is accepted and changes nothing.
    const dup = await api(fx.plain, 'POST', `/api/docs/${name}/updates`, { body: update });
    assert.equal(dup.status, 200, dup.text);
    await assertRestContent(fx.plain, name, fresh);

    // A body that is not a Yjs update is refused and changes nothing.
    const bad = await api(fx.plain, 'POST', `/api/docs/${name}/updates`, {
      body: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x01, 0x02]),
    });
    assert.ok(bad.status >= 400 && bad.status < 500, `garbage update: HTTP ${bad.status} ${bad.text}`);
    await assertRestContent(fx.plain, name, fresh);
  });

  test('awareness crosses protocols; a late joiner gets the present states; leavers are removed', async (t) => {
    const own = clientsOf(t);
    const name = docName('awareness');
    const a = own(yws(fx.plain, name));
    const b = own(hocus(fx.plain, name));
    await allSynced([a, b]);
    const aw = (x) => x.provider.awareness;
    const nameIn = (x, of) => aw(x).getStates().get(of.doc.clientID)?.user?.name;
    const detail = () =>
      [a, b]
        .map((x) => `  ${x.kind}: ${JSON.stringify([...aw(x).getStates()])} ${x.describe()}`)
        .join('\n');
    aw(a).setLocalStateField('user', { name: 'ws-user', color: '#3366ff' });
    b.provider.setAwarenessField('user', { name: 'hp-user', color: '#aa3366' });
    const t0 = performance.now();
    await until(() => nameIn(a, b) === 'hp-user' && nameIn(b, a) === 'ws-user', 'awareness both ways', { detail });
    t.diagnostic(`awareness exchanged across protocols in ${Math.round(performance.now() - t0)} ms`);

    // Late joiners (one of each protocol) learn who is already here.
    const c = own(hocus(fx.plain, name));
    const d = own(yws(fx.plain, name));
    await allSynced([c, d]);
    await until(
      () => [c, d].every((x) => nameIn(x, a) === 'ws-user' && nameIn(x, b) === 'hp-user'),
      'late joiners to receive the present awareness states',
      { detail: () => [c, d].map((x) => `  ${x.kind}: ${JSON.stringify([...aw(x).getStates()])}`).join('\n') },
    );

    // A state change is relayed; a Hocuspocus client that disconnects (it sends no removal
    // of its own) is removed by the server; a y-websocket client that leaves too.
    aw(a).setLocalStateField('cursor', { anchor: 3, head: 5 });
    await until(() => aw(b).getStates().get(a.doc.clientID)?.cursor?.head === 5, 'awareness update relayed', { detail });
    b.disconnect();
    await until(
      () => [a, c, d].every((x) => !aw(x).getStates().has(b.doc.clientID)),
      "the disconnected Hocuspocus client's awareness removed at the others",
      { detail: () => [a, c, d].map((x) => `  ${x.kind}: ${JSON.stringify([...aw(x).getStates().keys()])}`).join('\n') },
    );
    a.destroy();
    await until(
      () => [c, d].every((x) => !aw(x).getStates().has(a.doc.clientID)),
      "the y-websocket client's awareness removed after it left",
    );
  });

  test('one Hocuspocus socket carries two documents, without crosstalk', async (t) => {
    const own = clientsOf(t);
    const [m1, m2] = [docName('mux1'), docName('mux2')];
    const socket = hocusSocket(fx.plain);
    t.after(() => socket.destroy());
    const p1 = own(hocus(fx.plain, m1, { socket }));
    const p2 = own(hocus(fx.plain, m2, { socket }));
    const y1 = own(yws(fx.plain, m1));
    const y2 = own(yws(fx.plain, m2));
    await allSynced([p1, p2, y1, y2]);
    assert.equal(p1.provider.configuration.websocketProvider, p2.provider.configuration.websocketProvider);
    p1.doc.getText('text').insert(0, 'one ');
    p2.doc.getText('text').insert(0, 'two ');
    y1.doc.getText('text').insert(0, 'uno ');
    y2.doc.getText('text').insert(0, 'dos ');
    await converge([p1.doc, y1.doc], 'document 1');
    await converge([p2.doc, y2.doc], 'document 2');
    const [s1, s2] = [p1.doc.getText('text').toString(), p2.doc.getText('text').toString()];
    assert.ok(s1.includes('one') && s1.includes('uno') && !s1.includes('two') && !s1.includes('dos'), s1);
    assert.ok(s2.includes('two') && s2.includes('dos') && !s2.includes('one') && !s2.includes('uno'), s2);
    await until(
      () => p1.provider.unsyncedChanges === 0 && p2.provider.unsyncedChanges === 0,
      'both documents acknowledged',
      { detail: () => `${p1.describe()}\n${p2.describe()}` },
    );
    await assertRestContent(fx.plain, m1, y1.doc);
    await assertRestContent(fx.plain, m2, y2.doc);

    // Closing one document's channel (the provider sends Close) leaves the other working.
    p1.destroy();
    y2.doc.getText('text').insert(0, 'after ');
    p2.doc.getMap('map').set('still', 'here');
    await converge([p2.doc, y2.doc], 'document 2 after document 1 was closed');
    y1.doc.getText('text').insert(0, 'later ');
    await sleep(200);
    assert.ok(!p2.doc.getText('text').toString().includes('later'), 'crosstalk after close');
  });
});

// ---- 2. offline and back -----------------------------------------------------------------------

describe('offline and back (no authentication)', () => {
  test('a client of either protocol edits offline, reconnects, and nothing is lost or doubled', async (t) => {
    const own = clientsOf(t);
    const name = docName('offline');
    const a = own(yws(fx.plain, name));
    const b = own(hocus(fx.plain, name));
    const docs = [a.doc, b.doc];
    await allSynced([a, b]);
    writeInitial(a.doc);
    await converge(docs);

    /** `n` distinct edits of every root by `who`; answers their marks. */
    const editMany = (doc, who, n) => {
      const marks = [];
      for (let i = 0; i < n; i++) {
        const mark = `{${who}${i}}`;
        marks.push(mark);
        doc.transact(() => {
          const text = doc.getText('text');
          text.insert(i % 2 ? text.length : 0, mark);
          doc.getMap('map').set(mark, i);
          doc.getXmlFragment('prosemirror').push([paragraph(mark)]);
          doc.getArray('list').push([mark]);
        });
      }
      return marks;
    };
    const assertEveryMarkOnce = (doc, marks) => {
      const c = contentOf(doc);
      for (const m of marks) {
        assert.equal(count(c.text, m), 1, `${m} once in the text: ${c.text}`);
        assert.ok(m in c.map, `${m} in the map`);
        assert.equal(count(c.prosemirror, `<paragraph>${m}</paragraph>`), 1, `${m} once in the XML`);
        assert.equal(c.list.filter((x) => x === m).length, 1, `${m} once in the array`);
      }
    };

    for (const [away, stay, label] of [
      [b, a, 'Hocuspocus'],
      [a, b, 'y-websocket'],
    ]) {
      away.disconnect();
      await until(
        () =>
          away.kind === 'hocuspocus'
            ? away.provider.configuration.websocketProvider.status === 'disconnected'
            : !away.provider.wsconnected && away.provider.ws === null,
        `${label} client offline`,
        { detail: away.describe },
      );
      const marks = [...editMany(away.doc, `${label[0]}off`, 12), ...editMany(stay.doc, `${label[0]}on`, 12)];
      await sleep(300);
      assert.ok(!stay.doc.getText('text').toString().includes(`{${label[0]}off0}`), `${label} client was not offline`);
      assert.ok(!away.doc.getText('text').toString().includes(`{${label[0]}on0}`), `${label} client was not offline`);
      const t0 = performance.now();
      away.connect();
      await converge(docs, `convergence after the ${label} client reconnected`);
      t.diagnostic(`${label} client back online: converged in ${Math.round(performance.now() - t0)} ms (24 edits per side)`);
      assertEveryMarkOnce(a.doc, marks);
    }
    if (b.provider.unsyncedChanges !== 0) {
      await until(() => b.provider.unsyncedChanges === 0, 'Hocuspocus unsyncedChanges 0 after reconnect', {
        detail: b.describe,
      });
    }
    await assertRestContent(fx.plain, name, a.doc);
  });
});

// ---- 3. durability -----------------------------------------------------------------------------

describe('durability: acknowledged means on disk (SIGKILL and restart)', () => {
  before(async () => {
    fx.durable = await startServer({
      dir: fx.dir,
      name: 'durable',
      dataDir: join(fx.dir, 'data-durable'),
      config: writeConfig(fx.dir, 'durable', null),
    });
  });

  /** Bursts of edits on `doc` (`bursts` × `per` transactions), awaiting a little between (not
   * after the last: the caller arms its check in the same tick as the last edit). */
  async function bursts(doc, who, bursts, per) {
    let n = 0;
    for (let b = 0; b < bursts; b++) {
      if (b > 0) await sleep(15);
      for (let i = 0; i < per; i++, n++) {
        doc.transact(() => {
          const text = doc.getText('text');
          text.insert(n % 3 ? text.length : 0, `{${who}${n}}`);
          doc.getMap('map').set(`${who}${n}`, n);
          if (n % 8 === 0) doc.getXmlFragment('prosemirror').push([paragraph(`${who} ${n}`)]);
          doc.getArray('list').push([n]);
        });
      }
    }
    return n;
  }

  /** After a restart: fresh clients of both protocols, and REST, hold exactly `doc`. */
  async function assertRecovered(t, own, server, name, doc) {
    const r1 = own(yws(server, name));
    const r2 = own(hocus(server, name));
    await allSynced([r1, r2], 'fresh clients after the restart');
    assert.ok(
      sameDocs([doc, r1.doc, r2.doc]),
      `lost after SIGKILL + restart:\n${describeDocs([doc, r1.doc, r2.doc])}`,
    );
    await assertRestContent(server, name, doc);
  }

  test('Hocuspocus: SIGKILL the instant unsyncedChanges reaches 0; a restart has every edit', async (t) => {
    const own = clientsOf(t);
    const name = docName('durable-hp');
    const server = fx.durable;
    const w = own(hocus(server, name));
    await allSynced([w]);
    await until(() => w.provider.unsyncedChanges === 0, 'the initial sync acknowledged (SyncStatus after SyncStep2)', {
      detail: w.describe,
    });
    let armed = false;
    let killedAt = null;
    const kill = () => {
      if (killedAt === null) {
        server.child.kill('SIGKILL');
        killedAt = performance.now();
      }
    };
    w.provider.on('unsyncedChanges', ({ number }) => {
      if (armed && number === 0) kill();
    });
    const n = await bursts(w.doc, 'h', 5, 40);
    const lastEdit = performance.now();
    armed = true;
    if (w.provider.unsyncedChanges === 0) kill();
    await until(() => killedAt !== null, `unsyncedChanges to reach 0 after ${n} edits`, { detail: w.describe });
    t.diagnostic(
      `${n} edits (5 bursts): every SyncStatus(true) in ${Math.round(killedAt - lastEdit)} ms ` +
        `after the last edit; SIGKILL at that instant`,
    );
    assert.ok(!w.log.syncStatus.includes(false), w.describe());
    assert.equal((await server.exited).signal, 'SIGKILL');
    w.destroy();
    fx.durable = await restartServer(server);
    await assertRecovered(t, own, fx.durable, name, w.doc);
  });

  test('y-websocket: SIGKILL the instant another client has every edit; a restart has them all', async (t) => {
    const own = clientsOf(t);
    const name = docName('durable-ws');
    const server = fx.durable;
    const w = own(yws(server, name));
    const o = own(hocus(server, name));
    await allSynced([w, o]);
    let target = null;
    let killedAt = null;
    const check = () => {
      if (target !== null && killedAt === null && svHex(o.doc) === target) {
        server.child.kill('SIGKILL');
        killedAt = performance.now();
      }
    };
    o.doc.on('update', check);
    const n = await bursts(w.doc, 'w', 5, 40);
    const lastEdit = performance.now();
    target = svHex(w.doc);
    check();
    await until(() => killedAt !== null, `the other client to receive all ${n} edits`, {
      detail: () => `${w.describe()}\n${o.describe()}\n${describeDocs([w.doc, o.doc])}`,
    });
    t.diagnostic(
      `${n} y-websocket edits (5 bursts) at the Hocuspocus client ${Math.round(killedAt - lastEdit)} ms ` +
        `after the last edit; SIGKILL at that instant`,
    );
    assert.equal((await server.exited).signal, 'SIGKILL');
    w.destroy();
    o.destroy();
    fx.durable = await restartServer(server);
    await assertRecovered(t, own, fx.durable, name, w.doc);
  });
});

// ---- 4. authentication -------------------------------------------------------------------------

for (const mode of ['hmac', 'sm2']) {
  describe(`authentication (${mode === 'hmac' ? 'hmac-sm3' : 'sm2'})`, () => {
    let server;
    let token;
    before(() => {
      server = fx[mode];
      token = tokenMaker(mode, fx.keys);
    });

    /** An editor (Hocuspocus) creates `name` with some content; answers the client, synced. */
    async function created(own, name, text = 'written by the editor') {
      const e = own(hocus(server, name, { token: token('editor') }));
      await allSynced([e]);
      e.doc.getText('text').insert(0, text);
      e.doc.getMap('map').set('by', 'editor');
      await until(() => e.provider.unsyncedChanges === 0, 'the editor’s edit acknowledged', { detail: e.describe });
      return e;
    }

    test('Hocuspocus: editor read-write, viewer readonly; the viewer’s edits get SyncStatus(false) and reach nobody', async (t) => {
      const own = clientsOf(t);
      const name = docName(`hp-view-${mode}`);
      const e = await created(own, name);
      assert.deepEqual(e.log.scopes, ['read-write'], e.describe());
      assert.equal(e.provider.authorizedScope, 'read-write');
      const v = own(hocus(server, name, { token: token('viewer') }));
      await allSynced([v]);
      assert.deepEqual(v.log.scopes, ['readonly'], v.describe());
      assert.equal(v.provider.authorizedScope, 'readonly');
      await converge([e.doc, v.doc], 'the viewer to receive the document');

      // The viewer edits: refused (SyncStatus false), applied nowhere.
      const refusedBefore = v.log.syncStatus.filter((x) => !x).length;
      v.doc.getText('text').insert(0, 'VIEWER-EDIT ');
      v.doc.getMap('map').set('viewer', 'was here');
      await until(
        () => v.log.syncStatus.filter((x) => !x).length >= refusedBefore + 2,
        'SyncStatus(false) for both viewer updates',
        { detail: v.describe },
      );
      assert.ok(v.provider.unsyncedChanges > 0, `a refused update counted as synced: ${v.describe()}`);
      // The editor keeps editing; the viewer still receives; nobody gets the viewer's edit.
      e.doc.getText('text').insert(e.doc.getText('text').length, ' and more');
      await until(() => v.doc.getText('text').toString().endsWith(' and more'), 'the viewer to receive a later edit', {
        detail: v.describe,
      });
      await sleep(QUIET_MS);
      assert.ok(!e.doc.getText('text').toString().includes('VIEWER'), e.doc.getText('text').toString());
      assert.equal(e.doc.getMap('map').get('viewer'), undefined);
      const view = await assertRestContent(server, name, e.doc, token('viewer'));
      assert.ok(!JSON.stringify(view.content).includes('VIEWER'));
      // A fresh editor gets the same: the refused edit was not stored.
      const e2 = own(yws(server, name, { token: token('editor') }));
      await allSynced([e2]);
      assert.ok(sameDocs([e.doc, e2.doc]), describeDocs([e.doc, e2.doc]));
    });

    test('y-websocket: a viewer syncs and receives, its edits are never applied and it is told so (5006)', async (t) => {
      const own = clientsOf(t);
      const name = docName(`ws-view-${mode}`);
      const e = await created(own, name);
      const ew = own(yws(server, name, { token: token('editor') }));
      const v = own(yws(server, name, { token: token('viewer') }));
      await allSynced([ew, v]);
      await converge([e.doc, ew.doc, v.doc], 'editors and the viewer synced');
      ew.provider.awareness.setLocalStateField('user', { name: 'editor' });
      await until(
        () => v.provider.awareness.getStates().get(ew.doc.clientID)?.user?.name === 'editor',
        'the viewer to receive awareness',
        { detail: v.describe },
      );

      // The viewer edits. The server may tell it once (at connect) or for each refused frame:
      // at least one Auth permission-denied message, each "read-only…".
      v.doc.getText('text').insert(0, 'VIEWER-EDIT ');
      v.doc.getXmlFragment('prosemirror').push([paragraph('viewer paragraph')]);
      await until(() => v.log.denied.length > 0, 'an Auth permission-denied message to the viewer', {
        detail: v.describe,
      });
      ew.doc.getText('text').insert(ew.doc.getText('text').length, ' later');
      await until(() => v.doc.getText('text').toString().endsWith(' later'), 'the viewer to receive a later edit', {
        detail: v.describe,
      });
      await sleep(QUIET_MS);
      for (const x of [e, ew]) {
        assert.ok(!x.doc.getText('text').toString().includes('VIEWER'), `${x.kind}: ${x.doc.getText('text')}`);
        assert.ok(!x.doc.getXmlFragment('prosemirror').toString().includes('viewer'), x.kind);
      }
      assert.ok(sameDocs([e.doc, ew.doc]), describeDocs([e.doc, ew.doc]));
      await assertRestContent(server, name, e.doc, token('editor'));
      assert.ok(v.provider.wsconnected, `the viewer was disconnected: ${v.describe()}`);
      // Each refusal is a typed error: JSON {"error": {"code": 5006 (ReadOnly), "msg"}}.
      for (const reason of v.log.denied) {
        assert.equal(JSON.parse(reason).error?.code, 5006, v.describe());
      }
    });

    test('bad, forged, expired and missing tokens get nothing; a good document on the same socket still works', async (t) => {
      const own = clientsOf(t);
      const name = docName(`badtok-${mode}`);
      const e = await created(own, name, 'secret content');
      const good = token('editor');
      const [h, c, s] = good.split('.');
      const sig = Buffer.from(s, 'base64url');
      sig[0] ^= 1;
      const now = Math.floor(Date.now() / 1000);
      const bad = {
        garbage: 'not-a-token',
        forged: `${h}.${c}.${sig.toString('base64url')}`,
        expired: token('editor', { now: now - 3600, ttlSeconds: 600 }),
        missing: null,
      };
      const hp = Object.fromEntries(
        Object.entries(bad).map(([why, tok]) => [why, own(hocus(server, name, { token: tok }))]),
      );
      // One socket: a document with a bad token beside one with a good token.
      const socket = hocusSocket(server);
      t.after(() => socket.destroy());
      const other = docName(`badtok-other-${mode}`);
      const okDoc = own(hocus(server, name, { token: good, socket }));
      const badDoc = own(hocus(server, other, { token: 'not-a-token', socket }));
      const ws = Object.fromEntries(
        Object.entries(bad).map(([why, tok]) => [why, own(yws(server, name, tok === null ? {} : { token: tok }))]),
      );
      await until(
        () => [...Object.values(hp), badDoc].every((x) => x.log.failed.length > 0),
        'onAuthenticationFailed for every bad token',
        { detail: () => [...Object.values(hp), badDoc].map((x) => `  ${x.describe()}`).join('\n') },
      );
      await allSynced([okDoc], 'the good document on the shared socket');
      await converge([e.doc, okDoc.doc]);
      await sleep(QUIET_MS);
      for (const [why, x] of [...Object.entries(hp), ...Object.entries(ws), ['shared socket', badDoc]]) {
        assert.equal(x.doc.getText('text').toString(), '', `${why} (${x.kind}) received content: ${x.describe()}`);
        assert.ok(!x.provider.synced, `${why} (${x.kind}) synced: ${x.describe()}`);
        if (x.kind === 'hocuspocus') assert.ok(!x.provider.isAuthenticated, `${why}: ${x.describe()}`);
      }
      t.diagnostic(`refusal reasons: ${JSON.stringify(Object.fromEntries(Object.entries(hp).map(([k, x]) => [k, x.log.failed[0]])))}`);
      t.diagnostic(
        `y-websocket with bad tokens: ${JSON.stringify(Object.fromEntries(Object.entries(ws).map(([k, x]) => [k, { closes: x.log.closes.slice(0, 2), errors: x.log.errors.slice(0, 1) }])))}`,
      );
      // A y-websocket client with a bad token is closed with 4401 (final: no reconnect).
      for (const [why, x] of Object.entries(ws)) {
        await until(() => x.log.closes.some((c) => c !== 'local'), `${why}: closed by the server`, {
          detail: x.describe,
        });
        const c = x.log.closes.find((c) => c !== 'local');
        assert.equal(c.code, 4401, `${why}: ${x.describe()}`);
      }
      // Their edits went nowhere.
      hp.forged.doc.getText('text').insert(0, 'FORGED ');
      ws.forged.doc.getText('text').insert(0, 'FORGED ');
      await sleep(QUIET_MS / 2);
      assert.equal(e.doc.getText('text').toString(), 'secret content');
      await assertRestContent(server, name, e.doc, good);
    });

    test('tenants: the same name in two tenants is two documents; another tenant’s qualified name is refused', async (t) => {
      const own = clientsOf(t);
      const name = docName(`tenant-${mode}`);
      const acme = (role) => token(role, { tenant: 'acme', sub: `acme-${role}` });
      const globex = (role) => token(role, { tenant: 'globex', sub: `globex-${role}` });
      const a = await created(own, name, 'acme secret');
      const g = own(hocus(server, name, { token: globex('editor') }));
      await allSynced([g]);
      await sleep(200);
      assert.equal(g.doc.getText('text').toString(), '', 'globex sees acme content');
      g.doc.getText('text').insert(0, 'globex own');
      await until(() => g.provider.unsyncedChanges === 0, 'globex edit acknowledged', { detail: g.describe });
      const gw = own(yws(server, name, { token: globex('viewer') }));
      await allSynced([gw]);
      await converge([g.doc, gw.doc], 'globex clients');
      assert.equal(gw.doc.getText('text').toString(), 'globex own');
      assert.equal(a.doc.getText('text').toString(), 'acme secret');
      // REST: each tenant reads its own.
      await assertRestContent(server, name, a.doc, acme('viewer'));
      await assertRestContent(server, name, g.doc, globex('viewer'));
      // The tenant-qualified name: one's own resolves to the same document, another's is refused.
      const aq = own(hocus(server, `acme:${name}`, { token: acme('viewer') }));
      await allSynced([aq]);
      await converge([a.doc, aq.doc], "acme's qualified name");
      const gq = own(hocus(server, `acme:${name}`, { token: globex('editor') }));
      const gqw = own(yws(server, `acme:${name}`, { token: globex('editor') }));
      await until(() => gq.log.failed.length > 0, 'PermissionDenied for the other tenant’s document', {
        detail: gq.describe,
      });
      await sleep(QUIET_MS);
      for (const x of [gq, gqw]) {
        assert.equal(x.doc.getText('text').toString(), '', `${x.kind} got acme content: ${x.describe()}`);
        assert.ok(!x.provider.synced, x.describe());
      }
      const r = await api(server, 'GET', `/api/docs/acme:${name}`, { token: globex('editor') });
      assert.equal(r.status, 403, r.text);
      assert.equal(r.json?.error?.code, 5004, r.text);
    });

    test('REST with Bearer tokens: a viewer reads content and state, cannot post updates', async (t) => {
      const own = clientsOf(t);
      const name = docName(`rest-${mode}`);
      const e = await created(own, name, 'rest content');
      const viewer = token('viewer');
      await assertRestContent(server, name, e.doc, viewer);
      const state = await assertRestState(server, name, e.doc, viewer);
      const noToken = await api(server, 'GET', `/api/docs/${name}`);
      assert.equal(noToken.status, 401, noToken.text);
      const fresh = new Y.Doc();
      Y.applyUpdate(fresh, state);
      const sv = Y.encodeStateVector(fresh);
      fresh.getText('text').insert(0, 'VIEWER ');
      const update = Y.encodeStateAsUpdate(fresh, sv);
      const w = await api(server, 'POST', `/api/docs/${name}/updates`, { token: viewer, body: update });
      assert.equal(w.status, 403, w.text);
      assert.equal(w.json?.error?.code, 5006, w.text);
      const anon = await api(server, 'POST', `/api/docs/${name}/updates`, { body: update });
      assert.equal(anon.status, 401, anon.text);
      await sleep(200);
      assert.equal(e.doc.getText('text').toString(), 'rest content');
      await assertRestContent(server, name, e.doc, viewer);
      const ok = await api(server, 'POST', `/api/docs/${name}/updates`, { token: token('editor'), body: update });
      assert.equal(ok.status, 200, ok.text);
      await until(() => e.doc.getText('text').toString() === 'VIEWER rest content', 'the editor’s REST update at the client', {
        detail: e.describe,
      });
    });
  });
}

// ---- 5. kinds ------------------------------------------------------------------------------------

describe('older Hocuspocus providers (no authentication)', () => {
  test('@hocuspocus/provider 2.x, 3.x and 4.x on one document converge, and reach unsyncedChanges 0', async (t) => {
    const WebSocket = (await import('ws')).default;
    // 2.x reads the global WebSocket when it builds its socket.
    const hadGlobal = globalThis.WebSocket;
    globalThis.WebSocket = WebSocket;
    t.after(() => {
      globalThis.WebSocket = hadGlobal;
    });
    const own = clientsOf(t);
    const name = docName('providers');
    const providers = [];
    for (const [version, mod] of [
      ['2.x', await import('hocuspocus-provider-2')],
      ['3.x', await import('hocuspocus-provider-3')],
    ]) {
      const doc = new Y.Doc();
      const provider = new mod.HocuspocusProvider({
        url: `${fx.plain.ws}/hocuspocus`,
        name,
        document: doc,
        token: 'none',
        WebSocketPolyfill: WebSocket,
      });
      t.after(() => provider.destroy());
      providers.push({ version, doc, provider });
    }
    const four = own(hocus(fx.plain, name));
    providers.push({ version: '4.x', doc: four.doc, provider: four.provider });
    const describeAll = () =>
      providers
        .map((p) => `${p.version}: synced=${p.provider.synced} unsynced=${p.provider.unsyncedChanges} text=${JSON.stringify(p.doc.getText('text').toString())}`)
        .join('\n');
    await until(() => providers.every((p) => p.provider.synced && p.provider.isAuthenticated), 'every provider synced', {
      detail: describeAll,
    });
    for (const p of providers) p.doc.getText('text').insert(0, `[${p.version}]`);
    await until(() => providers.every((p) => p.provider.unsyncedChanges === 0), 'every provider durable', {
      detail: describeAll,
    });
    await converge(providers.map((p) => p.doc), 'providers 2.x, 3.x, 4.x');
    const text = providers[0].doc.getText('text').toString();
    for (const v of ['2.x', '3.x', '4.x']) assert.ok(text.includes(`[${v}]`), describeAll());
    await assertRestContent(fx.plain, name, providers[0].doc);
  });
});

describe('document kinds (no authentication)', () => {
  test('a plain-text document is refused on /yjs and /hocuspocus and stays text', async (t) => {
    const own = clientsOf(t);
    const name = docName('textdoc');
    const created = await api(fx.plain, 'POST', `/api/docs/${name}/ops`, { body: { base_rev: 0, op: ['hello'] } });
    assert.equal(created.status, 200, created.text);
    const hp = own(hocus(fx.plain, name));
    const ws = own(yws(fx.plain, name));
    await until(() => hp.log.failed.length > 0, 'Hocuspocus PermissionDenied for a text document', {
      detail: hp.describe,
    });
    await until(() => ws.log.closes.some((x) => x !== 'local'), 'the y-websocket socket closed by the server', {
      detail: ws.describe,
    });
    t.diagnostic(`Hocuspocus refusal: ${JSON.stringify(hp.log.failed[0])}; y-websocket close: ${JSON.stringify(ws.log.closes[0])} ${JSON.stringify(ws.log.errors[0] ?? '')}`);
    // 4409 (WrongKind's 409): final for a y-websocket client, which stops reconnecting.
    const serverCloses = ws.log.closes.filter((x) => x !== 'local');
    assert.equal(serverCloses[0].code, 4409, ws.describe());
    assert.match(serverCloses[0].reason, /^3006 /, ws.describe());
    await sleep(QUIET_MS);
    assert.equal(ws.log.closes.filter((x) => x !== 'local').length, 1, `reconnected: ${ws.describe()}`);
    // Edits from the refused clients go nowhere.
    hp.doc.getText('text').insert(0, 'yjs over text');
    ws.doc.getText('text').insert(0, 'yjs over text');
    await sleep(QUIET_MS);
    for (const x of [hp, ws]) assert.ok(!x.provider.synced, x.describe());
    assert.ok(!hp.provider.isAuthenticated, hp.describe());
    const r = await api(fx.plain, 'GET', `/api/docs/${name}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.kind, 'text', r.text);
    assert.equal(r.json.text, 'hello', r.text);
    // A Yjs update posted to it is refused (WrongKind), as is its Yjs state.
    const u = new Y.Doc();
    u.getText('text').insert(0, 'x');
    const post = await api(fx.plain, 'POST', `/api/docs/${name}/updates`, { body: Y.encodeStateAsUpdate(u) });
    assert.equal(post.status, 409, post.text);
    assert.equal(post.json?.error?.code, 3006, post.text);
    assert.deepEqual((await api(fx.plain, 'GET', `/api/docs/${name}`)).json, r.json);
  });

  test('a Yjs document refuses text ops and stays yjs', async (t) => {
    const own = clientsOf(t);
    const name = docName('yjsdoc');
    const y = own(yws(fx.plain, name));
    await allSynced([y]);
    y.doc.getText('text').insert(0, 'yjs text');
    const view = await assertRestContent(fx.plain, name, y.doc);
    const op = await api(fx.plain, 'POST', `/api/docs/${name}/ops`, { body: { base_rev: view.rev, op: ['plain'] } });
    assert.equal(op.status, 409, op.text);
    assert.equal(op.json?.error?.code, 3006, op.text);
    const after = await assertRestContent(fx.plain, name, y.doc);
    assert.equal(after.kind, 'yjs');
  });

  test('history: /versions and ?rev=N rebuild a Yjs document at any retained revision', async () => {
    const name = docName('history');
    const writer = new Y.Doc();
    const text = writer.getText('text');
    const texts = [];
    for (const piece of ['one ', 'two ', 'three']) {
      const before = Y.encodeStateVector(writer);
      text.insert(text.length, piece);
      const posted = await api(fx.plain, 'POST', `/api/docs/${name}/updates`, {
        body: Y.encodeStateAsUpdate(writer, before),
      });
      assert.equal(posted.status, 200, posted.text);
      texts.push(text.toString());
      assert.equal(posted.json.rev, texts.length, posted.text);
    }
    const versions = await api(fx.plain, 'GET', `/api/docs/${name}/versions`);
    assert.equal(versions.status, 200, versions.text);
    assert.equal(versions.json.last_rev, 3, versions.text);
    assert.equal(versions.json.first_op, 1, versions.text);
    for (const [i, want] of texts.entries()) {
      const at = await api(fx.plain, 'GET', `/api/docs/${name}?rev=${i + 1}`);
      assert.equal(at.status, 200, at.text);
      assert.deepEqual([at.json.kind, at.json.rev, at.json.content.text], ['yjs', i + 1, want], at.text);
    }
    const future = await api(fx.plain, 'GET', `/api/docs/${name}?rev=4`);
    assert.equal(future.status, 409, future.text);
  });

  test('deleting a Yjs document closes its clients and frees its id, even for the other kind', async (t) => {
    const own = clientsOf(t);
    const name = docName('deleted');
    const y = own(yws(fx.plain, name));
    await allSynced([y]);
    y.doc.getText('text').insert(0, 'to be deleted');
    await assertRestContent(fx.plain, name, y.doc);
    const del = await api(fx.plain, 'DELETE', `/api/docs/${name}`);
    assert.equal(del.status, 200, del.text);
    // The subscriber is told to reconnect (1012); until then the id holds nothing.
    await until(() => y.log.closes.some((x) => x !== 'local' && x.code === 1012), 'the client closed with 1012', {
      detail: y.describe,
    });
    y.provider.disconnect();
    const gone = await api(fx.plain, 'GET', `/api/docs/${name}`);
    assert.equal(gone.status, 404, gone.text);
    // The id is free: it can now be created as a text document.
    const created = await api(fx.plain, 'POST', `/api/docs/${name}/ops`, { body: { base_rev: 0, op: ['plain'] } });
    assert.equal(created.status, 200, created.text);
    const text = await api(fx.plain, 'GET', `/api/docs/${name}`);
    assert.equal(text.json?.kind, 'text', text.text);
  });
});
