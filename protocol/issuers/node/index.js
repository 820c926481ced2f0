// @coedit/token-issuer: issues coedit access tokens for application backends, signed with SM2
// (alg "SM2-SM3") or HMAC-SM3 (alg "HMAC-SM3"), and loads the key files `coedit keygen` writes
// (sm2.pem: PKCS#8 SM2 private key; sm2.pub.pem: SubjectPublicKeyInfo; hmac.key: hex secret).
// Owns: the token encoding `base64url(header).base64url(claims).base64url(sig)` (no padding),
// claim validation mirroring the server's rules (actors/src/auth.rs, src/security.rs) and key
// parsing. The SM2 arithmetic is sm-crypto-v2's (on @noble/curves); HMAC-SM3 is OpenSSL's
// through node:crypto. Node's own crypto cannot sign SM2 here: it cannot set the SM2
// distinguishing ID and OpenSSL 3 then signs with an empty ID, which coedit refuses.

import { createHmac, getHashes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { inspect } from 'node:util';
import { sm2, sm3 } from 'sm-crypto-v2';

/** Header `alg` of SM2 tokens. */
export const ALG_SM2 = 'SM2-SM3';
/** Header `alg` of HMAC-SM3 tokens. */
export const ALG_HMAC = 'HMAC-SM3';
/** Header `typ` of every coedit token. */
export const TOKEN_TYPE = 'coedit';
/** SM2 distinguishing ID (GM/T 0009 default) that coedit verifies with. */
export const SM2_DIST_ID = '1234567812345678';
/** Longest token the server accepts, in bytes. */
export const MAX_TOKEN_BYTES = 8 * 1024;
/** Most grants in one token. */
export const MAX_GRANTS = 256;
/** Longest lifetime issued (as `coedit token issue`: a year and a day). */
export const MAX_TTL_SECONDS = 366 * 86400;
/** Shortest HMAC-SM3 secret the server accepts, in bytes. */
export const MIN_HMAC_KEY_BYTES = 16;
/** Roles, weakest first. */
export const ROLES = Object.freeze(['viewer', 'commenter', 'editor', 'owner']);

// SM2 recommended curve order n (GB/T 32918.5).
const SM2_N = BigInt('0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123');
// DER OIDs: id-ecPublicKey (1.2.840.10045.2.1) and the SM2 curve (1.2.156.10197.1.301).
const OID_EC_PUBLIC_KEY = '2a8648ce3d0201';
const OID_SM2 = '2a811ccf5501822d';
const DOC_ID = /^[A-Za-z0-9._~-]{1,128}$/;
const OPTIONS = new Set([
  'alg',
  'key',
  'sub',
  'tenant',
  'ttlSeconds',
  'grants',
  'admin',
  'nbf',
  'name',
  'color',
  'now',
]);
const HAVE_OPENSSL_SM3 = getHashes().includes('sm3');

/** Secret material, kept out of the key objects so that logging one never prints it. */
const secrets = new WeakMap();

/** An SM2 private key (signs `SM2-SM3` tokens). */
export class Sm2PrivateKey {
  /** @param {string} dHex the private scalar, 64 hex digits */
  constructor(dHex) {
    if (typeof dHex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(dHex)) {
      throw new Error('SM2 private key: want 64 hex digits');
    }
    const d = BigInt(`0x${dHex}`);
    if (d < 1n || d > SM2_N - 2n)
      throw new Error('SM2 private key: the private scalar is out of range');
    secrets.set(this, dHex.toLowerCase());
    /** Uncompressed public key `04 ‖ x ‖ y` in hex (130 digits). */
    this.publicKeyHex = sm2.getPublicKeyFromPrivateKey(dHex.toLowerCase()).toLowerCase();
    Object.freeze(this);
  }
  get kind() {
    return 'sm2';
  }
  /** The matching public key. */
  publicKey() {
    return new Sm2PublicKey(this.publicKeyHex);
  }
  toJSON() {
    return { kind: 'sm2', publicKeyHex: this.publicKeyHex };
  }
  [inspect.custom]() {
    return `Sm2PrivateKey(public ${this.publicKeyHex.slice(0, 18)}…)`;
  }
}

/** An SM2 public key (verifies; the server holds it as sm2.pub.pem). */
export class Sm2PublicKey {
  /** @param {string} publicKeyHex `04 ‖ x ‖ y`, hex */
  constructor(publicKeyHex) {
    const hex = typeof publicKeyHex === 'string' ? publicKeyHex.toLowerCase() : '';
    let onCurve = false;
    try {
      onCurve = /^04[0-9a-f]{128}$/.test(hex) && sm2.verifyPublicKey(hex);
    } catch {
      // noble refuses the point: not on the curve
    }
    if (!onCurve) throw new Error('SM2 public key: not a point on the SM2 curve');
    this.publicKeyHex = hex;
    Object.freeze(this);
  }
  get kind() {
    return 'sm2-public';
  }
}

/** An HMAC-SM3 secret (signs `HMAC-SM3` tokens). */
export class HmacKey {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('HMAC-SM3 secret: want bytes');
    if (bytes.length < MIN_HMAC_KEY_BYTES) {
      throw new Error(`HMAC-SM3 secret: must be at least ${MIN_HMAC_KEY_BYTES} bytes`);
    }
    secrets.set(this, Buffer.from(bytes));
    Object.freeze(this);
  }
  get kind() {
    return 'hmac';
  }
  toJSON() {
    return { kind: 'hmac' };
  }
  [inspect.custom]() {
    return 'HmacKey(…)';
  }
}

// ---- DER / PEM ---------------------------------------------------------------------------

/** One DER element at `pos`: tag, content bounds, and where the next element starts. */
function derAt(buf, pos, end = buf.length) {
  if (pos + 2 > end) throw new Error('truncated DER');
  const tag = buf[pos];
  let len = buf[pos + 1];
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 2 || start + n > end) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i];
    start += n;
  }
  if (start + len > end) throw new Error('truncated DER');
  return { tag, start, end: start + len, next: start + len };
}

/** The children of a constructed element. */
function derChildren(buf, el) {
  const out = [];
  for (let p = el.start; p < el.end;) {
    const c = derAt(buf, p, el.end);
    out.push(c);
    p = c.next;
  }
  return out;
}

const hexOf = (buf, el) => buf.subarray(el.start, el.end).toString('hex');

/** The DER inside the one PEM block labelled `label`. */
function pemBody(pem, label) {
  if (typeof pem !== 'string' && !(pem instanceof Uint8Array)) {
    throw new TypeError('PEM: want a string');
  }
  const text = typeof pem === 'string' ? pem : Buffer.from(pem).toString('utf8');
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  const blocks = [...text.matchAll(re)];
  const found = blocks.find((m) => m[1] === label);
  if (!found) {
    const labels = blocks.map((m) => m[1]).join(', ') || 'none';
    throw new Error(`PEM: no "${label}" block (found: ${labels})`);
  }
  const b64 = found[2].replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error('PEM: bad base64');
  return Buffer.from(b64, 'base64');
}

/** Checks an AlgorithmIdentifier names an SM2 key. */
function checkSm2Algorithm(buf, algEl) {
  const [oid, params] = derChildren(buf, algEl);
  if (!oid || oid.tag !== 0x06) throw new Error('no algorithm OID');
  const alg = hexOf(buf, oid);
  if (alg === OID_SM2) return;
  if (
    alg !== OID_EC_PUBLIC_KEY ||
    !params ||
    params.tag !== 0x06 ||
    hexOf(buf, params) !== OID_SM2
  ) {
    throw new Error('not an SM2 key (want id-ecPublicKey with the SM2 curve, 1.2.156.10197.1.301)');
  }
}

/** The `04 ‖ x ‖ y` hex of a BIT STRING holding an uncompressed point. */
function pointOfBitString(buf, el) {
  if (el.tag !== 0x03 || el.end - el.start !== 66 || buf[el.start] !== 0) {
    throw new Error('public key is not an uncompressed point');
  }
  return buf.subarray(el.start + 1, el.end).toString('hex');
}

/**
 * The SM2 private key in a PKCS#8 PEM ("PRIVATE KEY", as `coedit keygen` writes sm2.pem).
 * Checks the curve, the scalar's range, and that an embedded public key matches it.
 */
export function sm2PrivateKeyFromPem(pem) {
  try {
    const der = pemBody(pem, 'PRIVATE KEY');
    const top = derAt(der, 0);
    if (top.tag !== 0x30 || top.next !== der.length) throw new Error('not a DER SEQUENCE');
    const [version, algorithm, privateKey] = derChildren(der, top);
    if (!version || version.tag !== 0x02 || !['00', '01'].includes(hexOf(der, version))) {
      throw new Error('not PKCS#8 (version)');
    }
    if (!algorithm || algorithm.tag !== 0x30) throw new Error('not PKCS#8 (algorithm)');
    checkSm2Algorithm(der, algorithm);
    if (!privateKey || privateKey.tag !== 0x04) throw new Error('not PKCS#8 (private key)');
    // RFC 5915 ECPrivateKey inside the OCTET STRING.
    const ec = derAt(der, privateKey.start, privateKey.end);
    if (ec.tag !== 0x30) throw new Error('ECPrivateKey is not a SEQUENCE');
    const fields = derChildren(der, ec);
    if (fields[0]?.tag !== 0x02 || hexOf(der, fields[0]) !== '01') {
      throw new Error('ECPrivateKey version is not 1');
    }
    if (fields[1]?.tag !== 0x04 || fields[1].end - fields[1].start !== 32) {
      throw new Error('the private scalar is not 32 bytes');
    }
    const key = new Sm2PrivateKey(hexOf(der, fields[1]));
    let embedded = null;
    for (const f of fields.slice(2)) {
      if (f.tag === 0xa0) {
        const oid = derAt(der, f.start, f.end);
        if (oid.tag !== 0x06 || hexOf(der, oid) !== OID_SM2) throw new Error('curve is not SM2');
      } else if (f.tag === 0xa1) {
        embedded = pointOfBitString(der, derAt(der, f.start, f.end));
      }
    }
    if (embedded !== null && embedded !== key.publicKeyHex) {
      throw new Error('the embedded public key does not match the private key');
    }
    return key;
  } catch (e) {
    const msg = e.message.startsWith('SM2 private key:')
      ? e.message
      : `SM2 private key: ${e.message}`;
    throw new Error(msg, { cause: e });
  }
}

/** The SM2 public key in a SubjectPublicKeyInfo PEM ("PUBLIC KEY", as sm2.pub.pem). */
export function sm2PublicKeyFromPem(pem) {
  try {
    const der = pemBody(pem, 'PUBLIC KEY');
    const top = derAt(der, 0);
    if (top.tag !== 0x30 || top.next !== der.length) throw new Error('not a DER SEQUENCE');
    const [algorithm, bits] = derChildren(der, top);
    if (!algorithm || algorithm.tag !== 0x30 || !bits) throw new Error('not SubjectPublicKeyInfo');
    checkSm2Algorithm(der, algorithm);
    return new Sm2PublicKey(pointOfBitString(der, bits));
  } catch (e) {
    throw new Error(`SM2 public key: ${e.message}`, { cause: e });
  }
}

/** The HMAC-SM3 secret in the text of hmac.key: hex digits (surrounding whitespace ignored). */
export function hmacKeyFromText(text) {
  const t = (typeof text === 'string' ? text : Buffer.from(text).toString('utf8')).trim();
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(t)) {
    throw new Error('HMAC-SM3 key: not hex (hmac.key holds one line of hex digits)');
  }
  return new HmacKey(Buffer.from(t, 'hex'));
}

/** An HMAC-SM3 secret from raw bytes. */
export function hmacKeyFromBytes(bytes) {
  return new HmacKey(bytes);
}

/** Refuses a secret file that group or others can read (as the server does). */
function readSecretFile(path, checkMode) {
  const mode = statSync(path).mode;
  if (checkMode && (mode & 0o077) !== 0) {
    throw new Error(
      `${path}: mode ${(mode & 0o777).toString(8)} lets others read the secret; run chmod 600`,
    );
  }
  return readFileSync(path, 'utf8');
}

/** Loads sm2.pem (mode 0600 required unless `checkMode: false`). */
export function loadSm2PrivateKeyFile(path, { checkMode = true } = {}) {
  try {
    return sm2PrivateKeyFromPem(readSecretFile(path, checkMode));
  } catch (e) {
    throw new Error(`${path}: ${e.message}`, { cause: e });
  }
}

/** Loads sm2.pub.pem. */
export function loadSm2PublicKeyFile(path) {
  try {
    return sm2PublicKeyFromPem(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: ${e.message}`, { cause: e });
  }
}

/** Loads hmac.key (mode 0600 required unless `checkMode: false`). */
export function loadHmacKeyFile(path, { checkMode = true } = {}) {
  try {
    return hmacKeyFromText(readSecretFile(path, checkMode));
  } catch (e) {
    throw new Error(`${path}: ${e.message}`, { cause: e });
  }
}

/** Loads a signing key file of either kind: a PEM private key (SM2) or a hex secret (HMAC). */
export function loadKeyFile(path, options = {}) {
  const text = readFileSync(path, 'utf8');
  if (text.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new Error(`${path}: a public key cannot sign; use the private key (sm2.pem)`);
  }
  return text.includes('-----BEGIN')
    ? loadSm2PrivateKeyFile(path, options)
    : loadHmacKeyFile(path, options);
}

// ---- signatures --------------------------------------------------------------------------

const bytesOf = (m) => (typeof m === 'string' ? Buffer.from(m, 'utf8') : Buffer.from(m));

/**
 * The SM2 signature `r ‖ s` (64 bytes) of `message`, over SM3(Z_A ‖ message) with the
 * distinguishing ID 1234567812345678. (`_pointPool` fixes the nonce, for known-answer tests.)
 */
export function sm2Sign(message, key, { _pointPool } = {}) {
  if (!(key instanceof Sm2PrivateKey)) throw new TypeError('sm2Sign: want an Sm2PrivateKey');
  const hex = sm2.doSignature(bytesOf(message), secrets.get(key), {
    hash: true,
    der: false,
    userId: SM2_DIST_ID,
    publicKey: key.publicKeyHex,
    pointPool: _pointPool,
  });
  if (!/^[0-9a-f]{128}$/.test(hex)) throw new Error('SM2 signature is not r ‖ s');
  return Buffer.from(hex, 'hex');
}

/** Checks an SM2 signature `r ‖ s` of `message` (distinguishing ID 1234567812345678). */
export function sm2Verify(message, signature, key) {
  const pub = key instanceof Sm2PrivateKey ? key.publicKey() : key;
  if (!(pub instanceof Sm2PublicKey)) throw new TypeError('sm2Verify: want an SM2 key');
  if (!(signature instanceof Uint8Array) || signature.length !== 64) return false;
  const sig = Buffer.from(signature);
  const r = BigInt(`0x${sig.subarray(0, 32).toString('hex')}`);
  const s = BigInt(`0x${sig.subarray(32).toString('hex')}`);
  if (r < 1n || r >= SM2_N || s < 1n || s >= SM2_N) return false;
  return sm2.doVerifySignature(bytesOf(message), sig.toString('hex'), pub.publicKeyHex, {
    hash: true,
    der: false,
    userId: SM2_DIST_ID,
  });
}

/** HMAC-SM3 (32 bytes): OpenSSL's when Node has SM3, else sm-crypto-v2's. */
export function hmacSm3(key, message) {
  const secret = key instanceof HmacKey ? secrets.get(key) : Buffer.from(key);
  if (HAVE_OPENSSL_SM3) return createHmac('sm3', secret).update(bytesOf(message)).digest();
  return Buffer.from(sm3(bytesOf(message), { key: new Uint8Array(secret), mode: 'hmac' }), 'hex');
}

// ---- tokens ------------------------------------------------------------------------------

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const isUint = (v) => Number.isSafeInteger(v) && v >= 0;

function checkDocId(what, id) {
  if (typeof id !== 'string' || !DOC_ID.test(id) || id === '.' || id === '..') {
    throw new Error(`${what} ${JSON.stringify(id)}: want 1 to 128 characters of [A-Za-z0-9._~-]`);
  }
}

/** Grants as an ordered plain object, each pattern and role checked. */
function normalizeGrants(grants) {
  if (grants === undefined) return {};
  const entries =
    grants instanceof Map
      ? [...grants.entries()]
      : grants !== null && typeof grants === 'object' && !Array.isArray(grants)
        ? Object.entries(grants)
        : null;
  if (entries === null) throw new TypeError('grants: want an object or Map of pattern → role');
  if (entries.length > MAX_GRANTS) throw new Error(`grants: more than ${MAX_GRANTS}`);
  const out = Object.create(null); // '__proto__' is a valid document id
  for (const [pattern, role] of entries) {
    if (typeof pattern !== 'string') throw new TypeError('grants: patterns are strings');
    const name = pattern.endsWith('*') ? pattern.slice(0, -1) : pattern;
    if (name !== '') checkDocId('grant pattern', name);
    if (!ROLES.includes(role)) {
      throw new Error(
        `grant ${JSON.stringify(pattern)}: role ${JSON.stringify(role)} is not one of ${ROLES.join(', ')}`,
      );
    }
    if (Object.hasOwn(out, pattern)) throw new Error(`grants: ${pattern} appears twice`);
    out[pattern] = role;
  }
  return out;
}

/** Longest display name, in characters (Unicode scalar values). */
export const MAX_NAME_CHARS = 64;

// The presence claims follow the server's rules for them (a token breaking them is refused
// whole, 5002): a name of 1 to 64 characters without control characters, a colour `#rrggbb`.
function checkName(name) {
  if (name === undefined) return;
  if (typeof name !== 'string' || name.length === 0)
    throw new TypeError('name: want a non-empty string');
  if ([...name].length > MAX_NAME_CHARS || /\p{Cc}/u.test(name)) {
    throw new Error(`name: at most ${MAX_NAME_CHARS} characters without control characters`);
  }
}

function checkColor(color) {
  if (color === undefined) return;
  if (typeof color !== 'string' || !/^#[0-9A-Fa-f]{6}$/.test(color)) {
    throw new Error(`color ${JSON.stringify(color)}: want #rrggbb`);
  }
}

/**
 * A coedit access token: `base64url(header).base64url(claims).base64url(signature)`.
 *
 * @param {object} o
 * @param {'SM2-SM3'|'HMAC-SM3'} o.alg must match the key (and the server's `[auth] mode`)
 * @param {Sm2PrivateKey|HmacKey} o.key from the load/parse helpers
 * @param {string} o.sub subject (user id)
 * @param {string} o.tenant tenant: documents are namespaced by it
 * @param {number} o.ttlSeconds lifetime, 1 to MAX_TTL_SECONDS
 * @param {Record<string,string>|Map<string,string>} o.grants document id or `prefix*` → role
 * @param {boolean} [o.admin] server administrator
 * @param {number} [o.nbf] not valid before (Unix seconds)
 * @param {string} [o.name] display name shown with the user's caret (1 to 64 characters)
 * @param {string} [o.color] caret colour, `#rrggbb`
 * @param {number} [o.now] issue time, Unix seconds (default: the clock)
 */
export function issueToken(o) {
  if (o === null || typeof o !== 'object')
    throw new TypeError('issueToken: want an options object');
  for (const k of Object.keys(o)) {
    if (!OPTIONS.has(k)) throw new TypeError(`issueToken: unknown option ${JSON.stringify(k)}`);
  }
  const { alg, key, sub, tenant, ttlSeconds, grants, admin = false, nbf, name, color, now } = o;
  if (alg === ALG_SM2) {
    if (!(key instanceof Sm2PrivateKey))
      throw new TypeError(`alg ${ALG_SM2} needs an SM2 private key`);
  } else if (alg === ALG_HMAC) {
    if (!(key instanceof HmacKey)) throw new TypeError(`alg ${ALG_HMAC} needs an HMAC-SM3 key`);
  } else {
    throw new Error(`alg ${JSON.stringify(alg)}: want ${ALG_SM2} or ${ALG_HMAC}`);
  }
  if (typeof sub !== 'string' || sub.length === 0)
    throw new TypeError('sub: want a non-empty string');
  checkDocId('tenant', tenant);
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS) {
    throw new Error(`ttlSeconds ${ttlSeconds}: want an integer from 1 to ${MAX_TTL_SECONDS}`);
  }
  if (typeof admin !== 'boolean') throw new TypeError('admin: want a boolean');
  const iat = now === undefined ? Math.floor(Date.now() / 1000) : now;
  if (!isUint(iat)) throw new TypeError('now: want Unix seconds');
  const exp = iat + ttlSeconds;
  if (nbf !== undefined && (!isUint(nbf) || nbf > exp)) {
    throw new Error('nbf: want Unix seconds no later than the expiry');
  }
  checkName(name);
  checkColor(color);

  // Field order as the server writes them; absent optional claims are left out.
  const claims = { sub, tenant, iat, exp };
  if (nbf !== undefined) claims.nbf = nbf;
  claims.grants = normalizeGrants(grants);
  if (admin) claims.admin = true;
  if (name !== undefined) claims.name = name;
  if (color !== undefined) claims.color = color;

  const header = { alg, typ: TOKEN_TYPE };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = alg === ALG_SM2 ? sm2Sign(input, key) : hmacSm3(key, input);
  const token = `${input}.${b64url(sig)}`;
  if (token.length > MAX_TOKEN_BYTES) {
    throw new Error(
      `the token is ${token.length} bytes; the server accepts at most ${MAX_TOKEN_BYTES}`,
    );
  }
  return token;
}

/** The header and claims of a token, decoded but NOT verified (for logs and tests). */
export function decodeToken(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new Error('not three dot-separated parts');
  const json = (p) => JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  return {
    header: json(parts[0]),
    claims: json(parts[1]),
    signature: Buffer.from(parts[2], 'base64url'),
  };
}
