// End-to-end test of the demo page in a real browser: Debian's Chromium (/usr/bin/chromium)
// driven by playwright-core, against the real coedit binary on 127.0.0.1. Nothing is
// downloaded. Two pages type concurrently, one goes offline and keeps typing, presence moves,
// an input method composes Chinese, and a screenshot of the page is saved (e2e/out/demo.png,
// or $COEDIT_SCREENSHOT).
//
// Run: `npm run e2e` after `cargo build --release` (or set COEDIT_BIN to the binary).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.COEDIT_BIN ?? resolve(here, '../../../target/release/coedit');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = process.env.COEDIT_SCREENSHOT ?? join(here, 'out', 'demo.png');
/** Bound on every wait. */
const WAIT_MS = 15000;
/** Delay between keystrokes, like a fast typist. */
const KEY_DELAY_MS = 15;

/** Starts coedit on a free port; resolves with its address and a stop function. */
function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'coedit-e2e-'));
  const child = spawn(BIN, ['serve', '--bind', '127.0.0.1:0', '--data-dir', join(dir, 'data')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, COEDIT_LOG: 'warn' },
  });
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start')), WAIT_MS);
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/coedit listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolveStart({
          addr: m[1],
          stop: () => {
            child.kill('SIGKILL');
            rmSync(dir, { recursive: true, force: true });
          },
        });
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

/** Polls `fn` until it returns a truthy value. */
async function until(fn, what) {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const text = (page) => page.$eval('#text', (t) => t.value);
const statusOf = (page) => page.$eval('#status', (s) => s.dataset.status);
const clientId = (page) => page.evaluate(() => window.coeditDemo.client.clientId);

async function serverText(addr, doc) {
  const r = await fetch(`http://${addr}/api/docs/${doc}`);
  return (await r.json()).text;
}

/** Both pages show the same text, equal to the server's; returns it. */
async function converged(addr, doc, a, b) {
  return until(async () => {
    const [ta, tb, ts] = [await text(a), await text(b), await serverText(addr, doc)];
    return ta === tb && tb === ts && ts;
  }, 'convergence');
}

test('two browsers edit one document through the demo page', { timeout: 180000 }, async () => {
  const server = await startServer();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const doc = `e2e-${Date.now()}`;
    const url = `http://${server.addr}/#doc=${doc}`;
    const ctxA = await browser.newContext({ viewport: { width: 1100, height: 640 } });
    const ctxB = await browser.newContext({ viewport: { width: 1100, height: 640 } });
    const [a, b] = [await ctxA.newPage(), await ctxB.newPage()];
    await a.goto(url);
    await b.goto(url);
    for (const p of [a, b]) await until(async () => (await statusOf(p)) === 'online', 'online');

    // Concurrent typing at different positions, CJK and emoji included.
    await a.click('#text');
    await a.keyboard.type('The quick brown fox. ', { delay: KEY_DELAY_MS });
    await until(async () => (await text(b)).includes('fox'), 'first text at B');
    await b.click('#text');
    await b.keyboard.press('Control+End');
    await a.keyboard.press('Control+Home');
    await Promise.all([
      a.keyboard.type('[A: 你好 😀] ', { delay: KEY_DELAY_MS }),
      b.keyboard.type('[B: jumps over 🦊]', { delay: KEY_DELAY_MS }),
    ]);
    const t1 = await converged(server.addr, doc, a, b);
    assert.ok(t1.startsWith('[A: 你好 😀] The quick brown fox. '), t1);
    assert.ok(t1.endsWith('[B: jumps over 🦊]'), t1);

    // B goes offline and keeps typing; A types too; nothing is lost when B comes back.
    await ctxB.setOffline(true);
    await until(async () => (await statusOf(b)) !== 'online', 'B offline');
    await Promise.all([
      b.keyboard.type(' offline-B-1 offline-B-2', { delay: KEY_DELAY_MS }),
      a.keyboard.type('online-A ', { delay: KEY_DELAY_MS }),
    ]);
    assert.ok(!(await text(a)).includes('offline-B'), 'B was not offline');
    assert.ok((await text(b)).includes('offline-B-2'));
    await ctxB.setOffline(false);
    const t2 = await converged(server.addr, doc, a, b);
    for (const piece of ['online-A ', ' offline-B-1 offline-B-2', '[B: jumps over 🦊]', '你好 😀']) {
      assert.equal(t2.split(piece).length, 2, `${piece} exactly once in ${t2}`);
    }

    // Presence: A sees B's caret move.
    const bId = await clientId(b);
    const caretOf = () =>
      a.evaluate((id) => JSON.stringify(window.coeditDemo.client.peers.get(id) ?? null), bId);
    await b.keyboard.press('Control+End');
    const len = [...t2].length;
    await until(async () => (await caretOf()) === JSON.stringify([[len, len]]), 'B caret at the end');
    for (let i = 0; i < 4; i++) await b.keyboard.press('ArrowLeft');
    await until(async () => (await caretOf()) === JSON.stringify([[len - 4, len - 4]]), 'B caret moved');
    await b.keyboard.press('Shift+Control+Home');
    await until(async () => {
      const sel = JSON.parse(await caretOf());
      return sel && sel[0][0] === len - 4 && sel[0][1] === 0;
    }, 'B selection');
    assert.equal(await a.locator('#overlay .caret').count(), 1);
    assert.equal(await a.locator('#people li').count(), 2);

    // An input method: provisional pinyin is not sent, the composed character is.
    const before = await text(b);
    await a.click('#text');
    await a.keyboard.press('Control+End');
    const ime = await ctxA.newCDPSession(a);
    await ime.send('Input.imeSetComposition', { text: 'ni', selectionStart: 2, selectionEnd: 2 });
    await until(async () => (await text(a)).endsWith('ni'), 'composition shown at A');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await text(b), before, 'provisional composition text was sent');
    await ime.send('Input.insertText', { text: '你' });
    const t3 = await converged(server.addr, doc, a, b);
    assert.equal(t3, `${before}你`);

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await a.screenshot({ path: SCREENSHOT });
    assert.ok(statSync(SCREENSHOT).size > 10000);
  } finally {
    await browser.close();
    server.stop();
  }
});
