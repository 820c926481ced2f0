/** The undo manager: inverses, grouping, undo after remote changes (only the user's own edit
 * is removed, where it now is), redo, a seeded random concurrent session undone entirely
 * (`SEED=n` replays), and the textarea's undo keys. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoeditClient } from '../src/client.js';
import { apply, invert } from '../src/ot.js';
import { bindTextarea } from '../src/textarea.js';
import { UndoManager } from '../src/undo.js';
import { asTextarea, event, FakeTextarea, installDocument } from './dom.js';
import { FakeServer, rng, seed, sleep, until } from './sim.js';

test('invert turns inserts into deletes and deletes into inserts of what they removed', () => {
  const doc = 'a😀bcd';
  for (const op of [[1, { d: 2 }, 'X'], [2, 'ins'], [{ d: 5 }], [4, 'Z', { d: 1 }]] as never[]) {
    const after = apply(doc, op);
    assert.equal(apply(after, invert(op, doc)), doc, JSON.stringify(op));
  }
});

test('edits within the group window are one step; a pause starts a new one', () => {
  const u = new UndoManager(500);
  let text = '';
  const edit = (op: never[], at: number) => {
    u.record(op, text, at);
    text = apply(text, op);
  };
  edit(['h'] as never[], 0);
  edit([1, 'i'] as never[], 100);
  edit([2, '!'] as never[], 700); // a pause of 600 ms
  let op = u.undo(text)!;
  text = apply(text, op);
  assert.equal(text, 'hi');
  op = u.undo(text)!;
  text = apply(text, op);
  assert.equal(text, '');
  assert.equal(u.canUndo, false);
  assert.equal(u.undo(text), null);
  text = apply(text, u.redo(text)!);
  assert.equal(text, 'hi');
  assert.equal(u.canRedo, true);
  edit([2, '?'] as never[], 2000);
  assert.equal(u.canRedo, false, 'a new edit clears redo');
});

async function pair(undoGroupMs = 500) {
  const server = new FakeServer(() => 1);
  const o = { url: 'fake', doc: 'd', WebSocket: server.WebSocket, undoGroupMs };
  const me = new CoeditClient(o);
  const other = new CoeditClient(o);
  await until(() => me.status === 'online' && other.status === 'online', 2000, 'online');
  return { server, me, other };
}

test('undo after a remote insert before my edit removes exactly my edit', async () => {
  const { server, me, other } = await pair();
  other.submit(['hello world']);
  await until(() => me.text === 'hello world', 2000, 'shared');
  assert.equal(me.canUndo, false, "others' edits are not mine to undo");
  for (const ch of ' again') me.submit([[...me.text].length, ch]); // typing: one step
  await until(() => other.text === 'hello world again', 2000, 'typed');
  other.submit(['Oh, ']);
  await until(() => me.text === 'Oh, hello world again', 2000, 'remote insert before');
  assert.equal(me.undo(), true);
  assert.equal(me.text, 'Oh, hello world');
  await until(() => server.text === 'Oh, hello world' && other.text === server.text, 2000, 'saved');
  assert.equal(me.redo(), true);
  await until(() => server.text === 'Oh, hello world again', 2000, 'redone');
  me.close();
  other.close();
});

test('undo of a delete after remote edits puts the deleted text back where it belongs', async () => {
  const { server, me, other } = await pair(0);
  other.submit(['one two three']);
  await until(() => me.text === 'one two three', 2000, 'shared');
  me.submit([4, { d: 4 }]); // delete "two "
  await until(() => other.text === 'one three', 2000, 'deleted');
  other.submit([0, '> ']);
  other.submit([11, '!']);
  await until(() => me.text === '> one three!', 2000, 'remote edits around');
  me.undo();
  assert.equal(me.text, '> one two three!');
  await until(() => server.text === me.text && me.synced, 2000, 'saved');
  me.close();
  other.close();
});

test('undoing every local edit of a random concurrent session leaves only the remote edits (seeded)', async () => {
  const r = rng(seed());
  const server = new FakeServer(() => Math.floor(r() * 3));
  const o = { url: 'fake', doc: 'd', WebSocket: server.WebSocket, minBackoffMs: 2, maxBackoffMs: 10 };
  const local = new CoeditClient({ ...o, undoGroupMs: r() < 0.5 ? 0 : 3 });
  const other = new CoeditClient(o);
  await until(() => local.status === 'online' && other.status === 'online', 2000, 'online');
  const initial = '0123456789';
  other.submit([initial]);
  await until(() => local.text === initial, 2000, 'initial text');
  const LOWER = 'abcdefgh';
  const UPPER = 'ABCDEFGH';
  let upperExpected = 0;
  const count = (s: string, set: string) => [...s].filter((ch) => set.includes(ch)).length;
  /** A random range of 1–3 characters of `text` none of which is in `forbidden`, or null. */
  const range = (text: string, forbidden: string): [number, number] | null => {
    const chars = [...text];
    for (let tries = 0; tries < 10; tries++) {
      const at = Math.floor(r() * chars.length);
      const len = 1 + Math.floor(r() * 3);
      const part = chars.slice(at, at + len);
      if (part.length > 0 && !part.some((ch) => forbidden.includes(ch))) return [at, part.length];
    }
    return null;
  };
  const pick = (set: string) => set[Math.floor(r() * set.length)];
  const remoteStep = () => {
    const len = [...other.text].length;
    if (r() < 0.65) {
      other.submit([Math.floor(r() * (len + 1)), pick(UPPER)]);
      upperExpected++;
    } else {
      // The remote deletes its own or the local user's text, never the initial digits.
      const g = range(other.text, initial);
      if (g) {
        upperExpected -= count([...other.text].slice(g[0], g[0] + g[1]).join(''), UPPER);
        other.submit([g[0], { d: g[1] }]);
      }
    }
  };
  for (let step = 0; step < 250; step++) {
    const roll = r();
    if (roll < 0.35) {
      local.submit([Math.floor(r() * ([...local.text].length + 1)), pick(LOWER) + (r() < 0.3 ? pick(LOWER) : '')]);
    } else if (roll < 0.5) {
      // The local user deletes initial or its own text, never the remote's.
      const g = range(local.text, UPPER);
      if (g) local.submit([g[0], { d: g[1] }]);
    } else if (roll < 0.55) {
      local.undo();
      if (r() < 0.5) local.redo();
    } else {
      remoteStep();
    }
    if (r() < 0.4) await sleep(Math.floor(r() * 4));
  }
  await until(() => local.synced && other.synced && local.text === other.text, 5000, 'converged');
  // Undo everything, while the other user keeps typing.
  let undos = 0;
  while (local.canUndo) {
    local.undo();
    undos++;
    if (r() < 0.5) remoteStep();
    if (r() < 0.5) await sleep(Math.floor(r() * 3));
    assert.ok(undos < 1000, 'undo terminates');
  }
  await until(
    () => local.synced && other.synced && local.text === other.text && other.rev === server.rev,
    5000,
    'converged after undo',
  );
  const text = server.text;
  assert.equal(local.text, text);
  assert.equal(count(text, LOWER), 0, `no local text left: ${text}`);
  assert.equal([...text].filter((ch) => initial.includes(ch)).join(''), initial, `initial text restored: ${text}`);
  assert.equal(count(text, UPPER), upperExpected, `every remote character kept: ${text}`);
  assert.deepEqual(server.violations, []);
  local.close();
  other.close();
});

test('the textarea maps Ctrl/Cmd+Z, Ctrl+Shift+Z, Ctrl+Y and history input events to the client', async () => {
  const ta = new FakeTextarea();
  const restore = installDocument(ta);
  try {
    const { me, other } = await pair(0);
    const binding = bindTextarea(asTextarea(ta), me);
    ta.type('abc');
    await sleep(5); // a new undo step (group window 0 ms)
    ta.type('def');
    await until(() => other.text === 'abcdef', 2000, 'typed');
    other.submit(['>> ']);
    await until(() => ta.value === '>> abcdef', 2000, 'remote shown');
    const z = ta.dispatch(event('keydown', { key: 'z', ctrlKey: true }));
    assert.equal(z.defaultPrevented, true, "the browser's own undo is prevented");
    assert.equal(ta.value, '>> abc');
    assert.equal(ta.selectionStart, 6, 'caret where the undone text was');
    ta.dispatch(event('keydown', { key: 'Z', ctrlKey: true, shiftKey: true }));
    assert.equal(ta.value, '>> abcdef');
    ta.dispatch(event('keydown', { key: 'z', metaKey: true }));
    assert.equal(ta.value, '>> abc');
    ta.dispatch(event('keydown', { key: 'y', ctrlKey: true }));
    assert.equal(ta.value, '>> abcdef');
    const undo = ta.dispatch(event('beforeinput', { inputType: 'historyUndo' }));
    assert.equal(undo.defaultPrevented, true);
    assert.equal(ta.value, '>> abc');
    ta.dispatch(event('beforeinput', { inputType: 'historyRedo' }));
    assert.equal(ta.value, '>> abcdef');
    const plain = ta.dispatch(event('keydown', { key: 'z' }));
    assert.equal(plain.defaultPrevented, false, 'typing a z is not an undo');
    await until(() => other.text === '>> abcdef' && me.synced, 2000, 'saved');
    binding.unbind();
    me.close();
    other.close();
  } finally {
    restore();
  }
});

test('typing elsewhere after a caret jump is a separate undo step, even within the group window', async () => {
  const ta = new FakeTextarea();
  const restore = installDocument(ta);
  try {
    const { me, other } = await pair(10_000);
    const binding = bindTextarea(asTextarea(ta), me);
    ta.type('abc');
    ta.type('d'); // same step
    ta.dispatch(event('keydown', { key: 'Home' }));
    ta.setSelectionRange(0, 0);
    ta.type('X');
    ta.dispatch(event('keydown', { key: 'z', ctrlKey: true }));
    assert.equal(ta.value, 'abcd');
    ta.dispatch(event('keydown', { key: 'z', ctrlKey: true }));
    assert.equal(ta.value, '');
    binding.unbind();
    me.close();
    other.close();
  } finally {
    restore();
  }
});
