// End-to-end test of the rich-text page (/richtext: Tiptap, Yjs, Hocuspocus provider) in a real
// browser: Debian's Chromium (/usr/bin/chromium) driven by playwright-core, against the real
// coedit binary on 127.0.0.1. Nothing is downloaded. The server and the browser started here
// are stopped at the end, whatever happens.
//
// Two pages on one document type concurrently (bold text from the toolbar, a heading, a bullet
// list) and converge to the same HTML; each shows the other's caret with its name, and both
// list the same two people in the same distinct colours; one page goes offline, both keep
// typing, and everything converges when it is back; both show "synced"; a third page opened
// with `?doc=` shows the same document; the server's copy (`GET /api/docs/{doc}`, kind "yjs")
// holds every typed piece exactly once. A screenshot is saved (e2e/out/richtext.png, or
// $COEDIT_RICHTEXT_SCREENSHOT).
//
// Run: `npm run e2e` after `cargo build --release` (or set COEDIT_BIN to the binary).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.COEDIT_BIN ?? resolve(here, '../../../target/release/coedit');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = process.env.COEDIT_RICHTEXT_SCREENSHOT ?? join(here, 'out', 'richtext.png');
mkdirSync(dirname(SCREENSHOT), { recursive: true });
/** Bound on every wait. */
const WAIT_MS = 15000;
/** Delay between keystrokes, like a fast typist. */
const KEY_DELAY_MS = 15;
const EDITOR = '#editor .ProseMirror';

/** The page's files as built from this tree. The binary embeds the ones it was compiled with
 * (`include_str!`), which may be older: pages get this tree's script and style sheet, so the
 * test checks this tree. The page itself comes from the server (a page fulfilled by the test
 * would not be on the loopback address space, and Chromium's local network access checks
 * would block its WebSocket to 127.0.0.1). */
const STATIC = resolve(here, '../../../src/static');
const FILES = [
  ['/richtext', 'richtext.html', 'text/html; charset=utf-8'],
  ['/static/coedit-richtext.js', 'coedit-richtext.js', 'text/javascript; charset=utf-8'],
  ['/static/richtext.css', 'richtext.css', 'text/css; charset=utf-8'],
];
const ROUTED = FILES.filter(([path]) => path.startsWith('/static/'));

/** Every server started here, killed at exit whatever happened. */
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts coedit on a free port; resolves with its address and a stop function. */
function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'coedit-e2e-rt-'));
  const child = spawn(BIN, ['serve', '--bind', '127.0.0.1:0', '--data-dir', join(dir, 'data')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, COEDIT_LOG: 'warn' },
  });
  children.add(child);
  const stop = () => {
    child.kill('SIGKILL');
    children.delete(child);
    rmSync(dir, { recursive: true, force: true });
  };
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error('server did not start'));
    }, WAIT_MS);
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/coedit listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolveStart({ addr: m[1], stop });
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

/** Polls `fn` until it returns a truthy value; on a timeout, says what it last saw. */
async function until(fn, what, ms = WAIT_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    const v = await fn();
    if (v) return v;
    last = v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const html = (page) => page.evaluate(() => window.coeditRichtext.editor.getHTML());
const text = (page) => page.evaluate(() => window.coeditRichtext.editor.getText());
const statusOf = (page) => page.$eval('#status', (s) => s.dataset.status);
/** What a page's provider says: shown when a wait for "synced" times out. */
const providerState = (page) =>
  page.evaluate(() => {
    const p = window.coeditRichtext?.provider;
    if (!p) return { page: 'not started' };
    const { status } = p.configuration.websocketProvider;
    return { shown: document.querySelector('#status').dataset.status, socket: status, handshake: p.isSynced, unsyncedChanges: p.unsyncedChanges };
  });
const synced = async (page) => {
  let state;
  try {
    await until(async () => (await statusOf(page)) === 'synced', 'synced');
  } catch (e) {
    state = await providerState(page).catch((err) => String(err));
    throw new Error(`${e.message}; the page's provider: ${JSON.stringify(state)}`);
  }
};
/** The names on the other participants' carets shown in a page. */
const caretNames = (page) =>
  page.$$eval('.collaboration-carets__caret .collaboration-carets__label', (ls) => ls.map((l) => l.textContent));
/** `data-client` → `--c` of each participant in a page's people list. */
const peopleColors = (page) =>
  page.$$eval('#people li', (lis) =>
    Object.fromEntries(lis.map((li) => [li.dataset.client, li.style.getPropertyValue('--c').trim()])),
  );

/** Both pages show the same, expected, document and are synced; returns the HTML. */
async function converged(pages, expected) {
  let all = [];
  try {
    await until(async () => {
      all = await Promise.all(pages.map(html));
      return all.every((h) => h === expected);
    }, 'convergence');
  } catch (e) {
    throw new Error(`${e.message}: expected ${expected}, the pages have ${JSON.stringify(all, null, 1)}`);
  }
  for (const p of pages) await synced(p);
  return expected;
}

let browser;
before(async () => {
  browser = await chromium.launch({
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
});
after(async () => {
  await browser?.close();
});

/** Uncaught errors in the pages (none expected). */
const pageErrors = [];

async function newPage() {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 640 } });
  for (const [path, file, contentType] of ROUTED) {
    await ctx.route(
      (url) => url.pathname === path,
      (route) => route.fulfill({ path: join(STATIC, file), contentType }),
    );
  }
  const page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(e));
  return page;
}

/** The server serves the page and its files; says so when it embeds older ones than this tree. */
async function checkServed(addr) {
  for (const [path, file, contentType] of FILES) {
    const r = await fetch(`http://${addr}${path}`);
    assert.equal(r.status, 200, `GET ${path}`);
    assert.equal(r.headers.get('content-type'), contentType, `GET ${path}`);
    if ((await r.text()) !== readFileSync(join(STATIC, file), 'utf8')) {
      const got = path.startsWith('/static/') ? 'pages get the one built here' : 'pages get the served one';
      console.log(`# note: the binary embeds another ${file} than this tree; ${got}`);
    }
  }
}

/** Sets the page's name in the side panel (a change event, as when the user presses Enter). */
async function setName(page, name) {
  await page.fill('#name', name);
  await page.press('#name', 'Enter');
  await until(async () => (await page.evaluate(() => window.coeditRichtext.user.name)) === name, `name ${name}`);
}

async function clickTool(page, cmd) {
  await page.click(`#toolbar [data-cmd=${cmd}]`);
}

test('two browsers edit one rich-text document through /hocuspocus', { timeout: 180000 }, async () => {
  const server = await startServer();
  try {
    await checkServed(server.addr);
    const doc = `e2e-rt-${Date.now()}`;
    const url = `http://${server.addr}/richtext#doc=${doc}`;
    const [a, b] = [await newPage(), await newPage()];
    await a.goto(url);
    await b.goto(url);
    for (const p of [a, b]) await synced(p);
    await setName(a, 'Ann');
    await setName(b, 'Bob');

    // A writes a heading (toolbar) and starts a paragraph.
    await a.click(EDITOR);
    await clickTool(a, 'heading');
    await a.keyboard.type('Shared notes', { delay: KEY_DELAY_MS });
    await a.keyboard.press('Enter');
    await a.keyboard.type('Alpha ', { delay: KEY_DELAY_MS });
    await until(async () => (await text(b)).includes('Alpha'), 'A’s text at B');

    // B opens a bullet list (toolbar) below it; then both type at once, A in bold (toolbar).
    await b.click(EDITOR);
    await b.keyboard.press('Control+End');
    await b.keyboard.press('Enter');
    await clickTool(b, 'bulletList');
    await Promise.all([
      (async () => {
        await clickTool(a, 'bold');
        await a.keyboard.type('bold words', { delay: KEY_DELAY_MS });
        await clickTool(a, 'bold');
        await a.keyboard.type(' plain', { delay: KEY_DELAY_MS });
      })(),
      (async () => {
        await b.keyboard.type('first item', { delay: KEY_DELAY_MS });
        await b.keyboard.press('Enter');
        await b.keyboard.type('second item', { delay: KEY_DELAY_MS });
      })(),
    ]);
    await converged(
      [a, b],
      '<h2>Shared notes</h2><p>Alpha <strong>bold words</strong> plain</p>' +
        '<ul><li><p>first item</p></li><li><p>second item</p></li></ul>',
    );

    // Presence: each page shows the other's caret with its name, never its own.
    await until(async () => (await caretNames(a)).includes('Bob'), 'Bob’s caret at A');
    await until(async () => (await caretNames(b)).includes('Ann'), 'Ann’s caret at B');
    assert.deepEqual(await caretNames(a), ['Bob']);
    assert.deepEqual(await caretNames(b), ['Ann']);
    // Both list the same two people in the same, distinct colours.
    const ids = await Promise.all([a, b].map((p) => p.evaluate(() => String(window.coeditRichtext.ydoc.clientID))));
    await until(async () => Object.keys(await peopleColors(a)).length === 2, 'A lists two people');
    await until(async () => Object.keys(await peopleColors(b)).length === 2, 'B lists two people');
    await until(
      async () => JSON.stringify(await peopleColors(a)) === JSON.stringify(await peopleColors(b)),
      'the same colours on both pages',
    );
    const colors = await peopleColors(a);
    assert.match(colors[ids[0]], /^#[0-9a-f]{6}$/);
    assert.notEqual(colors[ids[0]], colors[ids[1]]);
    const [caretColor, bobColor] = await a.$eval(
      '.collaboration-carets__caret',
      (caret, hex) => {
        const probe = document.createElement('span');
        probe.style.color = hex;
        document.body.append(probe);
        const rgb = getComputedStyle(probe).color;
        probe.remove();
        return [getComputedStyle(caret).borderLeftColor, rgb];
      },
      colors[ids[1]],
    );
    assert.equal(caretColor, bobColor, 'Bob’s caret at A has Bob’s colour');

    // B goes offline and keeps typing; A types too; nothing is lost when B is back.
    await b.context().setOffline(true);
    await until(async () => (await statusOf(b)) === 'offline', 'B offline');
    await Promise.all([
      (async () => {
        await b.keyboard.type(' (offline)', { delay: KEY_DELAY_MS });
        await b.keyboard.press('Enter');
        await b.keyboard.type('third item', { delay: KEY_DELAY_MS });
      })(),
      a.keyboard.type(' and more', { delay: KEY_DELAY_MS }),
    ]);
    assert.ok((await text(b)).includes('third item'));
    assert.ok(!(await text(b)).includes('and more'), 'B got A’s typing while offline');
    assert.ok(!(await text(a)).includes('offline'), 'A got B’s typing while B was offline');
    assert.equal(await statusOf(b), 'offline');
    await b.context().setOffline(false);
    const expected =
      '<h2>Shared notes</h2><p>Alpha <strong>bold words</strong> plain and more</p>' +
      '<ul><li><p>first item</p></li><li><p>second item (offline)</p></li><li><p>third item</p></li></ul>';
    await converged([a, b], expected);
    assert.equal(await a.textContent('#status .label'), 'synced');
    assert.equal(await b.textContent('#status .label'), 'synced');
    // B's presence is back at A after the reconnect.
    await until(async () => (await caretNames(a)).includes('Bob'), 'Bob’s caret at A after the reconnect');

    // A third page, with the document in the query string, opens the same document.
    const c = await newPage();
    await c.goto(`http://${server.addr}/richtext?doc=${doc}`);
    await synced(c);
    await until(async () => (await html(c)) === expected, 'C has the document');
    await until(async () => (await c.$$('#people li')).length === 3, 'C lists three people');

    // The server's copy: a Yjs document whose XML fragment (Tiptap's `default`) holds everything.
    const r = await fetch(`http://${server.addr}/api/docs/${doc}`);
    assert.equal(r.status, 200, `GET /api/docs/${doc}`);
    const body = await r.json();
    assert.equal(body.kind, 'yjs', JSON.stringify(body));
    const content = body.content;
    const fragment = typeof content === 'string' ? content : JSON.stringify(content?.default ?? content);
    for (const piece of ['Shared notes', 'Alpha ', 'bold words', ' plain and more', 'first item', 'second item (offline)', 'third item']) {
      assert.equal(fragment.split(piece).length, 2, `${piece} exactly once in the server's content: ${fragment}`);
    }
    for (const name of ['heading', 'bold', 'bulletList', 'listItem', 'paragraph']) {
      // (Y.XmlElement#toString lowercases node names; other serializations may not.)
      assert.ok(fragment.toLowerCase().includes(name.toLowerCase()), `${name} in the server's content: ${fragment}`);
    }

    await a.screenshot({ path: SCREENSHOT });
    assert.ok(statSync(SCREENSHOT).size > 10000);
    assert.deepEqual(pageErrors.map(String), []);
  } finally {
    server.stop();
  }
});
