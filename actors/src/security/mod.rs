//! Security: national-crypto primitives, access tokens and roles, the audit chain, and the
//! guard that applies them to sessions and REST calls. The one actor here is the token
//! verifier (its own threads); the guard holds actor addresses (the verifier, and the store
//! writer that appends audit records).
//!
//! # Layout
//! - [`crypto`]: SM2, SM3, SM4-GCM primitives, key files, the master key ring.
//! - [`auth`]: tokens, claims, grant precedence, authorization.
//! - [`guard`]: authentication, authorization and audit as sessions and REST use them.
//! - [`verifier`]: the token verifier's threads (apart from the write pool).
//! - [`audit`]: the SM3-chained, SM2-checkpointed audit log and its verification.
//! - [`anchor`]: audit checkpoints anchored in a file outside the store.
//! - [`refusals`]: what refused requests may write to the audit log (aggregated per window).

pub mod anchor;
pub mod audit;
pub mod auth;
pub mod crypto;
pub mod guard;
pub mod refusals;
pub mod verifier;
