//! coedit's actix actors. They move messages and own resources; every decision about text,
//! revisions and the wire format is made by `coedit-protocol`.
//!
//! # Layout
//! Actors (one file each, messages next to their handlers):
//! - [`registry`]: the `Registry` actor: opens one `DocActor` per document on first use and
//!   forgets it when it unloads.
//! - [`document`]: the `DocActor`: owns one `Document`, serializes submits, fans ops and
//!   presence out once per tick, keeps the presence table, unloads when idle.
//! - [`session`]: the `WsSession` actor, one per WebSocket (the only file that uses
//!   actix-web-actors), and `CloseAll`, which closes every session at once.
//! - [`store_actor`]: the `StoreActor`, which orders every write, group-commits them, and
//!   records what each flush made durable in the manifest and the audit anchors.
//! - [`crypto_actor`]: the write pool (`SyncArbiter`) that seals, hashes, signs and writes
//!   batches, and checks token signatures.
//!
//! Storage (no actix):
//! - [`store`]: the `Store` trait, the record format, the sled and in-memory backends, the
//!   offline checker.
//! - [`manifest`]: the record, outside sled, of every acknowledged revision and the audit
//!   chain's length; detects what sled's recovery silently drops.
//! - [`keys`]: per-document data keys (wrapping, shredding, rotation).
//! - [`disk`]: free disk space and whether edits are accepted.
//! - [`history`]: history reads run off the document actor's thread, paged.
//!
//! Security (no actix, except the guard's addresses):
//! - [`crypto`]: SM2, SM3, SM4-GCM primitives, key files, the master key ring.
//! - [`auth`]: tokens, claims, roles, grant precedence, authorization.
//! - [`guard`]: authentication, authorization and audit as sessions and REST use them.
//! - [`audit`]: the SM3-chained, SM2-checkpointed audit log and its verification.
//! - [`anchor`]: audit checkpoints anchored in a file outside the store.
//! - [`refusals`]: what refused requests may write to the audit log.
//!
//! Edges:
//! - [`ws_gate`]: the byte-level gate in front of the WebSocket decoder (frame limits from
//!   headers).
//! - [`frame`]: outbound frames and the two encodings.
//! - [`errors`]: errors of this layer and the one mapping from error codes to WebSocket close
//!   codes and HTTP statuses.
//! - [`metrics`]: the process's Prometheus metrics.

pub mod anchor;
pub mod audit;
pub mod auth;
pub mod crypto;
pub mod crypto_actor;
pub mod disk;
pub mod document;
pub mod errors;
pub mod frame;
pub mod guard;
pub mod history;
pub mod keys;
pub mod manifest;
pub mod metrics;
pub mod refusals;
pub mod registry;
pub mod session;
pub mod store;
pub mod store_actor;
pub mod ws_gate;

pub use document::{DocActor, DocActorConfig};
pub use errors::{close_code_for, http_status_for, ActorError};
pub use registry::{OpenDoc, Registry};
pub use session::{SessionConfig, WsSession};
pub use store::{MemoryStore, SledStore, Store, StoreError};
pub use store_actor::{Durability, StoreActor};

/// Identifies one WebSocket session for the lifetime of the process.
pub type SessionId = u64;
