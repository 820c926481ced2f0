/**
 * Wire messages of the coedit protocol (`protocol/PROTOCOL.md`), version 1, and their
 * MessagePack encoding (binary WebSocket frames). Every message is a one-key map
 * `{kind: {fields}}`; absent optional fields are left out. The server refuses unknown fields
 * in client messages (`1001`), so only documented fields are ever sent.
 */
import { decode, encode } from '@msgpack/msgpack';
import type { TextOp } from './ot.js';
import type { RemoteOp } from './state.js';

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** A selection: `[anchor, head]` in Unicode scalar values. */
export type Range = [number, number];

/** A role on a document: viewers and commenters read and show presence, editors also write
 * (and create), owners also delete. */
export type Role = 'viewer' | 'commenter' | 'editor' | 'owner';

/** Display metadata shown with a participant's caret. */
export interface PeerUser {
  /** Display name (at most 64 characters, no control characters). */
  name?: string;
  /** Caret colour, `#rrggbb`. */
  color?: string;
}

/** What a session may do in a document (first message of a join's answer). */
export interface Access {
  /** The session's role (`owner` when the server has no authentication). */
  role: Role;
  /** The token's subject (absent without authentication). */
  sub?: string;
}

/** Messages a client sends. */
export type ClientMsg =
  | { hello: { v: number; client?: string; token?: string; user?: PeerUser } }
  | { auth: { token: string } }
  | { join: { doc: string; rev?: number } }
  | { op: { doc: string; rev: number; seq: number; op: TextOp; t?: number } }
  | { presence: { doc: string; rev: number; sel: Range[] } }
  | { leave: { doc: string } }
  | { ping: { t: number } };

/** A participant's selections. */
export interface Peer {
  client: string;
  sel: Range[];
  /** Name and colour, when the participant has any. */
  user?: PeerUser;
}

/** Messages the server sends. */
export type ServerMsg =
  | { welcome: { v: number; client: string; sub?: string; exp?: number; now?: number } }
  | { authed: { sub?: string; exp?: number; now?: number; roles?: { doc: string; role: Role }[] } }
  | { snapshot: { doc: string; rev: number; text: string; access?: Access } }
  | { ops: { doc: string; ops: (RemoteOp & { t?: number })[]; access?: Access } }
  | { ack: { doc: string; seq: number; rev: number } }
  | { presence: { doc: string; rev: number; peers: Peer[] } }
  | { error: { code: number; msg: string; doc?: string; seq?: number } }
  | { pong: { t: number } };

/** Encodes a message for a binary frame. */
export function encodeMsg(msg: ClientMsg): Uint8Array {
  return encode(msg, { ignoreUndefined: true });
}

/** Decodes a server frame (binary MessagePack or JSON text); throws on garbage. */
export function decodeMsg(data: ArrayBuffer | Uint8Array | string): ServerMsg {
  const value =
    typeof data === 'string'
      ? JSON.parse(data)
      : decode(data instanceof Uint8Array ? data : new Uint8Array(data));
  if (value === null || typeof value !== 'object' || Object.keys(value).length !== 1) {
    throw new Error('not a coedit message');
  }
  return value as ServerMsg;
}

/** Longest display name the server accepts, in characters. */
export const MAX_USER_NAME_CHARS = 64;

/**
 * `user` as the server accepts it in `hello`: the name without control characters and cut to
 * 64 characters (`undefined` if nothing is left), the colour only if it is `#rrggbb`. A value
 * the server would refuse would fail the whole `hello` (`1001`), so it is cleaned here.
 */
export function sanitizeUser(user: PeerUser | undefined): PeerUser | undefined {
  if (!user) return undefined;
  // eslint-disable-next-line no-control-regex
  const name = [...(user.name ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, '')]
    .slice(0, MAX_USER_NAME_CHARS)
    .join('')
    .trim();
  const color = /^#[0-9a-fA-F]{6}$/.test(user.color ?? '') ? user.color : undefined;
  if (!name && !color) return undefined;
  return { ...(name ? { name } : {}), ...(color ? { color } : {}) };
}

/** Error codes the client reacts to (see PROTOCOL.md for all). */
export const ErrorCode = {
  BadMessage: 1001,
  NotJoined: 1007,
  RevisionTooOld: 3002,
  RateLimited: 4001,
  Unavailable: 4003,
  StorageFull: 4006,
  AuthRequired: 5001,
  InvalidToken: 5002,
  TokenExpired: 5003,
  WrongTenant: 5004,
  UnknownDocument: 5005,
  ReadOnly: 5006,
  NotPermitted: 5007,
} as const;
