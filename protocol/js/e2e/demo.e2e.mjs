// End-to-end tests of the demo page in a real browser: Debian's Chromium (/usr/bin/chromium)
// driven by playwright-core, against the real coedit binary on 127.0.0.1. Nothing is
// downloaded. Every server, token endpoint and the browser started here are stopped at the end.
//
// 1. Two pages type concurrently, one goes offline and keeps typing, presence moves, an input
//    method composes Chinese, both pages give the two guests the same distinct colours, the
//    page shows the server-confirmed revision, and a screenshot is saved (e2e/out/demo.png,
//    or $COEDIT_SCREENSHOT).
// 2. Undo: a page types, another inserts before it, Ctrl+Z removes only the first page's
//    typing (on the server too), Ctrl+Shift+Z puts it back.
// 3. Tokens and roles, against a server with SM2 authentication (clock skew 0) and a token
//    endpoint in this process (`coedit token issue`): short-lived tokens refreshed on a live
//    session, a page offline past its token's expiry, a page with a fixed token that expires
//    and resumes with a new one, and a viewer with a read-only page. Nothing typed is lost,
//    and no token stays in a page's address.
//
// Run: `npm run e2e` after `cargo build --release` (or set COEDIT_BIN to the binary).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.COEDIT_BIN ?? resolve(here, '../../../target/release/coedit');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = process.env.COEDIT_SCREENSHOT ?? join(here, 'out', 'demo.png');
mkdirSync(dirname(SCREENSHOT), { recursive: true });
/** Bound on every wait. */
const WAIT_MS = 15000;
/** Delay between keystrokes, like a fast typist. */
const KEY_DELAY_MS = 15;
/** Lifetime of the short-lived tokens of test 3, seconds. */
const SHORT_TTL_S = 4;

/** Every server started here, killed at exit whatever happened. */
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts coedit on a free port (with `config`, TOML, if given); resolves with its address and
 * a stop function. */
function startServer(config) {
  const dir = mkdtempSync(join(tmpdir(), 'coedit-e2e-'));
  const args = ['serve', '--bind', '127.0.0.1:0', '--data-dir', join(dir, 'data')];
  if (config) {
    writeFileSync(join(dir, 'coedit.toml'), config);
    args.push('--config', join(dir, 'coedit.toml'));
  }
  const child = spawn(BIN, args, {
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

/** Polls `fn` until it returns a truthy value. */
async function until(fn, what, ms = WAIT_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (page) => page.$eval('#text', (t) => t.value);
const statusOf = (page) => page.$eval('#status', (s) => s.dataset.status);
const clientId = (page) => page.evaluate(() => window.coeditDemo.client.clientId);
const online = (page) => until(async () => (await statusOf(page)) === 'online', 'online');

async function getDoc(addr, doc, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const r = await fetch(`http://${addr}/api/docs/${doc}`, { headers });
  assert.equal(r.status, 200, `GET ${doc}`);
  return r.json();
}
const serverText = async (addr, doc, token) => (await getDoc(addr, doc, token)).text;

/** Both pages show the same text, equal to the server's; returns it. */
async function converged(addr, doc, a, b) {
  return until(async () => {
    const [ta, tb, ts] = [await text(a), await text(b), await serverText(addr, doc)];
    return ta === tb && tb === ts && ts;
  }, 'convergence');
}

/** `data-client` → `--c` of each participant in a page's people list. */
const peopleColors = (page) =>
  page.$$eval('#people li', (lis) =>
    Object.fromEntries(lis.map((li) => [li.dataset.client, li.style.getPropertyValue('--c').trim()])),
  );

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

/** The demo bundle built from this tree. The binary embeds the bundle it was compiled with
 * (`include_str!`), which may be older: pages get this one, so the test checks this tree. */
const BUNDLE = resolve(here, '../../../src/static/coedit-demo.js');

const newPage = async () => {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 640 } });
  await ctx.route('**/static/coedit-demo.js', (route) =>
    route.fulfill({ path: BUNDLE, contentType: 'text/javascript; charset=utf-8' }),
  );
  return ctx.newPage();
};

/** Says so when the binary serves another demo bundle than the one built here. */
async function noteEmbeddedBundle(addr) {
  const served = await (await fetch(`http://${addr}/static/coedit-demo.js`)).text();
  if (served !== readFileSync(BUNDLE, 'utf8')) {
    console.log('# note: the binary embeds an older demo bundle; pages get the one built here');
  }
}

test('two browsers edit one document through the demo page', { timeout: 180000 }, async () => {
  const server = await startServer();
  try {
    await noteEmbeddedBundle(server.addr);
    const doc = `e2e-${Date.now()}`;
    const url = `http://${server.addr}/#doc=${doc}`;
    const [a, b] = [await newPage(), await newPage()];
    await a.goto(url);
    await b.goto(url);
    for (const p of [a, b]) await online(p);

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
    await b.context().setOffline(true);
    await until(async () => (await statusOf(b)) !== 'online', 'B offline');
    await Promise.all([
      b.keyboard.type(' offline-B-1 offline-B-2', { delay: KEY_DELAY_MS }),
      a.keyboard.type('online-A ', { delay: KEY_DELAY_MS }),
    ]);
    assert.ok(!(await text(a)).includes('offline-B'), 'B was not offline');
    assert.ok((await text(b)).includes('offline-B-2'));
    await b.context().setOffline(false);
    const t2 = await converged(server.addr, doc, a, b);
    for (const piece of ['online-A ', ' offline-B-1 offline-B-2', '[B: jumps over 🦊]', '你好 😀']) {
      assert.equal(t2.split(piece).length, 2, `${piece} exactly once in ${t2}`);
    }

    // The page shows the server-confirmed revision.
    const { rev } = await getDoc(server.addr, doc);
    for (const p of [a, b]) {
      await until(async () => (await p.textContent('#meta')) === `revision ${rev}`, `revision ${rev} shown`);
    }

    // Presence: A sees B's caret move.
    const bId = await clientId(b);
    const aId = await clientId(a);
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

    // The two guests have clearly different colours, the same on both pages.
    await a.click('#text'); // A publishes a caret too, so B lists A
    await until(async () => Object.keys(await peopleColors(b)).length === 2, 'B lists A');
    const [colorsA, colorsB] = [await peopleColors(a), await peopleColors(b)];
    assert.match(colorsA[aId], /^#[0-9a-f]{6}$/);
    assert.notEqual(colorsA[aId], colorsA[bId]);
    assert.deepEqual(colorsA, colorsB);

    // An input method: provisional pinyin is not sent, the composed character is.
    const before = await text(b);
    await a.keyboard.press('Control+End');
    const ime = await a.context().newCDPSession(a);
    await ime.send('Input.imeSetComposition', { text: 'ni', selectionStart: 2, selectionEnd: 2 });
    await until(async () => (await text(a)).endsWith('ni'), 'composition shown at A');
    await sleep(300);
    assert.equal(await text(b), before, 'provisional composition text was sent');
    await ime.send('Input.insertText', { text: '你' });
    const t3 = await converged(server.addr, doc, a, b);
    assert.equal(t3, `${before}你`);

    await a.screenshot({ path: SCREENSHOT });
    assert.ok(statSync(SCREENSHOT).size > 10000);
  } finally {
    server.stop();
  }
});

test("Ctrl+Z undoes only the page's own typing after another page inserted before it", { timeout: 120000 }, async () => {
  const server = await startServer();
  try {
    const doc = `e2e-undo-${Date.now()}`;
    const url = `http://${server.addr}/#doc=${doc}`;
    const [a, b] = [await newPage(), await newPage()];
    await a.goto(url);
    await b.goto(url);
    for (const p of [a, b]) await online(p);
    await a.click('#text');
    await a.keyboard.type('hello world', { delay: KEY_DELAY_MS });
    await sleep(800); // a new undo step
    await a.keyboard.type(' again', { delay: KEY_DELAY_MS });
    await until(async () => (await serverText(server.addr, doc)) === 'hello world again', 'typed');
    await until(async () => (await text(b)) === 'hello world again', 'B has it');
    await b.click('#text');
    await b.keyboard.press('Control+Home');
    await b.keyboard.type('>> ', { delay: KEY_DELAY_MS });
    await until(async () => (await text(a)) === '>> hello world again', 'A sees the insert');
    await a.keyboard.press('Control+z');
    assert.equal(await text(a), '>> hello world');
    await until(async () => (await serverText(server.addr, doc)) === '>> hello world', 'undo saved');
    await until(async () => (await text(b)) === '>> hello world', 'B sees the undo');
    await a.keyboard.press('Control+Shift+z');
    await until(async () => (await serverText(server.addr, doc)) === '>> hello world again', 'redo saved');
    await a.keyboard.press('Control+z');
    await a.keyboard.press('Control+z');
    await until(async () => (await serverText(server.addr, doc)) === '>> ', "all of A's typing undone, B's kept");
    assert.equal(await text(b), '>> ');
  } finally {
    server.stop();
  }
});

/** A token endpoint like an application's backend would have (here without a session):
 * `GET /token?role=R&ttl=S&sub=U&name=N` answers a fresh token, CORS for the page's origin. */
async function startTokenEndpoint(keys) {
  const calls = [];
  const issue = (q) =>
    new Promise((ok, fail) => {
      const args = ['token', 'issue', '--sub', q.sub ?? 'alice', '--tenant', 'e2e', '--grant', `notes-*=${q.role ?? 'editor'}`];
      args.push('--ttl', q.ttl ?? '3600', '--sm2-key', join(keys, 'sm2.pem'));
      if (q.name) args.push('--name', q.name);
      execFile(BIN, args, (err, stdout) => (err ? fail(err) : ok(stdout.trim())));
    });
  const http = createServer(async (req, res) => {
    const q = Object.fromEntries(new URL(req.url, 'http://x').searchParams);
    calls.push(q);
    try {
      const token = await issue(q);
      res.writeHead(200, {
        'content-type': 'text/plain',
        'cache-control': 'no-store',
        'access-control-allow-origin': req.headers.origin ?? '*',
        'access-control-allow-credentials': 'true',
      });
      res.end(token);
    } catch (e) {
      res.writeHead(500);
      res.end(String(e));
    }
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${http.address().port}/token`;
  return {
    calls,
    issue,
    url: (q) => `${base}?${new URLSearchParams(q)}`,
    stop: () => new Promise((r) => http.close(r)),
  };
}

test('short-lived tokens: nothing typed is lost, viewers are read-only, no token in the address', { timeout: 180000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coedit-e2e-keys-'));
  execFileSync(BIN, ['keygen', '--out', join(dir, 'keys')], { stdio: 'ignore' });
  const server = await startServer(
    `[auth]\nmode = "sm2"\npublic_key_file = "${join(dir, 'keys', 'sm2.pub.pem')}"\nclock_skew_s = 0\n`,
  );
  const tokens = await startTokenEndpoint(join(dir, 'keys'));
  try {
    const reader = await tokens.issue({ role: 'viewer', sub: 'auditor' });
    const textOf = (doc) => serverText(server.addr, doc, reader);
    const doc = `notes-${Date.now()}`;
    const ttl = String(SHORT_TTL_S);
    const pageUrl = (d, q) => `http://${server.addr}/#doc=${d}&token_url=${encodeURIComponent(tokens.url(q))}`;

    // A: an editor whose page gets short-lived tokens from the endpoint.
    const a = await newPage();
    await a.goto(pageUrl(doc, { role: 'editor', sub: 'alice', name: 'Alice', ttl }));
    await online(a);
    assert.ok(!a.url().includes('token'), `token parameters stripped: ${a.url()}`);
    assert.ok(a.url().endsWith(`#doc=${doc}`), a.url());
    await a.evaluate(() => {
      window.statuses = [];
      window.coeditDemo.client.on('status', (s) => window.statuses.push(s));
    });
    const firstExp = await a.evaluate(() => window.coeditDemo.client.exp);
    await a.click('#text');
    await a.keyboard.type('A-before ', { delay: KEY_DELAY_MS });
    await until(async () => (await textOf(doc)) === 'A-before ', 'A saved');

    // V: a viewer. Read-only textarea, a visible marker, typing changes nothing.
    const v = await newPage();
    await v.goto(pageUrl(doc, { role: 'viewer', sub: 'vera', name: 'Vera', ttl }));
    await online(v);
    await until(async () => (await text(v)) === 'A-before ', 'V has the text');
    assert.equal(await v.$eval('#text', (t) => t.readOnly), true);
    assert.equal(await v.isVisible('#readonly'), true);
    assert.equal(await a.isVisible('#readonly'), false);
    await v.click('#text');
    await v.keyboard.type('viewer typing', { delay: KEY_DELAY_MS });
    assert.equal(await text(v), 'A-before ');
    assert.equal(await v.evaluate(() => window.coeditDemo.client.submit([0, 'sneaky '])), false);
    await until(async () => /read-only/.test((await v.textContent('#errors')) ?? ''), 'error shown at V');
    // V's caret is shown at A with the name from V's token.
    await until(async () => (await a.locator('#overlay .caret .tag').allTextContents()).includes('Vera'), 'Vera at A');
    await v.screenshot({ path: join(dirname(SCREENSHOT), 'viewer.png') });

    // B: an editor offline for longer than its token lives, typing meanwhile.
    const b = await newPage();
    await b.goto(pageUrl(doc, { role: 'editor', sub: 'bob', ttl }));
    await online(b);
    await b.context().setOffline(true);
    await until(async () => (await statusOf(b)) !== 'online', 'B offline');
    await b.click('#text');
    await b.keyboard.press('Control+End');
    await b.keyboard.type('B-offline ', { delay: KEY_DELAY_MS });

    // S: a page given a fixed token (no endpoint) that expires.
    const docS = `notes-static-${Date.now()}`;
    const s = await newPage();
    const fixed = await tokens.issue({ role: 'editor', sub: 'sam', ttl: String(SHORT_TTL_S - 1) });
    await s.goto(`http://${server.addr}/#doc=${docS}&token=${fixed}`);
    await online(s);
    assert.ok(!s.url().includes('token'), s.url());
    await s.click('#text');
    await s.keyboard.type('static-1 ', { delay: KEY_DELAY_MS });
    await until(async () => (await textOf(docS)) === 'static-1 ', 'S saved');

    await sleep((SHORT_TTL_S + 2.5) * 1000); // past every token's expiry

    // A never lost its session: its tokens were refreshed in place.
    await a.keyboard.type('A-after', { delay: KEY_DELAY_MS });
    await b.context().setOffline(false);
    await until(async () => {
      const t = await textOf(doc);
      return ['A-before ', 'A-after', 'B-offline '].every((p) => t.split(p).length === 2) && t;
    }, 'everything typed saved exactly once');
    assert.deepEqual(await a.evaluate(() => window.statuses), [], 'A stayed online');
    assert.ok((await a.evaluate(() => window.coeditDemo.client.exp)) >= firstExp + 2, 'A refreshed its token');
    assert.ok(tokens.calls.filter((q) => q.sub === 'alice').length >= 3);
    assert.ok(!(await textOf(doc)).includes('viewer typing'));
    assert.ok(!(await textOf(doc)).includes('sneaky'));
    await until(async () => (await text(b)) === (await textOf(doc)) && (await text(a)) === (await text(b)), 'pages agree');

    // S stopped when its token expired, says so, keeps what is typed, and resumes with a new token.
    await until(async () => (await statusOf(s)) === 'closed', 'S stopped');
    await until(async () => /5003/.test((await s.textContent('#errors')) ?? ''), 'expiry shown at S');
    await s.keyboard.type('static-2', { delay: KEY_DELAY_MS });
    const fresh = await tokens.issue({ role: 'editor', sub: 'sam', ttl: '600' });
    s.once('dialog', (d) => d.accept(fresh));
    await s.click('#errors .new-token');
    await until(async () => (await textOf(docS)) === 'static-1 static-2', 'S resumed and saved');
    assert.ok(!s.url().includes('token'));
  } finally {
    await tokens.stop();
    server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
