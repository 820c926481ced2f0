//! Yjs documents, sans-IO: the second document kind beside plain text. The server stores and
//! merges Yjs updates (every shared type works: `Y.Text`, `Y.Map`, `Y.Array`,
//! `Y.XmlFragment`), speaks the two wire protocols the npm clients use, and relays awareness.
//! `yrs` does the CRDT and the lib0 encodings; this module adds the framing, the limits, the
//! typed errors and the server's view of a document.
//!
//! # Layout
//! - this file: [`DocKind`], [`YjsError`] and its wire codes.
//! - [`frames`]: the y-websocket and Hocuspocus framings, decoded once at the session boundary
//!   into typed messages, and the server's outbound messages in either framing.
//! - [`document`]: [`YDocument`], the server-side state of one Yjs document: apply (validate,
//!   bound, detect no-ops), replay, sync answers, snapshot, JSON content.
//! - [`awareness`]: [`AwarenessTable`], the presence states relayed between clients and which
//!   session announced which Yjs client.
//!
//! Invariants: nothing here panics on input (yrs is called behind `catch_unwind` where input
//! reaches it); every refusal is a [`YjsError`] with an [`ErrorCode`], and a refused update
//! changes nothing.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ErrorCode;

pub mod awareness;
pub mod document;
pub mod frames;

pub use awareness::AwarenessTable;
pub use document::{YApplied, YDocConfig, YDocument};
pub use frames::{Framing, HpInbound, SyncMsg, YMessage};

/// The two kinds of document. One namespace of ids: a document's kind is fixed when it is
/// created (its first stored record), and using it as the other kind is
/// [`ErrorCode::WrongKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    /// Plain text with operational transformation (`text-unicode`).
    Text,
    /// A Yjs document (CRDT updates).
    Yjs,
}

impl DocKind {
    /// The name used in the REST API and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Text => "text",
            DocKind::Yjs => "yjs",
        }
    }
}

impl std::fmt::Display for DocKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Yjs frame, update or awareness update that is refused. Nothing was applied.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum YjsError {
    /// The frame does not follow the lib0 framing of the protocol.
    #[error("malformed Yjs frame: {0}")]
    Malformed(String),
    /// A message type this server does not know (or a client may not send).
    #[error("unknown or unsupported Yjs message type {0}")]
    UnknownType(u64),
    /// The update does not decode, or Yjs refuses to integrate it.
    #[error("invalid Yjs update: {0}")]
    InvalidUpdate(String),
    /// The awareness update does not decode or breaks its limits.
    #[error("invalid awareness update: {0}")]
    InvalidAwareness(String),
    /// The update is larger than the server accepts.
    #[error("update of {size} bytes is larger than the limit of {max} bytes")]
    UpdateTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Applying the update could make the document larger than the server allows.
    #[error("the document would exceed {max} bytes")]
    DocumentTooLarge {
        /// The limit.
        max: usize,
    },
    /// Yjs failed while integrating an update: the in-memory document may be half-changed and
    /// must be reloaded from the store (where the update never went).
    #[error("the document failed while integrating an update and must be reloaded")]
    Poisoned,
}

impl YjsError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            YjsError::Malformed(_) | YjsError::UnknownType(_) => ErrorCode::BadMessage,
            YjsError::InvalidUpdate(_) | YjsError::InvalidAwareness(_) => ErrorCode::InvalidUpdate,
            YjsError::UpdateTooLarge { .. } => ErrorCode::OpTooLarge,
            YjsError::DocumentTooLarge { .. } => ErrorCode::DocumentTooLarge,
            YjsError::Poisoned => ErrorCode::Internal,
        }
    }
}

/// Checks the leading count of an encoded update or state vector before yrs decodes it: yrs
/// reserves a hash map of that many entries up front (and initializes its control bytes), so
/// a few bytes declaring 500 million clients cost 500 MB and half a second. Each entry takes
/// at least `min_entry_bytes` of what follows, so a larger count cannot be honest.
pub(crate) fn check_leading_count(buf: &[u8], min_entry_bytes: usize) -> Result<(), String> {
    let mut c = yrs::encoding::read::Cursor::new(buf);
    let count = yrs::encoding::read::Read::read_var::<u64>(&mut c)
        .map_err(|e| format!("leading count: {e}"))?;
    let room = (buf.len() - c.next) / min_entry_bytes.max(1);
    if count > room as u64 {
        return Err(format!(
            "declares {count} entries where {} bytes hold at most {room}",
            buf.len() - c.next
        ));
    }
    Ok(())
}

/// Runs `f` (which calls into yrs with untrusted input), turning a panic into `None`.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_codes() {
        assert_eq!(serde_json::to_string(&DocKind::Yjs).unwrap(), "\"yjs\"");
        assert_eq!(DocKind::Text.to_string(), "text");
        assert_eq!(
            YjsError::InvalidUpdate("x".into()).code(),
            ErrorCode::InvalidUpdate
        );
        assert_eq!(YjsError::UnknownType(77).code(), ErrorCode::BadMessage);
        assert_eq!(
            YjsError::UpdateTooLarge { size: 2, max: 1 }.code(),
            ErrorCode::OpTooLarge
        );
        assert_eq!(guarded(|| 1), Some(1));
        // 500 million entries declared in 5 bytes: refused before yrs reserves anything.
        assert!(check_leading_count(&[0x80, 0xca, 0xb5, 0xee, 0x01, 0, 0], 2).is_err());
        assert!(check_leading_count(&[2, 1, 1, 2, 2], 2).is_ok());
        assert!(check_leading_count(&[], 2).is_err());
    }
}
