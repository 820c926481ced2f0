/**
 * The coedit browser client: `CoeditClient` (one document over a WebSocket), `bindTextarea`,
 * and the pieces they are made of (the OT state machine, the wire encoding, Unicode position
 * helpers). See `README.md` beside this package and `protocol/PROTOCOL.md`.
 */
export { CoeditClient } from './client.js';
export type { ChangeEvent, ClientOptions, ServerError, SocketLike, Status } from './client.js';
export { OtState, StateError } from './state.js';
export type { Outgoing, RemoteOp, ServerOpOutcome } from './state.js';
export { bindTextarea, diffToOp, moveSelection } from './textarea.js';
export type { Binding } from './textarea.js';
export { apply, compose, normalize, transform, transformPosition } from './ot.js';
export type { Component, TextOp } from './ot.js';
export { decodeMsg, encodeMsg, ErrorCode, PROTOCOL_VERSION } from './wire.js';
export type { ClientMsg, Peer, Range, ServerMsg } from './wire.js';
export { uniLength, uniToUtf16, utf16ToUni } from './unicode.js';
