//! coedit's actix actors. They move messages and own resources; every decision about text,
//! revisions and the wire format is made by `coedit-protocol`.
//!
//! # Layout
//! - [`registry`]: the `Registry` actor: opens one `DocActor` per document on first use and
//!   forgets it when it unloads.
//! - [`document`]: the `DocActor`: owns one `Document`, serializes submits, fans ops and
//!   presence out once per tick, keeps the presence table, unloads when idle.
//! - [`session`]: the `WsSession` actor, one per WebSocket (the only file that uses
//!   actix-web-actors).
//! - [`store`]: the `Store` trait, the record format, and the sled and in-memory backends.
//! - [`store_actor`]: the `StoreActor`, the store's only writer, with group commit.
//! - [`frame`]: outbound frames and the two encodings.
//! - [`errors`]: errors of this layer and the one mapping from error codes to WebSocket close
//!   codes and HTTP statuses.

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
