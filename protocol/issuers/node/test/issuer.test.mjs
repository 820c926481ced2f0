// Tests of @coedit/token-issuer (node --test): known answers for SM2 (GM/T 0003.5 Annex A,
// ID 1234567812345678) and SM3, key-file parsing of what `coedit keygen` writes, claim
// validation, and interop with a real coedit server (REST, Authorization: Bearer) in sm2 and
// hmac-sm3 mode: editor writes and reads, viewer reads but is refused writes (403/5006), a
// flipped signature byte (401/5002), an expired token (401/5003), another key (401/5002).
// Owns the servers it starts: 127.0.0.1, port picked by the server (port 0), a temp data dir,
// always stopped (after hook, exit and signal handlers). COEDIT_BIN names the binary (default
// target/release/coedit at the repository root).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { inspect } from 'node:util';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sm2 as sm2lib, sm3 as sm3lib } from 'sm-crypto-v2';

import {
  ALG_HMAC,
  ALG_SM2,
  HmacKey,
  MAX_GRANTS,
  Sm2PrivateKey,
  Sm2PublicKey,
  decodeToken,
  hmacKeyFromBytes,
  hmacKeyFromText,
  hmacSm3,
  issueToken,
  loadHmacKeyFile,
  loadKeyFile,
  loadSm2PrivateKeyFile,
  loadSm2PublicKeyFile,
  sm2PrivateKeyFromPem,
  sm2Sign,
  sm2Verify,
} from '../index.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../../..');
const BIN = resolve(repoRoot, process.env.COEDIT_BIN ?? 'target/release/coedit');
const SKEW = 30;
const STEP_MS = 15_000;

// GM/T 0003.5-2012 / GB/T 32918.5 Annex A, recommended curve (also ../shared/data/sm/vectors.json).
const ANNEX_A = {
  msg: 'message digest',
  d: '3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8',
  x: '09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020',
  y: 'CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13',
  k: '59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21',
  r: 'F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3',
  s: 'B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA',
};

// ---- the servers ---------------------------------------------------------------------------

const fx = {};
const running = new Set();
const killAll = () => {
  for (const child of running) child.kill('SIGKILL');
};
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    if (fx.dir) rmSync(fx.dir, { recursive: true, force: true });
    process.exit(1);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function coedit(args) {
  return execFileSync(BIN, args, {
    encoding: 'utf8',
    timeout: STEP_MS,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Starts `coedit serve` with `[auth]` lines `auth`; resolves once it answers /readyz. */
async function startServer(dir, name, auth) {
  const config = join(dir, `${name}.toml`);
  writeFileSync(
    config,
    [
      '[server]',
      'workers = 1',
      'doc_threads = 1',
      '[crypto]',
      'threads = 1',
      '[auth]',
      ...auth,
      `clock_skew_s = ${SKEW}`,
      '',
    ].join('\n'),
  );
  const outPath = join(dir, `${name}.out`);
  const logPath = join(dir, `${name}.log`);
  const out = openSync(outPath, 'w');
  const log = openSync(logPath, 'w');
  const child = spawn(
    BIN,
    ['serve', '--bind', '127.0.0.1:0', '--data-dir', join(dir, `data-${name}`), '--config', config],
    { stdio: ['ignore', out, log] },
  );
  closeSync(out);
  closeSync(log);
  running.add(child);
  if (process.env.COEDIT_ISSUER_PIDFILE)
    appendFileSync(process.env.COEDIT_ISSUER_PIDFILE, `${child.pid}\n`);
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
    running.delete(child);
  });
  const server = { name, child, logPath, url: null };
  const deadline = Date.now() + STEP_MS;
  const logTail = () => readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n');
  while (server.url === null) {
    if (exited) throw new Error(`coedit (${name}) exited ${JSON.stringify(exited)}:\n${logTail()}`);
    if (Date.now() > deadline)
      throw new Error(`coedit (${name}) printed no address:\n${logTail()}`);
    const m = /coedit listening on (\S+)/.exec(readFileSync(outPath, 'utf8'));
    if (m) server.url = `http://${m[1]}`;
    else await sleep(50);
  }
  for (;;) {
    try {
      const r = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) return server;
    } catch {
      // not yet
    }
    if (Date.now() > deadline)
      throw new Error(`coedit (${name}) never became ready:\n${logTail()}`);
    await sleep(50);
  }
}

/** SIGTERM (the server saves and exits), SIGKILL if it has not exited within 10 s. */
async function stopServer(server) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
}

/** One REST call; answers status and parsed JSON body. */
async function api(server, method, path, token, body) {
  const headers = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: the assertions below show the text
  }
  return { status: res.status, json, text };
}

function assertRefused(res, status, code, what) {
  assert.equal(res.status, status, `${what}: HTTP ${res.status} ${res.text}`);
  assert.equal(res.json?.error?.code, code, `${what}: ${res.text}`);
}

/** The token with one byte of its signature changed. */
function flipSignatureByte(token, index) {
  const [h, c, s] = token.split('.');
  const sig = Buffer.from(s, 'base64url');
  sig[index] ^= 0x01;
  return `${h}.${c}.${sig.toString('base64url')}`;
}

before(async () => {
  fx.dir = mkdtempSync(join(tmpdir(), 'coedit-issuer-node-'));
  fx.keys = join(fx.dir, 'keys');
  fx.other = join(fx.dir, 'other-keys');
  coedit(['keygen', '--out', fx.keys]);
  coedit(['keygen', '--out', fx.other]);
  fx.sm2 = await startServer(fx.dir, 'sm2', [
    'mode = "sm2"',
    `public_key_file = "${join(fx.keys, 'sm2.pub.pem')}"`,
  ]);
  fx.hmac = await startServer(fx.dir, 'hmac', [
    'mode = "hmac-sm3"',
    `hmac_key_file = "${join(fx.keys, 'hmac.key')}"`,
  ]);
});

after(async () => {
  await Promise.all([fx.sm2, fx.hmac].filter(Boolean).map(stopServer));
  if (fx.dir) rmSync(fx.dir, { recursive: true, force: true });
});

// ---- known answers -------------------------------------------------------------------------

describe('known answers', () => {
  const pubHex = `04${ANNEX_A.x}${ANNEX_A.y}`.toLowerCase();
  const sigHex = `${ANNEX_A.r}${ANNEX_A.s}`.toLowerCase();

  test('the GM/T 0003.5 Annex A signature verifies with ID 1234567812345678 (r ‖ s)', () => {
    const pub = new Sm2PublicKey(pubHex);
    assert.equal(sm2Verify(ANNEX_A.msg, Buffer.from(sigHex, 'hex'), pub), true);
    // The ID is part of the digest: the same signature fails under another ID, or altered.
    assert.equal(
      sm2lib.doVerifySignature(ANNEX_A.msg, sigHex, pubHex, { hash: true, der: false, userId: '' }),
      false,
    );
    const bad = Buffer.from(sigHex, 'hex');
    bad[63] ^= 1;
    assert.equal(sm2Verify(ANNEX_A.msg, bad, pub), false);
    assert.equal(sm2Verify('message digesT', Buffer.from(sigHex, 'hex'), pub), false);
  });

  test('signing with the Annex A nonce reproduces r ‖ s exactly', () => {
    const key = new Sm2PrivateKey(ANNEX_A.d);
    assert.equal(key.publicKeyHex, pubHex);
    const kG = sm2lib.getPublicKeyFromPrivateKey(ANNEX_A.k.toLowerCase());
    const pool = [{ k: BigInt(`0x${ANNEX_A.k}`), x1: BigInt(`0x${kG.slice(2, 66)}`) }];
    const sig = sm2Sign(ANNEX_A.msg, key, { _pointPool: pool });
    assert.equal(sig.length, 64);
    assert.equal(sig.toString('hex'), sigHex);
  });

  test('signatures are 64 bytes, randomized, and verify', () => {
    const key = new Sm2PrivateKey(ANNEX_A.d);
    const a = sm2Sign('x.y', key);
    const b = sm2Sign('x.y', key);
    assert.equal(a.length, 64);
    assert.notDeepEqual(a, b);
    assert.equal(sm2Verify('x.y', a, key), true);
    assert.equal(sm2Verify('x.y', b, key.publicKey()), true);
  });

  test('a short r is left-padded to 32 bytes', () => {
    const key = new Sm2PrivateKey(ANNEX_A.d);
    // About one nonce in 256 gives an r below 2^248; find one (deterministically).
    let sig = null;
    for (let k = 1n; k < 5000n && sig === null; k++) {
      const kHex = k.toString(16).padStart(64, '0');
      const x1 = BigInt(`0x${sm2lib.getPublicKeyFromPrivateKey(kHex).slice(2, 66)}`);
      const s = sm2Sign('x.y', key, { _pointPool: [{ k, x1 }] });
      if (s[0] === 0) sig = s;
    }
    assert.ok(sig, 'no nonce below 5000 gave a short r');
    assert.equal(sig.length, 64);
    assert.equal(sm2Verify('x.y', sig, key), true);
    assert.equal(sm2Verify('x.y', Buffer.concat([sig.subarray(1), Buffer.alloc(1)]), key), false);
  });

  test('SM3 (GB/T 32905 example 1) and HMAC-SM3: OpenSSL and the library agree', () => {
    assert.equal(
      createHash('sm3').update('abc').digest('hex'),
      '66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0',
    );
    for (const len of [16, 32, 64, 65, 100]) {
      const secret = randomBytes(len);
      const msg = randomBytes(77);
      const ours = hmacSm3(hmacKeyFromBytes(secret), msg).toString('hex');
      assert.equal(ours.length, 64);
      assert.equal(
        ours,
        sm3lib(new Uint8Array(msg), { key: new Uint8Array(secret), mode: 'hmac' }),
      );
    }
  });

  test('a PKCS#8 PEM with the SM2 curve parses; a mismatched embedded public key is refused', () => {
    const der = (embeddedHex) =>
      Buffer.from(
        '308187020100301306072a8648ce3d020106082a811ccf5501822d046d306b0201010420' +
          ANNEX_A.d +
          'a14403420004' +
          embeddedHex,
        'hex',
      );
    const pem = (buf) =>
      `-----BEGIN PRIVATE KEY-----\n${buf.toString('base64')}\n-----END PRIVATE KEY-----\n`;
    const key = sm2PrivateKeyFromPem(pem(der(`${ANNEX_A.x}${ANNEX_A.y}`)));
    assert.equal(key.publicKeyHex, pubHex);
    const wrongY = `${ANNEX_A.x}${ANNEX_A.y.slice(0, -1)}4`;
    assert.throws(() => sm2PrivateKeyFromPem(pem(der(wrongY))), /does not match/);
    // A P-256 key (prime256v1 OID) is refused.
    const p256 = Buffer.from(der(`${ANNEX_A.x}${ANNEX_A.y}`));
    p256.set(Buffer.from('2a8648ce3d030107', 'hex'), 19);
    assert.throws(() => sm2PrivateKeyFromPem(pem(p256)), /not an SM2 key/);
    assert.throws(
      () =>
        sm2PrivateKeyFromPem(
          '-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n',
        ),
      /no "PRIVATE KEY" block/,
    );
  });
});

// ---- key files from `coedit keygen` ---------------------------------------------------------

describe('key files', () => {
  test('sm2.pem gives the public key in sm2.pub.pem; hmac.key is the hex-decoded secret', () => {
    const key = loadKeyFile(join(fx.keys, 'sm2.pem'));
    assert.ok(key instanceof Sm2PrivateKey);
    assert.equal(key.publicKeyHex, loadSm2PublicKeyFile(join(fx.keys, 'sm2.pub.pem')).publicKeyHex);
    assert.notEqual(
      key.publicKeyHex,
      loadSm2PublicKeyFile(join(fx.other, 'sm2.pub.pem')).publicKeyHex,
    );
    const hmac = loadKeyFile(join(fx.keys, 'hmac.key'));
    assert.ok(hmac instanceof HmacKey);
    const text = readFileSync(join(fx.keys, 'hmac.key'), 'utf8');
    assert.deepEqual(hmacSm3(hmac, 'm'), hmacSm3(Buffer.from(text.trim(), 'hex'), 'm'));
    assert.notDeepEqual(hmacSm3(hmac, 'm'), hmacSm3(Buffer.from(text.trim(), 'utf8'), 'm'));
    // Logging a key never prints the secret.
    assert.doesNotMatch(
      `${JSON.stringify(hmac)} ${inspect(hmac)} ${inspect(key)}`,
      new RegExp(text.trim()),
    );
  });

  test('tokens from `coedit token issue` verify here (SM2) and match byte for byte (HMAC)', () => {
    const common = ['--sub', 'cli', '--tenant', 'acme', '--grant', 'notes-*=editor', '--ttl', '60'];
    const sm2Token = coedit([
      'token',
      'issue',
      '--sm2-key',
      join(fx.keys, 'sm2.pem'),
      ...common,
    ]).trim();
    const [h, c, s] = sm2Token.split('.');
    const pub = loadSm2PublicKeyFile(join(fx.keys, 'sm2.pub.pem'));
    assert.equal(sm2Verify(`${h}.${c}`, Buffer.from(s, 'base64url'), pub), true);
    const hmacToken = coedit([
      'token',
      'issue',
      '--hmac-key',
      join(fx.keys, 'hmac.key'),
      ...common,
    ]).trim();
    const [hh, hc, hs] = hmacToken.split('.');
    const ours = hmacSm3(loadHmacKeyFile(join(fx.keys, 'hmac.key')), `${hh}.${hc}`);
    assert.equal(ours.toString('base64url'), hs);
    // Same claims as ours: the CLI writes the same header and claim layout.
    const { header, claims } = decodeToken(hmacToken);
    assert.deepEqual(header, { alg: ALG_HMAC, typ: 'coedit' });
    const mine = decodeToken(
      issueToken({
        alg: ALG_HMAC,
        key: loadHmacKeyFile(join(fx.keys, 'hmac.key')),
        sub: 'cli',
        tenant: 'acme',
        ttlSeconds: 60,
        grants: { 'notes-*': 'editor' },
        now: claims.iat,
      }),
    );
    assert.equal(mine.signature.toString('base64url'), hs);
  });

  test('public keys, master keys, readable and short secrets are refused', () => {
    assert.throws(() => loadKeyFile(join(fx.keys, 'sm2.pub.pem')), /public key cannot sign/);
    assert.throws(() => loadKeyFile(join(fx.keys, 'master.key')), /not hex/);
    const loose = join(fx.dir, 'loose.pem');
    copyFileSync(join(fx.keys, 'sm2.pem'), loose);
    chmodSync(loose, 0o644);
    assert.throws(() => loadSm2PrivateKeyFile(loose), /chmod 600/);
    assert.ok(loadSm2PrivateKeyFile(loose, { checkMode: false }) instanceof Sm2PrivateKey);
    const short = join(fx.dir, 'short.key');
    writeFileSync(short, `${randomBytes(15).toString('hex')}\n`, { mode: 0o600 });
    assert.throws(() => loadHmacKeyFile(short), /at least 16 bytes/);
    assert.throws(() => hmacKeyFromText('zz'.repeat(16)), /not hex/);
  });
});

// ---- the token format and claim validation ---------------------------------------------------

describe('tokens', () => {
  const hmac = hmacKeyFromBytes(Buffer.alloc(32, 7));
  const base = {
    alg: ALG_HMAC,
    key: hmac,
    sub: 'alice',
    tenant: 'acme',
    ttlSeconds: 600,
    grants: { 'notes-*': 'editor' },
  };

  test('three base64url parts without padding; header and claims exactly as the server reads them', () => {
    const sm2Key = new Sm2PrivateKey(ANNEX_A.d);
    for (const [alg, key, sigLen] of [
      [ALG_HMAC, hmac, 32],
      [ALG_SM2, sm2Key, 64],
    ]) {
      const token = issueToken({ ...base, alg, key, now: 1_800_000_000 });
      assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
      const [h, c] = token.split('.');
      assert.equal(Buffer.from(h, 'base64url').toString(), `{"alg":"${alg}","typ":"coedit"}`);
      assert.equal(
        Buffer.from(c, 'base64url').toString(),
        '{"sub":"alice","tenant":"acme","iat":1800000000,"exp":1800000600,"grants":{"notes-*":"editor"}}',
      );
      assert.equal(decodeToken(token).signature.length, sigLen);
    }
  });

  test('optional claims: nbf, admin, name and colour only when given', () => {
    const c = decodeToken(
      issueToken({ ...base, now: 100, nbf: 90, admin: true, name: '张三 Zhang', color: '#3366ff' }),
    ).claims;
    assert.deepEqual(c, {
      sub: 'alice',
      tenant: 'acme',
      iat: 100,
      exp: 700,
      nbf: 90,
      grants: { 'notes-*': 'editor' },
      admin: true,
      name: '张三 Zhang',
      color: '#3366ff',
    });
    // 64 characters, not UTF-16 units or bytes.
    assert.equal(
      decodeToken(issueToken({ ...base, name: '李'.repeat(63) + '😀', color: '#ABCDEF' })).claims
        .name.length,
      65,
    );
    const plain = decodeToken(issueToken({ ...base, admin: false })).claims;
    assert.deepEqual(Object.keys(plain), ['sub', 'tenant', 'iat', 'exp', 'grants']);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(Math.abs(plain.iat - now) <= 2 && plain.exp - plain.iat === 600);
    // Map grants keep their order; '__proto__' is a valid document id.
    const m = new Map([
      ['b', 'viewer'],
      ['a*', 'owner'],
      ['__proto__', 'commenter'],
      ['*', 'viewer'],
    ]);
    const g = decodeToken(issueToken({ ...base, grants: m })).claims.grants;
    assert.deepEqual(Object.entries(g), [...m.entries()]);
  });

  test('what the server would refuse is refused here', () => {
    const bad = [
      [{ alg: 'HS256' }, /want SM2-SM3 or HMAC-SM3/],
      [{ alg: ALG_SM2 }, /needs an SM2 private key/],
      [{ key: 'secret' }, /needs an HMAC-SM3 key/],
      [{ sub: '' }, /sub/],
      [{ tenant: 'acme:x' }, /tenant/],
      [{ tenant: '..' }, /tenant/],
      [{ ttlSeconds: 0 }, /ttlSeconds/],
      [{ ttlSeconds: 1.5 }, /ttlSeconds/],
      [{ ttlSeconds: 366 * 86400 + 1 }, /ttlSeconds/],
      [{ grants: { notes: 'writer' } }, /role "writer"/],
      [{ grants: { 'a b': 'viewer' } }, /grant pattern/],
      [{ grants: ['notes'] }, /grants/],
      [
        {
          grants: Object.fromEntries(
            Array.from({ length: MAX_GRANTS + 1 }, (_, i) => [`d${i}`, 'viewer']),
          ),
        },
        /more than 256/,
      ],
      [{ nbf: 10_000, now: 100 }, /nbf/],
      [{ admin: 'yes' }, /admin/],
      [{ name: 42 }, /name/],
      [{ name: '' }, /name/],
      [{ name: 'x'.repeat(65) }, /at most 64 characters/],
      [{ name: 'a\tb' }, /control characters/],
      [{ color: '' }, /color/],
      [{ color: 'red' }, /#rrggbb/],
      [{ color: '#abc' }, /#rrggbb/],
      [{ ttl: 60 }, /unknown option "ttl"/],
      [{ sub: 'x'.repeat(9000) }, /at most 8192/],
    ];
    for (const [change, why] of bad) {
      assert.throws(
        () => issueToken({ ...base, ...change }),
        why,
        JSON.stringify(change).slice(0, 80),
      );
    }
  });
});

// ---- against the real server -------------------------------------------------------------------

for (const mode of ['sm2', 'hmac']) {
  describe(`${mode}: a real coedit server`, () => {
    const alg = mode === 'sm2' ? ALG_SM2 : ALG_HMAC;
    const file = mode === 'sm2' ? 'sm2.pem' : 'hmac.key';
    const doc = `notes-node-${mode}`;
    let server;
    let key;
    let token;
    before(() => {
      server = fx[mode];
      key = loadKeyFile(join(fx.keys, file));
      token = (role, extra = {}) =>
        issueToken({
          alg,
          key,
          sub: `node-${role}`,
          tenant: 'acme',
          ttlSeconds: 300,
          grants: { 'notes-*': role },
          ...extra,
        });
    });

    test('authentication is on: no token is refused (401, 5001)', async () => {
      assertRefused(await api(server, 'GET', `/api/docs/${doc}`), 401, 5001, 'no token');
    });

    test('an editor token writes (REST op submit) and reads', async () => {
      const editor = token('editor');
      const w = await api(server, 'POST', `/api/docs/${doc}/ops`, editor, {
        base_rev: 0,
        op: ['hello from node'],
      });
      assert.equal(w.status, 200, w.text);
      assert.equal(w.json.rev, 1);
      assert.equal(w.json.duplicate, false);
      const r = await api(server, 'GET', `/api/docs/${doc}`, editor);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { id: doc, kind: 'text', rev: 1, text: 'hello from node' });
      // Tenant-qualified references resolve in the token's tenant only.
      assert.equal(
        (await api(server, 'GET', `/api/docs/acme:${doc}`, editor)).json?.text,
        'hello from node',
      );
      assertRefused(
        await api(server, 'GET', `/api/docs/globex:${doc}`, editor),
        403,
        5004,
        'other tenant',
      );
    });

    test('a viewer token reads, and a write is refused (403, 5006) and changes nothing', async () => {
      const viewer = token('viewer');
      const r = await api(server, 'GET', `/api/docs/${doc}`, viewer);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.text, 'hello from node');
      const w = await api(server, 'POST', `/api/docs/${doc}/ops`, viewer, {
        base_rev: 1,
        op: [15, '!'],
      });
      assertRefused(w, 403, 5006, 'viewer write');
      assert.equal((await api(server, 'GET', `/api/docs/${doc}`, viewer)).json.rev, 1);
    });

    test('a flipped signature byte is refused (401, 5002)', async () => {
      const good = token('editor');
      assert.equal((await api(server, 'GET', `/api/docs/${doc}`, good)).status, 200);
      const sigLen = decodeToken(good).signature.length;
      for (const i of [0, sigLen - 1]) {
        assertRefused(
          await api(server, 'GET', `/api/docs/${doc}`, flipSignatureByte(good, i)),
          401,
          5002,
          `byte ${i}`,
        );
      }
      const w = await api(server, 'POST', `/api/docs/${doc}/ops`, flipSignatureByte(good, 5), {
        base_rev: 1,
        op: [15, '?'],
      });
      assertRefused(w, 401, 5002, 'forged write');
    });

    test('an expired token is refused (401, 5003); within the clock skew it is not', async () => {
      const now = Math.floor(Date.now() / 1000);
      const expired = token('editor', { now: now - 3600, ttlSeconds: 3600 - SKEW - 60 });
      assert.ok(decodeToken(expired).claims.exp < now - SKEW);
      assertRefused(await api(server, 'GET', `/api/docs/${doc}`, expired), 401, 5003, 'expired');
      const justExpired = token('editor', { now: now - 600, ttlSeconds: 595 });
      assert.equal((await api(server, 'GET', `/api/docs/${doc}`, justExpired)).status, 200);
    });

    test('a token signed with another key is refused (401, 5002)', async () => {
      const other = loadKeyFile(join(fx.other, file));
      const forged = issueToken({
        alg,
        key: other,
        sub: 'mallory',
        tenant: 'acme',
        ttlSeconds: 300,
        grants: { '*': 'owner' },
      });
      assertRefused(await api(server, 'GET', `/api/docs/${doc}`, forged), 401, 5002, 'other key');
    });

    test('a token of the other algorithm is refused (401, 5002)', async () => {
      const otherAlg = mode === 'sm2' ? ALG_HMAC : ALG_SM2;
      const otherKey = loadKeyFile(join(fx.keys, mode === 'sm2' ? 'hmac.key' : 'sm2.pem'));
      const t = issueToken({
        alg: otherAlg,
        key: otherKey,
        sub: 'x',
        tenant: 'acme',
        ttlSeconds: 300,
        grants: { '*': 'owner' },
      });
      assertRefused(await api(server, 'GET', `/api/docs/${doc}`, t), 401, 5002, 'other algorithm');
    });

    test('name and color claims: accepted, or refused only as unknown claims by an older server', async (t) => {
      const withName = token('viewer', { name: 'Ada 李', color: '#aa3366' });
      const r = await api(server, 'GET', `/api/docs/${doc}`, withName);
      if (
        r.status === 401 &&
        r.json?.error?.code === 5002 &&
        /unknown field `name`/.test(r.json.error.msg)
      ) {
        t.skip('this server does not know the name/color claims yet');
        return;
      }
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.text, 'hello from node');
      // The longest name the issuer allows (64 characters, one outside the BMP) is accepted too.
      const longest = token('viewer', { name: `${'李'.repeat(63)}😀`, color: '#ABCDEF' });
      assert.equal((await api(server, 'GET', `/api/docs/${doc}`, longest)).status, 200);
    });
  });
}
