//! coedit's actix actors. They move messages and own resources; every decision about text,
//! revisions and the wire format is made by `coedit-protocol`.
//!
//! # Layout
//! Actors (one file each, messages next to their handlers), and what runs where:
//! - [`registry`]: the `Registry` actor (one, on the system arbiter): opens one `DocActor` or
//!   `YDocActor` per document on first use (in cluster mode, a `RemoteDoc` when another node
//!   owns it) and forgets it when it unloads; `registry/calls.rs`: how sessions and REST
//!   calls reach a document through it.
//! - [`document`]: the `DocActor` (one per open document, spread over the worker arbiters):
//!   owns one `Document`, serializes submits, fans ops and presence out in rounds (one
//!   message per subscriber per tick; the tick stretches with the subscribers), keeps the
//!   presence table, unloads when idle.
//! - [`ydoc`]: the `YDocActor` (one per open Yjs document, spread like `DocActor`): owns one
//!   `YDocument`, applies updates, relays them once durable, relays awareness, unloads when
//!   idle.
//! - [`session`]: the `WsSession` actor, one per WebSocket, on the worker that accepted it (the
//!   only module, with its folder `session/`, that uses actix-web-actors), the Yjs
//!   `YSession`, and `CloseAll`, which closes every session at once.
//! - [`store_actor`]: the `StoreActor` (one, on its own arbiter): orders every write, batches
//!   them for the write pool with their group-commit flush, then tells documents `Durable`;
//!   writes change events (in cluster mode, for the documents this node owns).
//! - [`write_pool`]: the `WritePool` (a `SyncArbiter` of one thread): applies the store
//!   actor's batches in order (`apply_batch`: encodes and seals records, extends and signs the
//!   audit chain, writes into the store's buffers), then flushes and records what the flush
//!   made durable in the manifest and the audit anchors (`FlushAfter`).
//! - [`dispatcher`]: the `Dispatcher` (one, on the system arbiter): delivers durable change
//!   events to webhooks in order per document, with retries, dead letters and disabling; the
//!   HTTP calls run on blocking threads.
//! - `security::verifier`: the `TokenVerifier` (a `SyncArbiter` of `[crypto] threads`):
//!   checks token signatures, apart from the writes.
//!
//! Beside the actors:
//! - [`outbox`]: a session's outbound queue as document actors use it (bounded in frames and
//!   bytes; a slow consumer is cut).
//! - [`history`]: history reads (paged ops, old revisions) run off the document actor's
//!   thread.
//! - [`ws_gate`]: the byte-level gate in front of the WebSocket decoder (frame limits from
//!   headers, before any of a frame is held).
//! - [`frame`]: outbound frames and the two encodings.
//! - [`errors`]: this layer's error enum and the one mapping from error codes to WebSocket
//!   close codes and HTTP statuses.
//! - [`metrics`]: the process's Prometheus metrics.
//! - [`nats_client`]: the one way coedit connects to NATS (the JetStream store, the events
//!   sink).
//! - `tests` (test builds only): in-process tests of the document and store actors, message by
//!   message, on a `MemoryStore` with recording sessions and a paused clock (see its `//!`).
//!
//! Module folders (no actix inside, except the guard's addresses and the token verifier):
//! - [`cluster`] (has actors): cluster mode on NATS: leases, the `RemoteDoc` stand-in for a
//!   document another node owns, the owner's gateway, the wire between nodes. See its `//!`
//!   layout.
//! - [`storage`]: the `Store` trait and `StoreError`, the record codec, the `Kv` backends
//!   (memory, sled, NATS JetStream), the offline checker, data keys, the manifest, free disk space, the
//!   durability policy. See its `//!` layout.
//! - [`events`]: change events: their JSON, the coalescer, the outbox in the store, Standard
//!   Webhooks signatures, the retry schedule, the sinks. See its `//!` layout.
//! - [`security`]: SM2/SM3/SM4 primitives, tokens and roles, the audit chain and its anchors,
//!   the auth + audit guard, refusal aggregation. See its `//!` layout.
//!
//! Where an edit goes: a wire or OT rule → `coedit-protocol`; how a document behaves →
//! `document.rs`; what a connection may do → `session.rs` (authorization through
//! `security::guard`); what is written and when it is durable → `store_actor.rs` (order,
//! flush) and `write_pool.rs` (what each write does); the format on disk →
//! `storage/codec.rs` and `docs/STORAGE.md`.

pub mod cluster;
pub mod dispatcher;
pub mod document;
pub mod errors;
pub mod events;
pub mod frame;
pub mod history;
pub mod metrics;
pub mod nats_client;
pub mod outbox;
pub mod registry;
pub mod security;
pub mod session;
pub mod storage;
pub mod store_actor;
#[cfg(test)]
mod tests;
pub mod write_pool;
pub mod ws_gate;
pub mod ydoc;

pub use document::{DocActor, DocActorConfig};
pub use errors::{close_code_for, http_status_for, ActorError};
pub use registry::{OpenDoc, Registry};
pub use session::{SessionConfig, WsSession};
pub use storage::Durability;
pub use storage::{MemoryStore, SledStore, Store, StoreError};
pub use store_actor::StoreActor;

/// Identifies one WebSocket session for the lifetime of the process.
pub type SessionId = u64;
