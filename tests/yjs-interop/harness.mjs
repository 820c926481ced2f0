// tests/yjs-interop/harness.mjs: what the Yjs interoperability tests share. Owns the coedit
// servers they start (127.0.0.1, port chosen by the server, a data dir of the caller's; killed
// at exit or on a signal, whatever happened), the tokens (the repository's Node issuer, from
// key files `coedit keygen` writes), the two real npm clients wrapped with a log of what they
// received (y-websocket's WebsocketProvider, @hocuspocus/provider's HocuspocusProvider, both on
// the `ws` package), bounded waits, and the JSON view of a Y.Doc the server's REST API answers.
//
// Nothing here imitates a client: the wrappers build the npm providers as an application
// would and only listen to what they do (events, and the raw frames the socket received, for
// diagnostics). Every wait is bounded; a timeout names what it waited for and what was seen.

import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

import * as Y from 'yjs';
import { WebSocket } from 'ws';
import { WebsocketProvider, messageAuth } from 'y-websocket';
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider';
import * as authProtocol from 'y-protocols/auth';
import * as decoding from 'lib0/decoding';

import { ALG_HMAC, ALG_SM2, issueToken, loadKeyFile } from '../../protocol/issuers/node/index.js';

export { Y };

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../..');
/** The server binary: $COEDIT_BIN, default target/release/coedit at the repository root. */
export const BIN = resolve(repoRoot, process.env.COEDIT_BIN ?? 'target/release/coedit');
/** Bound on every wait for something that should happen (sync, convergence, start). */
export const WAIT_MS = 15_000;
/** How long something that must not happen is given to happen anyway (a refused edit). */
export const QUIET_MS = 1_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- servers -------------------------------------------------------------------------------

/** Every server child alive, killed at exit whatever happened. */
const running = new Set();
const killAll = () => {
  for (const child of running) child.kill('SIGKILL');
};
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(1);
  });
}

/** Runs the coedit CLI (keygen) and answers its stdout. */
export function coedit(args) {
  return execFileSync(BIN, args, {
    encoding: 'utf8',
    timeout: WAIT_MS,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Writes `dir/NAME.toml` for a server: small thread pools, and `[auth]` lines if given. */
export function writeConfig(dir, name, authLines = null) {
  const path = join(dir, `${name}.toml`);
  const lines = ['[server]', 'workers = 2', 'doc_threads = 2', '[crypto]', 'threads = 1'];
  if (authLines) lines.push('[auth]', ...authLines, 'clock_skew_s = 30');
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

/**
 * Starts `coedit serve` on 127.0.0.1:0 with `dataDir` and `config`; resolves once it answers
 * /readyz with `{ name, url, ws, child, logPath, dataDir, config }`. Each start of the same
 * server (a restart) gets its own log files, numbered.
 */
export async function startServer({ dir, name, dataDir, config }) {
  startServer.count = (startServer.count ?? 0) + 1;
  const tag = `${name}.${startServer.count}`;
  const outPath = join(dir, `${tag}.out`);
  const logPath = join(dir, `${tag}.log`);
  const out = openSync(outPath, 'w');
  const log = openSync(logPath, 'w');
  const child = spawn(
    BIN,
    ['serve', '--bind', '127.0.0.1:0', '--data-dir', dataDir, '--config', config],
    { stdio: ['ignore', out, log], env: { ...process.env, COEDIT_LOG: process.env.COEDIT_LOG ?? 'info' } },
  );
  closeSync(out);
  closeSync(log);
  running.add(child);
  if (process.env.COEDIT_YJS_PIDFILE) appendFileSync(process.env.COEDIT_YJS_PIDFILE, `${child.pid}\n`);
  const exited = new Promise((r) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      r({ code, signal });
    }),
  );
  const server = { name, child, exited, logPath, dataDir, config, dir, url: null, ws: null };
  let status = null;
  exited.then((s) => (status = s));
  const deadline = Date.now() + WAIT_MS;
  while (server.url === null) {
    if (status) throw new Error(`coedit (${tag}) exited ${JSON.stringify(status)}:\n${logTail(server)}`);
    if (Date.now() > deadline) throw new Error(`coedit (${tag}) printed no address:\n${logTail(server)}`);
    const m = /coedit listening on (\S+)/.exec(readFileSync(outPath, 'utf8'));
    if (m) {
      server.url = `http://${m[1]}`;
      server.ws = `ws://${m[1]}`;
    } else await sleep(25);
  }
  for (;;) {
    try {
      const r = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) return server;
    } catch {
      // not yet
    }
    if (status) throw new Error(`coedit (${tag}) exited ${JSON.stringify(status)}:\n${logTail(server)}`);
    if (Date.now() > deadline) throw new Error(`coedit (${tag}) never became ready:\n${logTail(server)}`);
    await sleep(25);
  }
}

/** The server's last log lines (for failure messages). */
export function logTail(server, n = 20) {
  try {
    return readFileSync(server.logPath, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

/** SIGTERM (the server saves and exits), SIGKILL if it has not exited within 10 s. */
export async function stopServer(server) {
  if (!server) return;
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await server.exited;
  clearTimeout(timer);
}

/** SIGKILL, and wait for the exit. */
export async function killServer(server) {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill('SIGKILL');
  await server.exited;
}

// ---- nats-server (cluster mode) ------------------------------------------------------------

/** The nats-server binary: $COEDIT_NATS_SERVER, else `nats-server` on the PATH, else null. */
export function natsBinary() {
  if (process.env.COEDIT_NATS_SERVER) return process.env.COEDIT_NATS_SERVER;
  try {
    return execFileSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** A free TCP port on 127.0.0.1 (the OS's choice, released for the caller). */
async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * Starts `nats-server -js` on 127.0.0.1 (a free port) with its store in `dir`; resolves once it
 * accepts connections with `{ url, child, exited }`. Killed at exit like the coedit servers.
 */
export async function startNats(bin, dir) {
  const port = await freePort();
  const log = openSync(join(dir, `nats-${port}.log`), 'w');
  const child = spawn(bin, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', join(dir, `js-${port}`)], {
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  running.add(child);
  if (process.env.COEDIT_YJS_PIDFILE) appendFileSync(process.env.COEDIT_YJS_PIDFILE, `${child.pid}\n`);
  const exited = new Promise((r) => child.once('exit', (code, signal) => (running.delete(child), r({ code, signal }))));
  await until(
    () =>
      new Promise((r) => {
        const s = connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
        s.on('error', () => r(false));
      }),
    `nats-server on port ${port} to accept connections`,
  );
  return { url: `nats://127.0.0.1:${port}`, child, exited };
}

/** The same server (data dir, config) started again, on a new port. */
export const restartServer = (server) => startServer(server);

// ---- tokens --------------------------------------------------------------------------------

/** A token maker for a server in `mode` ('hmac' or 'sm2') with the keys in `keysDir`. */
export function tokenMaker(mode, keysDir) {
  const alg = mode === 'sm2' ? ALG_SM2 : ALG_HMAC;
  const key = loadKeyFile(join(keysDir, mode === 'sm2' ? 'sm2.pem' : 'hmac.key'));
  /** A token of `role` on every document (`*`) of `tenant`. */
  return (role, { tenant = 'acme', sub = `yjs-${role}`, grants = { '*': role }, ...extra } = {}) =>
    issueToken({ alg, key, sub, tenant, ttlSeconds: 600, grants, ...extra });
}

/** `[auth]` lines for a server in `mode` with the keys in `keysDir`. */
export function authLines(mode, keysDir) {
  return mode === 'sm2'
    ? ['mode = "sm2"', `public_key_file = "${join(keysDir, 'sm2.pub.pem')}"`]
    : ['mode = "hmac-sm3"', `hmac_key_file = "${join(keysDir, 'hmac.key')}"`];
}

// ---- REST ----------------------------------------------------------------------------------

/**
 * One REST call; answers `{ status, type, json, text, bytes, headers }`. `body`: object (JSON)
 * or bytes.
 */
export async function api(server, method, path, { token, body } = {}) {
  const headers = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  let payload;
  if (body instanceof Uint8Array) {
    headers['content-type'] = 'application/octet-stream';
    payload = body;
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: payload,
    signal: AbortSignal.timeout(10_000),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const text = Buffer.from(bytes).toString('utf8');
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: the assertions show the text
  }
  return { status: res.status, type: res.headers.get('content-type') ?? '', json, text, bytes, headers: res.headers };
}

// ---- the JSON view of a document -------------------------------------------------------------

/** The roots the tests write, and their shared types. */
export const ROOTS = Object.freeze({ text: 'text', map: 'map', prosemirror: 'xml', list: 'array' });

/**
 * The content of `doc` as the server's REST API renders it: a Y.Text as its string, a Y.Map as
 * an object, a Y.Array as an array, a Y.XmlFragment as its XML string. Only the roots named in
 * `roots` (default: those the tests write).
 */
export function contentOf(doc, roots = ROOTS) {
  const out = {};
  for (const [name, kind] of Object.entries(roots)) {
    if (kind === 'text') out[name] = doc.getText(name).toString();
    else if (kind === 'map') out[name] = doc.getMap(name).toJSON();
    else if (kind === 'array') out[name] = doc.getArray(name).toJSON();
    else if (kind === 'xml') out[name] = doc.getXmlFragment(name).toString();
    else throw new Error(`unknown root kind ${kind}`);
  }
  return out;
}

/** The document's state vector, hex (equal state vectors: the same updates integrated). */
export const svHex = (doc) => Buffer.from(Y.encodeStateVector(doc)).toString('hex');

/** `docs` hold the same updates and the same content (the roots in `roots`). */
export function sameDocs(docs, roots = ROOTS) {
  const sv = svHex(docs[0]);
  const content = contentOf(docs[0], roots);
  return docs.every((d) => svHex(d) === sv && isDeepStrictEqual(contentOf(d, roots), content));
}

/** A short description of each doc's state (for timeout messages). */
export const describeDocs = (docs, roots = ROOTS) =>
  docs
    .map((d, i) => `  doc ${i}: sv ${svHex(d)} ${JSON.stringify(contentOf(d, roots)).slice(0, 400)}`)
    .join('\n');

// ---- waits ---------------------------------------------------------------------------------

/** Polls `fn` until it answers truthy (answered); throws after `ms` naming `what` and `detail()`. */
export async function until(fn, what, { ms = WAIT_MS, detail = () => '' } = {}) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) {
      let d = '';
      try {
        d = detail();
      } catch (e) {
        d = `(detail failed: ${e})`;
      }
      throw new Error(`timed out after ${ms} ms waiting for ${what}${d ? `\n${d}` : ''}`);
    }
    await sleep(10);
  }
}

/** Waits until every doc holds the same updates and content; answers the milliseconds taken. */
export async function converge(docs, what = 'convergence', roots = ROOTS) {
  const t0 = performance.now();
  await until(() => sameDocs(docs, roots), what, { detail: () => describeDocs(docs, roots) });
  return Math.round(performance.now() - t0);
}

// ---- the clients ---------------------------------------------------------------------------

// y-websocket's permission-denied handler only prints `console.warn("Permission denied to access
// URL.\nreason")`, with the token in the URL (?token=…), once per refused frame. The wrapper
// below records each reason (`log.denied`, shown when a test fails); the line is dropped.
const warn = console.warn.bind(console);
console.warn = (...args) => {
  if (typeof args[0] === 'string' && args[0].startsWith('Permission denied to access')) return;
  warn(...args);
};

/** Names of y-websocket / Hocuspocus message types, for frame logs. */
const TYPE_NAMES = {
  0: 'sync',
  1: 'awareness',
  2: 'auth',
  3: 'queryAwareness',
  5: 'stateless',
  7: 'close',
  8: 'syncStatus',
  9: 'ping',
  10: 'pong',
};
const SYNC_NAMES = { 0: 'step1', 1: 'step2', 2: 'update' };

/** A short name of one y-websocket frame (type and sync sub-type), or of a Hocuspocus frame
 * after its document name. */
function frameName(bytes, hocuspocus) {
  try {
    const d = decoding.createDecoder(bytes);
    let prefix = '';
    if (hocuspocus) prefix = `${decoding.readVarString(d)}/`;
    const type = decoding.readVarUint(d);
    let name = `${prefix}${TYPE_NAMES[type] ?? `type${type}`}`;
    if (type === 0) name += `.${SYNC_NAMES[decoding.readVarUint(d)] ?? '?'}`;
    if (type === 8) name += `(${decoding.readVarInt(d)})`;
    if (type === 2) {
      const sub = decoding.readVarUint(d);
      name += hocuspocus
        ? `.${['token', 'permissionDenied', 'authenticated'][sub] ?? sub}:${decoding.hasContent(d) ? decoding.readVarString(d) : ''}`
        : `.${sub === 0 ? 'permissionDenied' : sub}:${decoding.readVarString(d)}`;
    }
    return name;
  } catch (e) {
    return `undecodable(${bytes.length} bytes: ${e.message})`;
  }
}

/** Counts of frame names, e.g. {"sync.step2": 1, "awareness": 3}. */
const tally = (names) => names.reduce((acc, n) => ((acc[n] = (acc[n] ?? 0) + 1), acc), {});

/**
 * A y-websocket client: `new WebsocketProvider('ws://ADDR/yjs', name, doc, {...})` on `ws`,
 * BroadcastChannel off (Node has one: two providers of one room in this process would
 * otherwise sync through it and not through the server). `log`: permission-denied reasons
 * (from the provider's own auth-message handler's input), close events, errors, and the names
 * of received frames.
 */
export function yws(server, name, { token, doc = new Y.Doc(), connect = true } = {}) {
  const log = { denied: [], closes: [], errors: [], frames: [], statuses: [] };
  const provider = new WebsocketProvider(`${server.ws}/yjs`, name, doc, {
    WebSocketPolyfill: WebSocket,
    params: token === undefined ? {} : { token },
    disableBc: true,
    connect: false,
    maxBackoffTime: 1000,
  });
  // Read each Auth message once more to record it, then let the provider's handler run.
  const own = provider.messageHandlers[messageAuth];
  provider.messageHandlers[messageAuth] = (encoder, decoder, p, emitSynced, type) => {
    authProtocol.readAuthMessage(decoding.clone(decoder), doc, (_y, reason) => log.denied.push(reason));
    own(encoder, decoder, p, emitSynced, type);
  };
  const hooked = new WeakSet();
  provider.on('status', ({ status }) => {
    log.statuses.push(status);
    const ws = provider.ws;
    if (ws && !hooked.has(ws)) {
      hooked.add(ws);
      ws.addEventListener('message', (e) => log.frames.push(frameName(new Uint8Array(e.data), false)));
    }
  });
  provider.on('connection-close', (event) =>
    log.closes.push(event ? { code: event.code, reason: event.reason } : 'local'),
  );
  provider.on('connection-error', (event) => log.errors.push(event?.message ?? String(event)));
  if (connect) provider.connect();
  return {
    kind: 'y-websocket',
    provider,
    doc,
    log,
    synced: () => provider.synced,
    describe: () =>
      `y-websocket ${name}: synced=${provider.synced} wsconnected=${provider.wsconnected} ` +
      `closes=${JSON.stringify(log.closes)} errors=${JSON.stringify(log.errors)} ` +
      `denied=${JSON.stringify(log.denied)} frames=${JSON.stringify(tally(log.frames))}`,
    disconnect: () => provider.disconnect(),
    connect: () => provider.connect(),
    destroy: () => provider.destroy(),
  };
}

/**
 * A Hocuspocus client: `new HocuspocusProvider({ url: 'ws://ADDR/hocuspocus', name, document,
 * token, WebSocketPolyfill })`, with its own socket, or attached to `socket` (a shared
 * HocuspocusProviderWebsocket: several documents on one connection). `log`: the scopes it was
 * authenticated with, authentication failures, SyncStatus answers, and received frame names.
 */
export function hocus(server, name, { token = null, doc = new Y.Doc(), socket = null } = {}) {
  const log = { scopes: [], failed: [], syncStatus: [], frames: [], closes: [] };
  const config = {
    name,
    document: doc,
    token,
    onAuthenticated: ({ scope }) => log.scopes.push(scope),
    onAuthenticationFailed: ({ reason }) => log.failed.push(reason),
  };
  if (socket) config.websocketProvider = socket;
  else Object.assign(config, hocusSocketConfig(server));
  const provider = new HocuspocusProvider(config);
  // Frames routed to this document (the socket answers pings itself).
  provider.on('message', ({ event }) => {
    const bytes = new Uint8Array(event.data);
    const n = frameName(bytes, true);
    log.frames.push(n);
    const m = /\/syncStatus\((-?\d+)\)$/.exec(n);
    if (m) log.syncStatus.push(Number(m[1]) === 1);
  });
  provider.on('close', ({ event }) => log.closes.push({ code: event?.code, reason: event?.reason }));
  if (socket) provider.attach();
  return {
    kind: 'hocuspocus',
    provider,
    doc,
    log,
    synced: () => provider.synced && provider.isAuthenticated,
    describe: () =>
      `hocuspocus ${name}: synced=${provider.synced} authenticated=${provider.isAuthenticated} ` +
      `scope=${provider.authorizedScope} unsyncedChanges=${provider.unsyncedChanges} ` +
      `failed=${JSON.stringify(log.failed)} closes=${JSON.stringify(log.closes)} ` +
      `syncStatus=${JSON.stringify(tally(log.syncStatus.map(String)))} frames=${JSON.stringify(tally(log.frames))}`,
    disconnect: () => provider.disconnect(),
    connect: () => provider.connect(),
    destroy: () => provider.destroy(),
  };
}

/** Socket options for Hocuspocus: `ws` as the WebSocket, and quick reconnects (tests wait). */
function hocusSocketConfig(server) {
  return {
    url: `${server.ws}/hocuspocus`,
    WebSocketPolyfill: WebSocket,
    delay: 100,
    minDelay: 100,
    maxDelay: 1000,
  };
}

/** One Hocuspocus connection that several HocuspocusProviders share (`hocus(..., { socket })`). */
export const hocusSocket = (server) => new HocuspocusProviderWebsocket(hocusSocketConfig(server));

/** Waits until every client is synced (Hocuspocus: and authenticated). */
export async function allSynced(clients, what = 'initial sync') {
  const t0 = performance.now();
  await until(() => clients.every((c) => c.synced()), what, {
    detail: () => clients.map((c) => `  ${c.describe()}`).join('\n'),
  });
  return Math.round(performance.now() - t0);
}

/** A fresh document name for a test. */
export const docName = (what) => `yjs-${what}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;

/** mulberry32: a small seeded PRNG, so that a failing run's edits replay with its SEED. */
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
}
