//! coedit's sans-IO core: no sockets, no threads, no storage, no clocks.
//!
//! # Layout
//! - [`op`]: text operations compatible with ShareDB's `text-unicode` type: apply, compose,
//!   transform, invert, cursor transform, canonical form, JSON/MessagePack shape.
//! - [`document`]: the server-side state of one document: text rope, revision, a bounded window
//!   of recent ops, exactly-once state per client, snapshot and restore.
//! - [`client`]: the classic server-ordered OT client state machine.
//! - [`access`]: roles, the access a join's answer reports, presence display metadata.
//! - [`wire`]: the messages between clients and the server and their encodings.
//! - [`error`]: one error enum per concern and the stable wire error codes.
//! - [`yjs`]: the Yjs document kind: the y-websocket and Hocuspocus framings, the server-side
//!   Yjs document (on `yrs`), awareness relaying.
//! - `fuzzing` (feature `fuzzing`): the fuzz harnesses shared by `fuzz/` and the regression
//!   tests.
//!
//! Everything above the protocol (actors, storage, HTTP) calls into this crate; nothing here
//! calls out.

pub mod access;
pub mod client;
mod clients;
pub mod document;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod op;
pub mod wire;
pub mod yjs;

pub use access::{Access, DocRole, PeerUser, Role};
pub use client::{ClientStatus, OtClient, Outgoing, ServerOpOutcome};
pub use document::{
    AppliedOp, ClientId, ClientRecord, Document, DocumentConfig, DocumentSnapshot, Submitted,
};
pub use error::{ClientError, DocError, ErrorCode, OtError, ProtocolError};
pub use op::{transform_position, transform_selection, Component, Op, OpBuilder, Selection, Side};
pub use wire::{ClientMsg, OpMsg, PeerPresence, RemoteOp, ServerMsg, PROTOCOL_VERSION};
pub use yjs::DocKind;
