/** The demo's participant colours and names (`demo/people.ts`): distinct colours for everyone
 * present, the same on every page, chosen colours respected. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assignColors, hash32, nameFor, PALETTE } from '../demo/people.js';
import { rng, seed } from './sim.js';

/** A random id like the server's (16 alphanumerics). */
function randomId(r: () => number): string {
  const a = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from({ length: 16 }, () => a[Math.floor(r() * a.length)]).join('');
}

test('two guests whose ids hash to the same colour still get different colours, the same on both pages', () => {
  const r = rng(seed());
  const first = randomId(r);
  let second = randomId(r);
  while (hash32(second) % PALETTE.length !== hash32(first) % PALETTE.length) second = randomId(r);
  const pageA = assignColors([first, second]);
  const pageB = assignColors([second, first]);
  assert.notEqual(pageA.get(first), pageA.get(second));
  assert.deepEqual([...pageA].sort(), [...pageB].sort());
});

test('up to the palette size, everyone present has a distinct colour; any order gives the same result (seeded)', () => {
  const r = rng(seed());
  for (let round = 0; round < 500; round++) {
    const n = 1 + Math.floor(r() * PALETTE.length);
    const ids = Array.from({ length: n }, () => randomId(r));
    const colors = assignColors(ids);
    assert.equal(new Set(colors.values()).size, new Set(ids).size);
    const shuffled = [...ids].sort(() => r() - 0.5);
    assert.deepEqual([...assignColors(shuffled)].sort(), [...colors].sort());
  }
});

test('a colour chosen by the participant is used and not given to anyone else', () => {
  const colors = assignColors(['a', 'b', 'c'], new Map([['a', PALETTE[hash32('b') % PALETTE.length]]]));
  assert.equal(colors.get('a'), PALETTE[hash32('b') % PALETTE.length]);
  assert.equal(new Set(colors.values()).size, 3);
});

test('the hash spreads ids over the palette', () => {
  const r = rng(1);
  const counts = new Array(PALETTE.length).fill(0);
  for (let i = 0; i < 10_000; i++) counts[hash32(randomId(r)) % PALETTE.length]++;
  for (const c of counts) assert.ok(c > 800 && c < 1200, counts.join(' '));
});

test('names: the user metadata, else a guest name from the id', () => {
  assert.equal(nameFor('abcdEFGH1234', { name: 'Ann' }), 'Ann');
  assert.equal(nameFor('abcdefgh1x2y'), 'Guest 1X2Y');
  assert.equal(nameFor('abcdefgh1x2y', {}), 'Guest 1X2Y');
});
