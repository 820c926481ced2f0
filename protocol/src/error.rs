//! The protocol crate's error enums, one per concern, and their stable wire codes.
//!
//! - [`OtError`]: a malformed op, or an op that does not fit the document.
//! - [`DocError`]: a submit the document refuses (revision, sequence, size), wrapping `OtError`.
//! - [`ProtocolError`]: a frame or message that cannot be decoded or is not allowed.
//! - [`ClientError`]: the client state machine received something inconsistent.
//!
//! Every error maps to one [`ErrorCode`] through `code()`; the numbers are part of the wire
//! protocol (documented in `PROTOCOL.md`) and never change meaning.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Stable numeric error codes sent in `error` messages. See `PROTOCOL.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame could not be decoded into a message.
    BadMessage = 1001,
    /// The frame is larger than the server accepts.
    FrameTooLarge = 1002,
    /// The client speaks a protocol version the server does not.
    UnsupportedVersion = 1003,
    /// A message other than `hello` arrived before `hello`.
    HelloRequired = 1004,
    /// The document id is empty, too long or has characters outside `[A-Za-z0-9._~-]`.
    InvalidDocId = 1005,
    /// The client id is empty, too long or has characters outside `[A-Za-z0-9_-]`.
    InvalidClientId = 1006,
    /// An `op`, `presence` or `leave` for a document the session has not joined.
    NotJoined = 1007,
    /// The op has an empty or zero-length component, or an overflowing count.
    InvalidOp = 2001,
    /// The op retains or deletes past the end of the document.
    OpDoesNotFit = 2002,
    /// The op is larger than the server accepts.
    OpTooLarge = 2003,
    /// The presence selection lies outside the document.
    InvalidSelection = 2004,
    /// The Yjs update (or awareness update) is malformed, or Yjs refuses to integrate it.
    InvalidUpdate = 2005,
    /// The op's base revision is newer than the document.
    FutureRevision = 3001,
    /// The op's base revision is older than the retained history: resync from a snapshot.
    RevisionTooOld = 3002,
    /// A different op was sent under a sequence number that was already applied.
    SeqReused = 3003,
    /// The sequence number is older than the last one applied for this client.
    StaleSeq = 3004,
    /// Applying the op would make the document larger than the server allows.
    DocumentTooLarge = 3005,
    /// The document exists as the other kind (plain text or Yjs): a document's kind is fixed
    /// when it is created.
    WrongKind = 3006,
    /// Too many ops in too short a time: the op was not applied.
    RateLimited = 4001,
    /// The server could not complete the request; the op was not applied.
    Internal = 4002,
    /// The server is shutting down or overloaded; reconnect later.
    Unavailable = 4003,
    /// The session has joined too many documents.
    TooManyDocuments = 4004,
    /// The document's stored data is damaged (or lost acknowledged revisions); it is refused
    /// until repaired.
    DocumentDamaged = 4005,
    /// The server is short of disk space and refuses edits until space is freed; the op was
    /// not applied: keep it and resend it later (reads go on).
    StorageFull = 4006,
    /// An admin call names a change-event sink that is not configured (or none is).
    UnknownSink = 4007,
    /// The server requires an access token (in `hello` or the `Authorization` header).
    AuthRequired = 5001,
    /// The access token is malformed, altered, or signed with another key or algorithm.
    InvalidToken = 5002,
    /// The access token has expired: reconnect with a fresh one.
    TokenExpired = 5003,
    /// The document reference names a tenant other than the token's.
    WrongTenant = 5004,
    /// No such document, or the token grants no access to it.
    UnknownDocument = 5005,
    /// The token's role on the document does not allow writing.
    ReadOnly = 5006,
    /// The token does not allow this management or administration action.
    NotPermitted = 5007,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 32] = [
        ErrorCode::BadMessage,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::HelloRequired,
        ErrorCode::InvalidDocId,
        ErrorCode::InvalidClientId,
        ErrorCode::NotJoined,
        ErrorCode::InvalidOp,
        ErrorCode::OpDoesNotFit,
        ErrorCode::OpTooLarge,
        ErrorCode::InvalidSelection,
        ErrorCode::InvalidUpdate,
        ErrorCode::FutureRevision,
        ErrorCode::RevisionTooOld,
        ErrorCode::SeqReused,
        ErrorCode::StaleSeq,
        ErrorCode::DocumentTooLarge,
        ErrorCode::WrongKind,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::TooManyDocuments,
        ErrorCode::DocumentDamaged,
        ErrorCode::StorageFull,
        ErrorCode::UnknownSink,
        ErrorCode::AuthRequired,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::WrongTenant,
        ErrorCode::UnknownDocument,
        ErrorCode::ReadOnly,
        ErrorCode::NotPermitted,
    ];

    /// The numeric value on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c as u16
    }
}

impl TryFrom<u16> for ErrorCode {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| *c as u16 == v)
            .ok_or_else(|| format!("unknown error code {v}"))
    }
}

/// A malformed op, or an op that does not fit the document it is applied to.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtError {
    /// The op's JSON or MessagePack shape is wrong.
    #[error("malformed op: {0}")]
    Malformed(String),
    /// A zero retain, zero delete or empty insert.
    #[error("op component {index} is empty or zero-length")]
    EmptyComponent {
        /// Position of the component in the op.
        index: usize,
    },
    /// A count larger than the maximum.
    #[error("op component {index} has a count above the maximum")]
    CountOverflow {
        /// Position of the component in the op.
        index: usize,
    },
    /// A retain reaches past the end of the document.
    #[error("op retains up to character {end} of a document of {len}")]
    RetainPastEnd {
        /// Character position the retain reaches.
        end: usize,
        /// Length of the document.
        len: usize,
    },
    /// A delete reaches past the end of the document.
    #[error("op deletes up to character {end} of a document of {len}")]
    DeletePastEnd {
        /// Character position the delete reaches.
        end: usize,
        /// Length of the document.
        len: usize,
    },
}

impl OtError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            OtError::Malformed(_)
            | OtError::EmptyComponent { .. }
            | OtError::CountOverflow { .. } => ErrorCode::InvalidOp,
            OtError::RetainPastEnd { .. } | OtError::DeletePastEnd { .. } => {
                ErrorCode::OpDoesNotFit
            }
        }
    }
}

/// A submit that the document refuses. Nothing was applied.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocError {
    /// The op does not fit the document at its base revision.
    #[error(transparent)]
    Ot(#[from] OtError),
    /// The base revision is newer than the document.
    #[error("base revision {base} is newer than the document's revision {current}")]
    FutureRevision {
        /// Revision the client claimed.
        base: u64,
        /// Revision of the document.
        current: u64,
    },
    /// The base revision is older than the retained history; the client must resync from a
    /// snapshot.
    #[error("base revision {base} is older than the oldest retained revision {oldest}; resync from a snapshot")]
    RevisionTooOld {
        /// Revision the client claimed.
        base: u64,
        /// Oldest revision an op can still be based on.
        oldest: u64,
    },
    /// A different op under an already-applied sequence number.
    #[error("sequence number {seq} was already applied at revision {rev} with a different op")]
    SeqReused {
        /// The reused sequence number.
        seq: u64,
        /// Revision where the original op was applied.
        rev: u64,
    },
    /// A sequence number older than the client's last applied one.
    #[error("sequence number {seq} is older than the last applied {last}")]
    StaleSeq {
        /// The stale sequence number.
        seq: u64,
        /// The last applied sequence number of this client.
        last: u64,
    },
    /// The result would exceed the document size limit.
    #[error("the document would have {len} characters, above the limit of {max}")]
    TooLarge {
        /// Length the document would have.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl DocError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DocError::Ot(e) => e.code(),
            DocError::FutureRevision { .. } => ErrorCode::FutureRevision,
            DocError::RevisionTooOld { .. } => ErrorCode::RevisionTooOld,
            DocError::SeqReused { .. } => ErrorCode::SeqReused,
            DocError::StaleSeq { .. } => ErrorCode::StaleSeq,
            DocError::TooLarge { .. } => ErrorCode::DocumentTooLarge,
        }
    }
}

/// A frame or message that cannot be decoded or is not allowed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes are not a valid message.
    #[error("cannot decode message: {0}")]
    Decode(String),
    /// The frame exceeds the size limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Size of the frame.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The client's protocol version is not supported.
    #[error("protocol version {got} is not supported (server speaks {supported})")]
    UnsupportedVersion {
        /// Version the client sent.
        got: u32,
        /// Version the server speaks.
        supported: u32,
    },
    /// An op with too many components.
    #[error("op has {components} components, above the limit of {max}")]
    OpTooLarge {
        /// Components in the op.
        components: usize,
        /// The limit.
        max: usize,
    },
    /// A bad document id.
    #[error("invalid document id: {0}")]
    InvalidDocId(String),
    /// A bad client id.
    #[error("invalid client id: {0}")]
    InvalidClientId(String),
    /// A bad op in a message.
    #[error(transparent)]
    Op(#[from] OtError),
}

impl ProtocolError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::Decode(_) => ErrorCode::BadMessage,
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtocolError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ProtocolError::OpTooLarge { .. } => ErrorCode::OpTooLarge,
            ProtocolError::InvalidDocId(_) => ErrorCode::InvalidDocId,
            ProtocolError::InvalidClientId(_) => ErrorCode::InvalidClientId,
            ProtocolError::Op(e) => e.code(),
        }
    }
}

/// The client state machine received a message inconsistent with its state; the client must
/// resync (rejoin without a revision).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// A server op skipped revisions.
    #[error("expected revision {expected}, got {got}")]
    RevisionGap {
        /// The next revision the client expected.
        expected: u64,
        /// The revision that arrived.
        got: u64,
    },
    /// An ack for an op the client did not send.
    #[error("ack for sequence number {seq}, but {inflight:?} is in flight")]
    UnexpectedAck {
        /// Sequence number acknowledged.
        seq: u64,
        /// Sequence number in flight, if any.
        inflight: Option<u64>,
    },
    /// A remote op that does not fit the client's document.
    #[error(transparent)]
    Ot(#[from] OtError),
}
