//! Security: national-crypto primitives, access tokens and roles, the audit chain, and the
//! guard that applies them to sessions and REST calls. Nothing here is an actor; only the guard
//! holds actor addresses (the write pool that checks signatures and appends audit records).
//!
//! # Layout
//! - [`crypto`]: SM2, SM3, SM4-GCM primitives, key files, the master key ring.
//! - [`auth`]: tokens, claims, grant precedence, authorization.
//! - [`guard`]: authentication, authorization and audit as sessions and REST use them.
//! - [`audit`]: the SM3-chained, SM2-checkpointed audit log and its verification.
//! - [`anchor`]: audit checkpoints anchored in a file outside the store.
//! - [`refusals`]: what refused requests may write to the audit log (aggregated per window).

pub mod anchor;
pub mod audit;
pub mod auth;
pub mod crypto;
pub mod guard;
pub mod refusals;
