/** Diffing textarea values into ops and moving selections, with astral and CJK text; the
 * binding keeping an input method's provisional text through a remote change. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoeditClient } from '../src/client.js';
import { apply } from '../src/ot.js';
import { bindTextarea, diffToOp, moveSelection } from '../src/textarea.js';
import { uniLength, uniToUtf16, utf16ToUni } from '../src/unicode.js';
import { asTextarea, event, FakeTextarea, installDocument } from './dom.js';
import { FakeServer, rng, seed, sleep, until } from './sim.js';

test('unicode positions count scalar values, not UTF-16 units', () => {
  const s = 'a😀b中文🎉';
  assert.equal(s.length, 8);
  assert.equal(uniLength(s), 6);
  assert.equal(utf16ToUni(s, 3), 2); // after the emoji
  assert.equal(utf16ToUni(s, 2), 1); // inside the pair: at its start
  assert.equal(uniToUtf16(s, 2), 3);
  assert.equal(uniToUtf16(s, 6), 8);
  assert.equal(uniToUtf16(s, 99), 8);
  for (let i = 0; i <= uniLength(s); i++) assert.equal(utf16ToUni(s, uniToUtf16(s, i)), i);
});

test('diffs place the change at the caret and count scalar values', () => {
  const cases: [string, string, number, unknown[]][] = [
    ['', 'x', 1, ['x']],
    ['aa', 'aaa', 1, ['a']], // typed at the start: caret after the first a
    ['aa', 'aaa', 3, [2, 'a']],
    ['hello', 'help', 3, [3, { d: 2 }, 'p']],
    ['😀😀', '😀x😀', 3, [1, 'x']],
    ['😀😀', '😀', 2, [1, { d: 1 }]],
    ['a😀b', 'ab', 1, [1, { d: 1 }]],
    ['中文', '中国文', 2, [1, '国']],
    ['中文字', '字', 0, [{ d: 2 }]],
    ['x🎉y', 'x🎊y', 3, [1, { d: 1 }, '🎊']], // same high surrogate, different low one
    ['same', 'same', 2, []],
  ];
  for (const [before, after, caret, want] of cases) {
    const op = diffToOp(before, after, caret);
    assert.deepEqual(op, want, `${before} → ${after}`);
    assert.equal(apply(before, op), after);
  }
});

test('random edits with emoji and CJK diff back exactly (seeded)', () => {
  const r = rng(seed());
  const alphabet = ['a', 'b', ' ', '中', '文', '😀', '🎉', '\n', 'é'];
  const pick = () => alphabet[Math.floor(r() * alphabet.length)];
  for (let i = 0; i < 3000; i++) {
    let before = '';
    for (let n = Math.floor(r() * 12); n > 0; n--) before += pick();
    const chars = [...before];
    const at = Math.floor(r() * (chars.length + 1));
    const del = Math.floor(r() * Math.min(3, chars.length - at + 1));
    let ins = '';
    for (let n = Math.floor(r() * 3); n > 0; n--) ins += pick();
    const after = [...chars.slice(0, at), ins, ...chars.slice(at + del)].join('');
    const caret = [...chars.slice(0, at), ins].join('').length;
    const op = diffToOp(before, after, caret);
    assert.equal(apply(before, op), after, JSON.stringify({ before, after, op }));
    for (const c of op) if (typeof c === 'string') assert.ok(!/^[\udc00-\udfff]|[\ud800-\udbff]$/.test(c));
  }
});

test('a selection moves through a remote op in UTF-16 terms', () => {
  const before = '😀 hello 中文';
  const after = apply(before, ['🎉🎉']);
  // caret after "hello" (UTF-16 offset 8) moves by the two emoji (4 units)
  assert.deepEqual(moveSelection(before, after, ['🎉🎉'], 8, 8), [12, 12]);
  // a remote insert exactly at the caret stays after the caret
  const at = apply(before, [2, 'X']);
  assert.deepEqual(moveSelection(before, at, [2, 'X'], 3, 3), [3, 3]);
  // a delete around the caret collapses it to the delete's start
  const del = apply(before, [1, { d: 3 }]);
  assert.deepEqual(moveSelection(before, del, [1, { d: 3 }], 4, 4), [2, 2]);
});

test('a remote change during composition keeps the provisional text and moves the caret once', async () => {
  const ta = new FakeTextarea();
  const restore = installDocument(ta);
  const server = new FakeServer(() => 1);
  const o = { url: 'fake', doc: 'd', WebSocket: server.WebSocket };
  const me = new CoeditClient(o);
  const other = new CoeditClient(o);
  try {
    const binding = bindTextarea(asTextarea(ta), me);
    await until(() => me.status === 'online' && other.status === 'online', 2000, 'online');
    other.submit(['abcdef']);
    await until(() => ta.value === 'abcdef', 2000, 'shown');
    ta.setSelectionRange(3, 3);
    ta.dispatch(event('compositionstart'));
    ta.value = 'abcnidef';
    ta.setSelectionRange(5, 5);
    ta.dispatch(event('input', { isComposing: true }));
    await sleep(20);
    assert.equal(other.text, 'abcdef', 'provisional text is not sent');
    other.submit([0, 'X']);
    await until(() => me.text.startsWith('X'), 2000, 'remote change');
    assert.equal(ta.value, 'Xabcnidef');
    assert.deepEqual([ta.selectionStart, ta.selectionEnd], [6, 6]);
    binding.unbind();
  } finally {
    me.close();
    other.close();
    restore();
  }
});
