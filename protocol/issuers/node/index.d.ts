// Types of @coedit/token-issuer (index.js): token issuing for app backends (SM2-SM3,
// HMAC-SM3) and the loaders of the key files `coedit keygen` writes.

/// <reference types="node" />

export declare const ALG_SM2: 'SM2-SM3';
export declare const ALG_HMAC: 'HMAC-SM3';
export declare const TOKEN_TYPE: 'coedit';
export declare const SM2_DIST_ID: '1234567812345678';
export declare const MAX_TOKEN_BYTES: number;
export declare const MAX_GRANTS: number;
export declare const MAX_TTL_SECONDS: number;
export declare const MIN_HMAC_KEY_BYTES: number;
export declare const MAX_NAME_CHARS: number;
export declare const ROLES: readonly Role[];

export type Alg = typeof ALG_SM2 | typeof ALG_HMAC;
export type Role = 'viewer' | 'commenter' | 'editor' | 'owner';

/** An SM2 private key (signs SM2-SM3 tokens); the secret is never printed or serialized. */
export declare class Sm2PrivateKey {
  /** @param dHex the private scalar, 64 hex digits */
  constructor(dHex: string);
  readonly kind: 'sm2';
  /** Uncompressed public key `04 ‖ x ‖ y`, hex. */
  readonly publicKeyHex: string;
  publicKey(): Sm2PublicKey;
  toJSON(): { kind: 'sm2'; publicKeyHex: string };
}

/** An SM2 public key (the server's sm2.pub.pem). */
export declare class Sm2PublicKey {
  constructor(publicKeyHex: string);
  readonly kind: 'sm2-public';
  readonly publicKeyHex: string;
}

/** An HMAC-SM3 secret (signs HMAC-SM3 tokens); never printed or serialized. */
export declare class HmacKey {
  constructor(bytes: Uint8Array);
  readonly kind: 'hmac';
  toJSON(): { kind: 'hmac' };
}

export type SigningKey = Sm2PrivateKey | HmacKey;

export interface LoadOptions {
  /** Refuse a secret file that group or others can read (as the server does). Default true. */
  checkMode?: boolean;
}

/** Parses a PKCS#8 "PRIVATE KEY" PEM holding an SM2 key (sm2.pem). */
export declare function sm2PrivateKeyFromPem(pem: string | Uint8Array): Sm2PrivateKey;
/** Parses a SubjectPublicKeyInfo "PUBLIC KEY" PEM holding an SM2 key (sm2.pub.pem). */
export declare function sm2PublicKeyFromPem(pem: string | Uint8Array): Sm2PublicKey;
/** Parses the text of hmac.key (hex digits). */
export declare function hmacKeyFromText(text: string | Uint8Array): HmacKey;
/** An HMAC-SM3 secret from raw bytes (at least 16). */
export declare function hmacKeyFromBytes(bytes: Uint8Array): HmacKey;
export declare function loadSm2PrivateKeyFile(path: string, options?: LoadOptions): Sm2PrivateKey;
export declare function loadSm2PublicKeyFile(path: string): Sm2PublicKey;
export declare function loadHmacKeyFile(path: string, options?: LoadOptions): HmacKey;
/** sm2.pem → Sm2PrivateKey, hmac.key → HmacKey. */
export declare function loadKeyFile(path: string, options?: LoadOptions): SigningKey;

/** SM2 signature `r ‖ s` (64 bytes), SM3 digest, ID 1234567812345678. */
export declare function sm2Sign(message: string | Uint8Array, key: Sm2PrivateKey): Buffer;
export declare function sm2Verify(
  message: string | Uint8Array,
  signature: Uint8Array,
  key: Sm2PublicKey | Sm2PrivateKey,
): boolean;
/** HMAC-SM3 tag (32 bytes). */
export declare function hmacSm3(key: HmacKey | Uint8Array, message: string | Uint8Array): Buffer;

export interface IssueOptions {
  /** Must match the key and the server's `[auth] mode`. */
  alg: Alg;
  key: SigningKey;
  /** Subject (user id). */
  sub: string;
  /** Tenant: 1 to 128 characters of [A-Za-z0-9._~-]. */
  tenant: string;
  /** Lifetime, 1 to MAX_TTL_SECONDS. Keep it short: tokens cannot be revoked. */
  ttlSeconds: number;
  /** Document id or `prefix*` → role. */
  grants?: Record<string, Role> | Map<string, Role>;
  /** Server administrator (key rotation, audit export). */
  admin?: boolean;
  /** Not valid before, Unix seconds. */
  nbf?: number;
  /** Display name shown with the user's caret (1 to 64 characters, no control characters). */
  name?: string;
  /** Caret colour, `#rrggbb`. */
  color?: string;
  /** Issue time, Unix seconds (default: the clock). */
  now?: number;
}

/** `base64url(header).base64url(claims).base64url(signature)`, no padding. */
export declare function issueToken(options: IssueOptions): string;

export interface Claims {
  sub: string;
  tenant: string;
  iat: number;
  exp: number;
  nbf?: number;
  grants: Record<string, Role>;
  admin?: boolean;
  name?: string;
  color?: string;
}

/** Decodes a token WITHOUT verifying it. */
export declare function decodeToken(token: string): {
  header: { alg: Alg; typ: 'coedit' };
  claims: Claims;
  signature: Buffer;
};
