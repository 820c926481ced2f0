//! Where documents live: the `Store` trait, its record format, and two backends (sled on disk,
//! an ordered map in memory) that share every line of encoding and verification.
//!
//! Layout (see `docs/STORAGE.md`): six key spaces ("trees"): `ops` holds one record per
//! applied op under `doc \0 rev` (rev big-endian, so a document's ops sort by revision),
//! `snapshots` holds snapshots under the same key shape, `meta` holds the format version and
//! the encryption mode, `keys` holds wrapped data keys (see [`crate::storage::keys`]), `audit` holds the
//! audit chain (see [`crate::security::audit`]), `events` the change-events outbox (see
//! [`crate::events::outbox`]). Every op and snapshot value is a versioned record,
//! either plaintext with a checksum:
//! `[format u8 = 1][kind u8][crc32 of body, u32 LE][body: MessagePack]`
//! or, in an encrypted store, sealed with SM4-GCM under the document's data key:
//! `[format u8 = 2][kind u8][key generation u32 BE][nonce ‖ ciphertext ‖ tag]`, authenticated
//! together with its header and its key (so it cannot be moved to another revision or
//! document).
//!
//! Invariants:
//! - `load` returns the latest snapshot and the ops after it, or `StoreError::Corrupt` naming
//!   the document and revision of the first bad record (bad checksum, truncated value, unknown
//!   format, key and body disagreeing, or a gap in revisions). It never returns wrong data.
//! - Writes are buffered; they are durable only after `flush` returns (sled 0.34 flushes with
//!   `sync_file_range`/`fsync`).
//! - Document ids never contain `\0` (the protocol's id check), so prefixes cannot collide.
//! - An encrypted store reads sealed records only: a plaintext record in it (however valid its
//!   checksum) is corruption, so nobody with write access to the disk can slip one in.
//!
//! # Layout
//! - this file: the [`Store`] trait, [`StoreError`], the stored types, key shapes and the
//!   constants of the format.
//! - [`codec`]: the record codec: one header parser for plaintext and sealed records,
//!   encoding, decoding and sealing.
//! - [`kv`]: the [`Kv`] trait over an ordered key-value backend and its key spaces;
//!   [`mem_kv`] (in memory), [`sled_kv`] (on disk) and [`js_kv`] (NATS JetStream key-value
//!   buckets, `docs/CLUSTER.md`) implement it.
//! - [`records`]: [`RecordStore`], the `Store` over any `Kv` (documents, history, audit
//!   storage), and its constructors.
//! - [`meta`]: the store-wide records: format version, encryption mode, master key check
//!   values.
//! - [`check`]: the offline checker (`coedit check`).
//! - [`keys`]: per-document data keys (wrapping, shredding, rotation).
//! - [`manifest`]: the record, outside sled, of every acknowledged revision and the audit
//!   chain's length.
//! - [`disk`]: free disk space and whether edits are accepted.
//! - [`ystore`]: Yjs documents: their two record kinds, load, history, the offline check.

use std::path::Path;
use std::time::Duration;

use crate::security::crypto::{CryptoError, MasterKeyring, SEAL_OVERHEAD};
use crate::storage::keys::DataKeys;

use coedit_protocol::yjs::YDocument;
use coedit_protocol::{ClientId, DocKind, Document, DocumentConfig, DocumentSnapshot, Op};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod check;
pub mod codec;
pub mod disk;
pub mod js_kv;
pub mod keys;
pub mod kv;
pub mod manifest;
pub mod mem_kv;
pub mod meta;
pub mod records;
pub mod sled_kv;
#[cfg(test)]
mod tests;
pub mod ystore;

pub use check::check_document;
pub use codec::encode_record;
pub use kv::{Kv, Pair, Tree};
pub use mem_kv::MemKv;
pub use records::{MemoryStore, RecordStore, SledStore};
pub use sled_kv::{SledKv, LOCK_WAIT, SLED_CACHE_BYTES};
pub use ystore::{StoredY, YStateRecord, YUpdateRecord};

/// Version of the store layout written by this build (stored in `meta`).
pub const RECORD_FORMAT: u8 = 1;
/// A key past every document key (document ids are ASCII).
const PAST_ALL_DOCS: &[u8] = &[0xff];
/// Key of the store-wide encryption mode in the `meta` tree.
const META_CRYPTO_KEY: &[u8] = b"crypto";
/// `meta` value of an unencrypted store.
const CRYPTO_NONE: &[u8] = b"none";
/// `meta` value of a store encrypted with SM4-GCM.
const CRYPTO_SM4_GCM: &[u8] = b"sm4-gcm";
/// Record kind: one applied op.
const KIND_OP: u8 = 1;
/// Record kind: a snapshot.
const KIND_SNAPSHOT: u8 = 2;
/// Bytes before a record's body, in both formats.
const HEADER_LEN: usize = 6;
/// Key of the store-wide format version in the `meta` tree.
const META_FORMAT_KEY: &[u8] = b"format";
/// Key of the manifest id in the `meta` tree.
const META_MANIFEST_KEY: &[u8] = b"manifest";
/// Prefix of the master key check values in the `meta` tree (`kcv/` + version u32 BE).
const META_KCV_PREFIX: &[u8] = b"kcv/";

/// When an op is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After it is flushed to disk (group commit).
    Strict,
    /// After it is written to the store's buffers; flushed every `interval`.
    Relaxed {
        /// Flush interval.
        interval: Duration,
    },
}

/// A store failure.
#[derive(Clone, Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backing storage failed.
    #[error("storage failure: {0}")]
    Backend(String),
    /// A stored record is damaged; the document is refused rather than served wrong.
    #[error("document {doc:?} is corrupt at revision {rev}: {reason}")]
    Corrupt {
        /// The document.
        doc: String,
        /// Revision of the first bad record.
        rev: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store was written by a newer, incompatible format.
    #[error("store format {found} is not supported (this build reads {RECORD_FORMAT})")]
    Format {
        /// The format found.
        found: u8,
    },
    /// A data key cannot be used (wrapped key altered, master key version missing, key
    /// destroyed).
    #[error("data key of document {doc:?}: {source}")]
    Crypto {
        /// The document.
        doc: String,
        /// What failed.
        source: CryptoError,
    },
    /// The store cannot be opened with this configuration (e.g. encrypted store, no key).
    #[error("{0}")]
    Config(String),
    /// The store holds fewer revisions of a document than were acknowledged (its files were
    /// damaged and sled's recovery stopped early): the document is refused, never served
    /// rolled back.
    #[error(
        "document {doc:?} lost acknowledged revisions {}..={expected} (the store has revision \
         {have}): its files were damaged; restore the data directory from a backup, or accept \
         the loss with `coedit recover --accept-loss`",
        have + 1
    )]
    Lost {
        /// The document.
        doc: String,
        /// The revision the store has.
        have: u64,
        /// The highest acknowledged revision.
        expected: u64,
    },
    /// Another writer wrote a revision of this document first (JetStream backend): this node
    /// was not the document's only writer, and what it had not made durable is not.
    #[error(
        "document {doc:?} was written by another node first: this node was not its only writer; \
         its unacknowledged edits are resent by their clients"
    )]
    Fenced {
        /// The document.
        doc: String,
    },
    /// The audit chain is shorter than what was recorded as durable.
    #[error(
        "the audit log lost records {}..={expected} (the store holds {have}): the store's files \
         were damaged or records were removed; restore the data directory from a backup, or \
         record the loss in the chain and go on with `coedit recover --accept-loss`",
        have + 1
    )]
    AuditLost {
        /// Records the store holds.
        have: u64,
        /// Records recorded as durable.
        expected: u64,
    },
}

/// One applied op as stored in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The revision it produced.
    pub rev: u64,
    /// Author's client id.
    pub client: String,
    /// Author's sequence number.
    pub seq: u64,
    /// The op as applied.
    pub op: Op,
}

/// One record for a document's log, of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// A text op.
    Text(LogRecord),
    /// A Yjs update.
    Yjs(YUpdateRecord),
}

impl LogEntry {
    /// The revision it produced.
    pub fn rev(&self) -> u64 {
        match self {
            LogEntry::Text(r) => r.rev,
            LogEntry::Yjs(r) => r.rev,
        }
    }
}

impl From<LogRecord> for LogEntry {
    fn from(r: LogRecord) -> Self {
        LogEntry::Text(r)
    }
}

/// A snapshot of either kind of document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotEntry {
    /// A text snapshot.
    Text(DocumentSnapshot),
    /// A Yjs state.
    Yjs(YStateRecord),
}

impl From<DocumentSnapshot> for SnapshotEntry {
    fn from(s: DocumentSnapshot) -> Self {
        SnapshotEntry::Text(s)
    }
}

/// What `load` finds for a document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredDoc {
    /// The latest snapshot, if any.
    pub snapshot: Option<DocumentSnapshot>,
    /// The ops after it (after revision 0 without a snapshot), consecutive.
    pub ops: Vec<LogRecord>,
}

impl StoredDoc {
    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.ops.is_empty()
    }

    /// Rebuilds the document: the snapshot, then every op replayed. An op that does not fit is
    /// reported as corruption at its revision.
    pub fn into_document(self, doc: &str, config: DocumentConfig) -> Result<Document, StoreError> {
        let mut d = match self.snapshot {
            Some(s) => Document::from_snapshot(s, config),
            None => Document::new(config),
        };
        for r in self.ops {
            let client = ClientId::from(r.client);
            d.apply_committed(r.rev, &client, r.seq, r.op)
                .map_err(|e| corrupt(doc, r.rev, format!("op does not replay: {e}")))?;
        }
        Ok(d)
    }
}

/// Snapshot points and the retained op range of a document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// Revisions with a stored snapshot, ascending.
    pub snapshots: Vec<u64>,
    /// First revision with a stored op, if any.
    pub first_op: Option<u64>,
    /// Latest stored revision.
    pub last_rev: u64,
}

/// Persistent home of documents. Implementations must be safe to read from many threads while
/// one writer (the store actor) writes.
pub trait Store: Send + Sync + 'static {
    /// The latest snapshot of `doc` and the ops after it, verified.
    fn load(&self, doc: &str) -> Result<StoredDoc, StoreError>;
    /// Buffers ops for the log.
    fn append(&self, doc: &str, records: &[LogRecord]) -> Result<(), StoreError>;
    /// Buffers a snapshot.
    fn put_snapshot(&self, doc: &str, snapshot: &DocumentSnapshot) -> Result<(), StoreError>;
    /// Deletes ops at or before `rev` and the snapshots made obsolete by the newest snapshot at
    /// or before `rev` (which is kept).
    fn compact(&self, doc: &str, rev: u64) -> Result<(), StoreError>;
    /// Makes every buffered write durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Documents another node wrote first since the last call (cluster mode: their actors
    /// step down; nothing more of theirs is written until [`Store::unfence`]).
    fn take_fenced(&self) -> Vec<Fenced> {
        Vec::new()
    }
    /// Lets a fenced document be written again (its old actor stepped down, its writes were
    /// flushed, a new actor loads it).
    fn unfence(&self, _doc: &str) {}
    /// Whether `doc` is fenced now (a flush that returned found another node's revision).
    fn is_fenced(&self, _doc: &str) -> bool {
        false
    }
    /// Snapshot points and retained op range.
    fn versions(&self, doc: &str) -> Result<Versions, StoreError>;
    /// The stored ops with revisions `from + 1 ..= to`.
    fn ops(&self, doc: &str, from: u64, to: u64) -> Result<Vec<LogRecord>, StoreError>;
    /// One page of history: at most `max_count` stored ops with revisions in `from + 1 ..= to`,
    /// stopping once `max_bytes` of records were read (one op at least), contiguous from the
    /// first one returned (which is later than `from + 1` when older ops were compacted). Reads
    /// only what it returns.
    fn ops_page(
        &self,
        doc: &str,
        from: u64,
        to: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, StoreError>;
    /// The oldest retained op's revision, if any.
    fn first_op(&self, doc: &str) -> Result<Option<u64>, StoreError>;
    /// The text at revision `rev`, rebuilt from the newest snapshot at or before it and the log;
    /// `None` if that revision is not retained.
    fn text_at(&self, doc: &str, rev: u64) -> Result<Option<String>, StoreError>;
    /// Every document with stored data.
    fn documents(&self) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` documents with stored data whose ids start with `prefix`, in id order,
    /// after `after` (exclusive) when given. Reads two index seeks per document returned, not
    /// the store.
    fn list_documents(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Removes every record of `doc`; in an encrypted store also destroys its data key, so
    /// copies of its records (in sled's log, backups, freed disk blocks) can never be opened.
    fn delete(&self, doc: &str) -> Result<(), StoreError>;
    /// Whether records are sealed with SM4-GCM.
    fn encrypted(&self) -> bool;
    /// Reads the store's format record: fails if the backend cannot serve reads.
    fn check_readable(&self) -> Result<(), StoreError>;
    /// Re-wraps every data key under the newest key of `ring`, which replaces the ring in use.
    /// Returns the number of keys re-wrapped; fails on an unencrypted store.
    fn rotate_master_key(&self, ring: MasterKeyring) -> Result<usize, StoreError>;
    /// Writes one audit record (buffered) under its sequence number.
    fn audit_put(&self, seq: u64, value: &[u8]) -> Result<(), StoreError>;
    /// The last audit record.
    fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// Every audit record in key order, with the sequence number its key holds.
    fn audit_all(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// The highest revision stored for `doc` (op or snapshot), 0 if none; reads two keys.
    fn last_rev(&self, doc: &str) -> Result<u64, StoreError>;
    /// The id of the manifest kept beside the store (see [`crate::storage::manifest`]), if it has one.
    fn manifest_id(&self) -> Result<Option<String>, StoreError>;
    /// Records the manifest's id (buffered).
    fn set_manifest_id(&self, id: &str) -> Result<(), StoreError>;
    /// The kind of `doc`'s stored records, `None` if nothing is stored.
    fn kind(&self, doc: &str) -> Result<Option<DocKind>, StoreError>;
    /// Yjs: the latest snapshot of `doc` and the updates after it, verified.
    fn load_y(&self, doc: &str) -> Result<StoredY, StoreError>;
    /// Yjs: buffers updates for the log.
    fn append_y(&self, doc: &str, records: &[YUpdateRecord]) -> Result<(), StoreError>;
    /// Yjs: buffers a state snapshot.
    fn put_y_state(&self, doc: &str, state: &YStateRecord) -> Result<(), StoreError>;
    /// Yjs: the document at revision `rev`, rebuilt from the newest snapshot at or before it and
    /// the log; `None` if that revision is not retained.
    fn y_at(&self, doc: &str, rev: u64) -> Result<Option<YDocument>, StoreError>;
    /// Events outbox: writes a value in the `events` tree (buffered).
    fn events_put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Events outbox: reads a value.
    fn events_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Events outbox: at most `max` pairs with keys in `[from, to)`, ascending.
    fn events_range(&self, from: &[u8], to: &[u8], max: usize) -> Result<Vec<Pair>, StoreError>;
    /// Events outbox: the last pair with a key in `[from, to)`.
    fn events_last(&self, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// Events outbox: deletes keys in `[from, to)` (buffered).
    fn events_delete_range(&self, from: &[u8], to: &[u8]) -> Result<(), StoreError>;
}

fn corrupt(doc: &str, rev: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        doc: doc.to_string(),
        rev,
        reason: reason.into(),
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// `doc \0`: the prefix of every key of a document.
fn prefix(doc: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(doc.len() + 9);
    k.extend_from_slice(doc.as_bytes());
    k.push(0);
    k
}

/// A document another node wrote first (cluster mode): this node's revisions of it from
/// `from_rev` on were not stored (those below were), nor is anything more of it until it is
/// unfenced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fenced {
    /// The document.
    pub doc: String,
    /// This node's first revision the store refused.
    pub from_rev: u64,
}

/// `doc \0 rev` with `rev` big-endian.
pub fn key(doc: &str, rev: u64) -> Vec<u8> {
    let mut k = prefix(doc);
    k.extend_from_slice(&rev.to_be_bytes());
    k
}

/// The revision in a key, if it has the right shape for `doc`.
fn key_rev(doc: &str, key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(prefix(doc).as_slice())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}
