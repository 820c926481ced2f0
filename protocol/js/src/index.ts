/**
 * The coedit browser client: `CoeditClient` (one document over a WebSocket), `bindTextarea`,
 * and the pieces they are made of (the OT state machine, the undo manager, the wire encoding,
 * Unicode position helpers). See `README.md` beside this package and `protocol/PROTOCOL.md`.
 */
export { CoeditClient, DEFAULT_MAX_TOKEN_ATTEMPTS } from './client.js';
export type { ClientOptions, ServerError } from './client.js';
export type { SocketLike } from './connection.js';
export type {
  AccessEvent,
  AckEvent,
  ChangeEvent,
  ClientError,
  Events,
  LostEvent,
  Status,
  UnsentEvent,
} from './events.js';
export { refreshDelayMs } from './token.js';
export type { TokenProvider, TokenRefreshOptions } from './token.js';
export { UndoManager } from './undo.js';
export { OtState, StateError } from './state.js';
export type { Outgoing, RemoteOp, ServerOpOutcome } from './state.js';
export { bindTextarea, diffToOp, moveSelection } from './textarea.js';
export type { Binding } from './textarea.js';
export { apply, compose, invert, normalize, transform, transformPosition } from './ot.js';
export type { Component, TextOp } from './ot.js';
export { decodeMsg, encodeMsg, ErrorCode, PROTOCOL_VERSION, sanitizeUser } from './wire.js';
export type { Access, ClientMsg, Peer, PeerUser, Range, Role, ServerMsg } from './wire.js';
export { uniLength, uniToUtf16, utf16ToUni } from './unicode.js';
