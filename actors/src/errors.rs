//! Errors of the actor layer, and the one place where error codes map to WebSocket close codes
//! and HTTP statuses.

use coedit_protocol::{DocError, ErrorCode};
use thiserror::Error;

use crate::security::auth::AuthError;
use crate::storage::StoreError;

/// WebSocket close code: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code: protocol error.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// WebSocket close code: invalid payload (e.g. bad UTF-8 in a text frame).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// WebSocket close code: policy violation (e.g. heartbeat timeout).
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code: message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code: internal error.
pub const CLOSE_INTERNAL: u16 = 1011;
/// WebSocket close code: service restart; reconnect.
pub const CLOSE_RESTART: u16 = 1012;
/// WebSocket close code: try again later (slow consumer, overload).
pub const CLOSE_TRY_AGAIN: u16 = 1013;

/// A request the actor layer could not serve.
#[derive(Clone, Debug, Error)]
#[non_exhaustive]
pub enum ActorError {
    /// The document refused the request.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The document actor is unloading; open it again.
    #[error("document {0} is unloading")]
    Closing(String),
    /// The session is not subscribed to the document (it never joined, or was disconnected as
    /// a slow consumer).
    #[error("not subscribed to document {0}")]
    NotSubscribed(String),
    /// Authentication or authorization refused the request.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The actor that should answer is gone.
    #[error("actor unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
    /// The document does not exist (yet) and the request may not create it: only a join or a
    /// write by an editor creates a document.
    #[error("document {0:?} does not exist (an editor creates it by joining or writing)")]
    NoSuchDocument(String),
    /// The document exists as the other kind.
    #[error("document {doc:?} is a {kind} document")]
    WrongKind {
        /// The document.
        doc: String,
        /// Its kind.
        kind: coedit_protocol::DocKind,
    },
    /// A Yjs message or update was refused.
    #[error(transparent)]
    Yjs(#[from] coedit_protocol::yjs::YjsError),
    /// Disk space is below the reserve: edits are refused until space is freed.
    #[error(
        "the server is short of disk space: edits are refused until space is freed (the op was \
         not applied; resend it later)"
    )]
    StorageFull,
    /// Cluster mode: another node orders the document, and this request is not routed to it
    /// here (the HTTP layer forwards it to `url`, the owner's advertised address, if known).
    #[error("document {doc:?} is ordered by node {node:?}: send this request to that node")]
    Elsewhere {
        /// The document.
        doc: String,
        /// The owner node.
        node: String,
        /// Its advertised HTTP address (`[cluster] advertise_url`).
        url: Option<String>,
    },
    /// Another node (cluster mode) refused or could not serve the request.
    #[error("{msg}")]
    Remote {
        /// The code it answered.
        code: ErrorCode,
        /// Its message.
        msg: String,
    },
}

impl ActorError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ActorError::Doc(e) => e.code(),
            ActorError::Auth(e) => e.code(),
            ActorError::Store(
                StoreError::Corrupt { .. } | StoreError::Crypto { .. } | StoreError::Lost { .. },
            ) => ErrorCode::DocumentDamaged,
            ActorError::StorageFull => ErrorCode::StorageFull,
            ActorError::Remote { code, .. } => *code,
            ActorError::Elsewhere { .. } => ErrorCode::Unavailable,
            ActorError::Store(_) => ErrorCode::Internal,
            ActorError::NotSubscribed(_) => ErrorCode::NotJoined,
            ActorError::NoSuchDocument(_) => ErrorCode::UnknownDocument,
            ActorError::WrongKind { .. } => ErrorCode::WrongKind,
            ActorError::Yjs(e) => e.code(),
            ActorError::Closing(_) | ActorError::Mailbox(_) => ErrorCode::Unavailable,
        }
    }
}

/// The WebSocket close code that ends a session for an error with this code, or `None` when the
/// session survives it (the error is reported in an `error` message).
pub fn close_code_for(code: ErrorCode) -> Option<u16> {
    match code {
        ErrorCode::UnsupportedVersion => Some(CLOSE_PROTOCOL),
        ErrorCode::FrameTooLarge => Some(CLOSE_TOO_BIG),
        ErrorCode::Internal => Some(CLOSE_INTERNAL),
        ErrorCode::AuthRequired | ErrorCode::InvalidToken | ErrorCode::TokenExpired => {
            Some(CLOSE_POLICY)
        }
        _ => None,
    }
}

/// The WebSocket close code that ends a y-websocket connection refused for an error with this
/// code: `4000 +` its HTTP status. y-websocket clients (3.x) stop reconnecting on 4400-4499
/// (a refusal that retrying cannot change: token, role, tenant, kind) and retry on others
/// (4503 unavailable, 4507 storage full, 4429 is the exception: rate limits are answered in
/// the session, never by a close).
pub fn yjs_close_code_for(code: ErrorCode) -> u16 {
    4000 + http_status_for(code)
}

/// The HTTP status for an error with this code.
pub fn http_status_for(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::BadMessage
        | ErrorCode::InvalidDocId
        | ErrorCode::InvalidClientId
        | ErrorCode::InvalidOp
        | ErrorCode::InvalidSelection
        | ErrorCode::InvalidUpdate
        | ErrorCode::UnsupportedVersion
        | ErrorCode::HelloRequired
        | ErrorCode::NotJoined => 400,
        ErrorCode::FrameTooLarge | ErrorCode::OpTooLarge | ErrorCode::DocumentTooLarge => 413,
        ErrorCode::OpDoesNotFit
        | ErrorCode::FutureRevision
        | ErrorCode::SeqReused
        | ErrorCode::StaleSeq
        | ErrorCode::WrongKind => 409,
        ErrorCode::RevisionTooOld => 410,
        ErrorCode::RateLimited | ErrorCode::TooManyDocuments => 429,
        ErrorCode::Unavailable => 503,
        ErrorCode::StorageFull => 507,
        ErrorCode::AuthRequired | ErrorCode::InvalidToken | ErrorCode::TokenExpired => 401,
        ErrorCode::WrongTenant | ErrorCode::ReadOnly | ErrorCode::NotPermitted => 403,
        ErrorCode::UnknownDocument | ErrorCode::UnknownSink => 404,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_client_or_server_status() {
        for c in ErrorCode::ALL {
            let s = http_status_for(c);
            assert!((400..600).contains(&s), "{c:?}");
            if c != ErrorCode::Internal {
                assert!(close_code_for(c) != Some(CLOSE_INTERNAL));
            }
        }
        assert_eq!(http_status_for(ErrorCode::RevisionTooOld), 410);
        assert_eq!(close_code_for(ErrorCode::OpDoesNotFit), None);
        assert_eq!(yjs_close_code_for(ErrorCode::InvalidToken), 4401);
        assert_eq!(yjs_close_code_for(ErrorCode::WrongKind), 4409);
        assert_eq!(yjs_close_code_for(ErrorCode::Unavailable), 4503);
    }
}
