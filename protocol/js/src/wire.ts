/**
 * Wire messages of the coedit protocol (`protocol/PROTOCOL.md`), version 1, and their
 * MessagePack encoding (binary WebSocket frames). Every message is a one-key map
 * `{kind: {fields}}`; absent optional fields are left out.
 */
import { decode, encode } from '@msgpack/msgpack';
import type { TextOp } from './ot.js';
import type { RemoteOp } from './state.js';

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** A selection: `[anchor, head]` in Unicode scalar values. */
export type Range = [number, number];

/** Messages a client sends. */
export type ClientMsg =
  | { hello: { v: number; client?: string; token?: string } }
  | { join: { doc: string; rev?: number } }
  | { op: { doc: string; rev: number; seq: number; op: TextOp; t?: number } }
  | { presence: { doc: string; rev: number; sel: Range[] } }
  | { leave: { doc: string } }
  | { ping: { t: number } };

/** A participant's selections. */
export interface Peer {
  client: string;
  sel: Range[];
}

/** Messages the server sends. */
export type ServerMsg =
  | { welcome: { v: number; client: string } }
  | { snapshot: { doc: string; rev: number; text: string } }
  | { ops: { doc: string; ops: (RemoteOp & { t?: number })[] } }
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

/** Error codes the client reacts to (see PROTOCOL.md for all). */
export const ErrorCode = {
  RevisionTooOld: 3002,
  RateLimited: 4001,
  Unavailable: 4003,
  StorageFull: 4006,
  AuthRequired: 5001,
  InvalidToken: 5002,
  TokenExpired: 5003,
} as const;
