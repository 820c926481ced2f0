//! Where documents live: the `Store` trait, its record format, and two backends (sled on disk,
//! an ordered map in memory) that share every line of encoding and verification.
//!
//! Layout (see `docs/STORAGE.md`): five key spaces ("trees"): `ops` holds one record per
//! applied op under `doc \0 rev` (rev big-endian, so a document's ops sort by revision),
//! `snapshots` holds snapshots under the same key shape, `meta` holds the format version and
//! the encryption mode, `keys` holds wrapped data keys (see [`crate::keys`]), `audit` holds the
//! audit chain (see [`crate::audit`]). Every op and snapshot value is a versioned record,
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

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use crate::crypto::{CryptoError, MasterKeyring, SEAL_OVERHEAD};
use crate::keys::DataKeys;

use coedit_protocol::{ClientId, Document, DocumentConfig, DocumentSnapshot, Op};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the store layout written by this build (stored in `meta`).
pub const RECORD_FORMAT: u8 = 1;
/// Record format of a plaintext, checksummed record.
const FORMAT_PLAIN: u8 = 1;
/// Record format of a record sealed with SM4-GCM.
const FORMAT_SEALED: u8 = 2;
/// Bytes before the sealed part of a sealed record.
const SEALED_HEADER_LEN: usize = 6;
/// Default of sled's page cache (sled's own default is 1 GiB, which the server would fill under
/// a heavy load); `[storage] cache_mb` overrides it.
pub const SLED_CACHE_BYTES: u64 = 256 * 1024 * 1024;
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
/// Bytes before a record's body.
const HEADER_LEN: usize = 6;
/// Key of the store-wide format version in the `meta` tree.
const META_FORMAT_KEY: &[u8] = b"format";
/// Key of the manifest id in the `meta` tree.
const META_MANIFEST_KEY: &[u8] = b"manifest";
/// Prefix of the master key check values in the `meta` tree (`kcv/` + version u32 BE).
const META_KCV_PREFIX: &[u8] = b"kcv/";

/// A store failure.
#[derive(Debug, Error)]
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
    /// The id of the manifest kept beside the store (see [`crate::manifest`]), if it has one.
    fn manifest_id(&self) -> Result<Option<String>, StoreError>;
    /// Records the manifest's id (buffered).
    fn set_manifest_id(&self, id: &str) -> Result<(), StoreError>;
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

/// Encodes a record: header, then the MessagePack body.
pub fn encode_record<T: Serialize>(kind: u8, body: &T) -> Result<Vec<u8>, StoreError> {
    let body = rmp_serde::to_vec(body).map_err(backend)?;
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    v.push(RECORD_FORMAT);
    v.push(kind);
    v.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    v.extend_from_slice(&body);
    Ok(v)
}

/// Decodes and verifies a record stored under revision `rev` of `doc`.
fn decode_record<T: for<'de> Deserialize<'de>>(
    doc: &str,
    rev: u64,
    kind: u8,
    value: &[u8],
) -> Result<T, StoreError> {
    if value.len() < HEADER_LEN {
        return Err(corrupt(
            doc,
            rev,
            format!("truncated record of {} bytes", value.len()),
        ));
    }
    if value[0] != FORMAT_PLAIN {
        return Err(corrupt(
            doc,
            rev,
            format!("unknown record format {}", value[0]),
        ));
    }
    if value[1] != kind {
        return Err(corrupt(
            doc,
            rev,
            format!("record kind {} where {kind} was expected", value[1]),
        ));
    }
    let crc = u32::from_le_bytes([value[2], value[3], value[4], value[5]]);
    let body = &value[HEADER_LEN..];
    if crc32fast::hash(body) != crc {
        return Err(corrupt(doc, rev, "checksum mismatch"));
    }
    rmp_serde::from_slice(body).map_err(|e| corrupt(doc, rev, format!("undecodable record: {e}")))
}

impl<K: Kv> RecordStore<K> {
    /// Encodes a record for `key` of `doc`: plaintext with a checksum, or sealed under the
    /// document's data key in an encrypted store.
    fn encode<T: Serialize>(
        &self,
        doc: &str,
        key: &[u8],
        kind: u8,
        body: &T,
    ) -> Result<Vec<u8>, StoreError> {
        let Some(keys) = &self.keys else {
            return encode_record(kind, body);
        };
        let plain = zeroize::Zeroizing::new(rmp_serde::to_vec(body).map_err(backend)?);
        let dk = keys.for_writing(&self.kv, doc)?;
        let mut v = Vec::with_capacity(SEALED_HEADER_LEN + plain.len() + SEAL_OVERHEAD);
        v.push(FORMAT_SEALED);
        v.push(kind);
        v.extend_from_slice(&dk.generation.to_be_bytes());
        let aad = [v.as_slice(), key].concat();
        let sealed = dk
            .key
            .seal(&aad, &plain)
            .map_err(|source| StoreError::Crypto {
                doc: doc.to_string(),
                source,
            })?;
        v.extend_from_slice(&sealed);
        Ok(v)
    }

    /// Decodes and verifies (or opens) a record stored under `key`, revision `rev` of `doc`.
    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        doc: &str,
        rev: u64,
        key: &[u8],
        kind: u8,
        value: &[u8],
    ) -> Result<T, StoreError> {
        let Some(keys) = &self.keys else {
            return decode_record(doc, rev, kind, value);
        };
        if let Some(&f) = value.first().filter(|&&f| f != FORMAT_SEALED) {
            return Err(corrupt(
                doc,
                rev,
                format!(
                    "record format {f} in an encrypted store (only sealed records are accepted)"
                ),
            ));
        }
        if value.len() < SEALED_HEADER_LEN + SEAL_OVERHEAD {
            return Err(corrupt(
                doc,
                rev,
                format!("truncated record of {} bytes", value.len()),
            ));
        }
        if value[1] != kind {
            return Err(corrupt(
                doc,
                rev,
                format!("record kind {} where {kind} was expected", value[1]),
            ));
        }
        let generation = u32::from_be_bytes([value[2], value[3], value[4], value[5]]);
        let dk = keys
            .for_reading(&self.kv, doc, generation)
            .map_err(|e| corrupt(doc, rev, e.to_string()))?;
        let (header, sealed) = value.split_at(SEALED_HEADER_LEN);
        let aad = [header, key].concat();
        let plain = zeroize::Zeroizing::new(
            dk.key
                .open("record", &aad, sealed)
                .map_err(|e| corrupt(doc, rev, e.to_string()))?,
        );
        rmp_serde::from_slice(&plain)
            .map_err(|e| corrupt(doc, rev, format!("undecodable record: {e}")))
    }

    fn decode_op(&self, doc: &str, key: &[u8], value: &[u8]) -> Result<LogRecord, StoreError> {
        let rev = key_rev(doc, key).ok_or_else(|| corrupt(doc, 0, "malformed op key"))?;
        let r: LogRecord = self.decode(doc, rev, key, KIND_OP, value)?;
        if r.rev != rev {
            return Err(corrupt(doc, rev, format!("record says revision {}", r.rev)));
        }
        Ok(r)
    }

    fn decode_snapshot(
        &self,
        doc: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<DocumentSnapshot, StoreError> {
        let rev = key_rev(doc, key).ok_or_else(|| corrupt(doc, 0, "malformed snapshot key"))?;
        let s: DocumentSnapshot = self.decode(doc, rev, key, KIND_SNAPSHOT, value)?;
        if s.rev != rev {
            return Err(corrupt(
                doc,
                rev,
                format!("snapshot says revision {}", s.rev),
            ));
        }
        Ok(s)
    }
}

/// Checks that `ops` continue `after` without gaps.
fn check_contiguous(doc: &str, after: u64, ops: &[LogRecord]) -> Result<(), StoreError> {
    for (i, r) in ops.iter().enumerate() {
        let want = after + 1 + i as u64;
        if r.rev != want {
            return Err(corrupt(
                doc,
                want,
                format!("missing op (next stored is {})", r.rev),
            ));
        }
    }
    Ok(())
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The key spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    /// The op log.
    Ops,
    /// Snapshots.
    Snapshots,
    /// Store-wide metadata.
    Meta,
    /// Wrapped data keys.
    Keys,
    /// The audit chain.
    Audit,
}

/// Number of key spaces.
const TREES: usize = 5;

/// An ordered key-value backend.
pub trait Kv: Send + Sync + 'static {
    /// Writes a value (buffered).
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Reads a value.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes keys in `[from, to)`.
    fn delete_range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<(), StoreError>;
    /// Pairs with keys in `[from, to)`, ascending.
    fn range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, StoreError>;
    /// The first pairs with keys in `[from, to)`, ascending: at most `max_count`, stopping
    /// after the pair that brings the values read to `max_bytes` or more.
    fn range_bounded(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pair>, StoreError>;
    /// The first pair with a key in `[from, to)`.
    fn first_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// The first key in `[from, to)` (its value not read or copied).
    fn first_key_in(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// The last pair with a key in `[from, to)`.
    fn last_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// Every key of a tree (for listing documents).
    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Makes every write durable.
    fn flush(&self) -> Result<(), StoreError>;
}

/// The `Store` over any ordered key-value backend.
pub struct RecordStore<K: Kv> {
    kv: K,
    /// Data keys, in an encrypted store.
    keys: Option<DataKeys>,
}

/// The on-disk store.
pub type SledStore = RecordStore<SledKv>;
/// The in-memory store (tests, trials): same format, no persistence.
pub type MemoryStore = RecordStore<MemKv>;

impl MemoryStore {
    /// An empty in-memory store.
    pub fn new() -> Self {
        RecordStore {
            kv: MemKv::default(),
            keys: None,
        }
    }

    /// An empty in-memory store that seals records under data keys wrapped by `ring`.
    pub fn encrypted(ring: MasterKeyring) -> Self {
        RecordStore {
            kv: MemKv::default(),
            keys: Some(DataKeys::new(ring)),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl SledStore {
    /// Opens (or creates) an unencrypted store in `dir`, checking its format version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, None)
    }

    /// Opens (or creates) the store in `dir`; with a master key ring, an encrypted one. An
    /// encrypted store refuses to open without keys, and encryption cannot be switched on for
    /// a store that already holds plaintext documents.
    pub fn open_with(dir: &Path, ring: Option<MasterKeyring>) -> Result<Self, StoreError> {
        Self::open_cached(dir, ring, SLED_CACHE_BYTES)
    }

    /// [`SledStore::open_with`] with a page cache of `cache_bytes` instead of
    /// [`SLED_CACHE_BYTES`].
    pub fn open_cached(
        dir: &Path,
        ring: Option<MasterKeyring>,
        cache_bytes: u64,
    ) -> Result<Self, StoreError> {
        let db = open_sled(dir, Some(cache_bytes))?;
        let kv = SledKv::new(db)?;
        let store = RecordStore {
            kv,
            keys: ring.map(DataKeys::new),
        };
        store.check_format()?;
        store.check_crypto_mode()?;
        Ok(store)
    }
}

/// How long an open waits for another holder of the data directory's lock to let go (the same
/// process reopening a store it just closed: sled's threads release it a moment later).
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled with its background flusher off (coedit flushes itself), waiting up to
/// [`LOCK_WAIT`] for the directory's lock; a lock held longer is named as another process.
fn open_sled(dir: &Path, cache_bytes: Option<u64>) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let mut config = sled::Config::new().path(dir).flush_every_ms(None);
        if let Some(bytes) = cache_bytes {
            config = config.cache_capacity(bytes);
        }
        match config.open() {
            Ok(db) => return Ok(db),
            // sled reports a held lock as an `Other` error with this text.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() > LOCK_WAIT {
                    return Err(StoreError::Config(format!(
                        "another process (a running coedit?) is using the data directory {}",
                        dir.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

impl SledStore {
    /// Opens the store in `dir` to read its audit log only (no keys needed, whatever the
    /// encryption mode). Used by `coedit audit`; never write documents through it.
    pub fn open_audit_reader(dir: &Path) -> Result<Self, StoreError> {
        if !dir.join("db").exists() && !dir.join("conf").exists() {
            return Err(StoreError::Config(format!("no store in {}", dir.display())));
        }
        let db = open_sled(dir, None)?;
        let store = RecordStore {
            kv: SledKv::new(db)?,
            keys: None,
        };
        store.check_format()?;
        Ok(store)
    }
}

impl<K: Kv> RecordStore<K> {
    fn check_format(&self) -> Result<(), StoreError> {
        let store = self;
        match store.kv.get(Tree::Meta, META_FORMAT_KEY)? {
            Some(v) if v.as_slice() == [RECORD_FORMAT] => {}
            Some(v) => {
                return Err(StoreError::Format {
                    found: v.first().copied().unwrap_or(0),
                })
            }
            None => {
                store
                    .kv
                    .put(Tree::Meta, META_FORMAT_KEY, &[RECORD_FORMAT])?;
                store.kv.flush()?;
            }
        }
        Ok(())
    }

    /// Records the encryption mode of a new store; refuses a mode that does not match.
    fn check_crypto_mode(&self) -> Result<(), StoreError> {
        let want = if self.keys.is_some() {
            CRYPTO_SM4_GCM
        } else {
            CRYPTO_NONE
        };
        let found = self.kv.get(Tree::Meta, META_CRYPTO_KEY)?;
        let has_docs = || -> Result<bool, StoreError> {
            Ok(self.kv.first_in(Tree::Ops, &[], PAST_ALL_DOCS)?.is_some()
                || self
                    .kv
                    .first_in(Tree::Snapshots, &[], PAST_ALL_DOCS)?
                    .is_some())
        };
        match found.as_deref() {
            Some(f) if f == want => {}
            Some(CRYPTO_SM4_GCM) => {
                return Err(StoreError::Config(
                    "the store is encrypted (SM4-GCM): configure [crypto] mode = \"sm\" and the \
                     master key"
                        .into(),
                ))
            }
            Some(_) | None if self.keys.is_some() && has_docs()? => {
                return Err(StoreError::Config(
                    "the store holds unencrypted documents; encryption can only be enabled for \
                     a new data directory"
                        .into(),
                ))
            }
            _ => self.kv.put(Tree::Meta, META_CRYPTO_KEY, want)?,
        }
        if let Some(keys) = &self.keys {
            self.check_master_keys(&keys.ring_snapshot())?;
        }
        self.kv.flush()
    }

    /// Checks every version of `ring` against the key check value the store recorded for it
    /// (refusing a key file whose version N is another key than the one the store knows as
    /// N), and records the check values of versions seen for the first time (buffered). A
    /// store written before check values existed proves a version by unwrapping one data key
    /// wrapped with it.
    pub fn check_master_keys(&self, ring: &MasterKeyring) -> Result<(), StoreError> {
        let keys = self.keys.as_ref();
        for version in ring.versions() {
            let Some(kcv) = ring.check_value(version) else {
                continue;
            };
            let mut key = META_KCV_PREFIX.to_vec();
            key.extend_from_slice(&version.to_be_bytes());
            match self.kv.get(Tree::Meta, &key)? {
                Some(stored) if stored.as_slice() == kcv.as_slice() => continue,
                Some(stored) => {
                    return Err(StoreError::Config(format!(
                        "master key version {version} (check value {}) is not the key this \
                         store was encrypted with (its version {version} has check value {}): \
                         wrong key file or COEDIT_MASTER_KEY?",
                        hex::encode(kcv),
                        hex::encode(stored)
                    )))
                }
                None => {
                    if let Some(keys) = keys {
                        keys.prove_master_version(&self.kv, ring, version)?;
                    }
                    self.kv.put(Tree::Meta, &key, &kcv)?;
                }
            }
        }
        Ok(())
    }
}

impl<K: Kv> RecordStore<K> {
    /// The backend.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    fn end(doc: &str) -> Vec<u8> {
        let mut k = prefix(doc);
        k.extend_from_slice(&[0xff; 9]);
        k
    }

    fn latest_snapshot(
        &self,
        doc: &str,
        at_most: u64,
    ) -> Result<Option<DocumentSnapshot>, StoreError> {
        let to = key(doc, at_most.saturating_add(1));
        let to = if at_most == u64::MAX {
            Self::end(doc)
        } else {
            to
        };
        match self.kv.last_in(Tree::Snapshots, &prefix(doc), &to)? {
            Some((k, v)) => Ok(Some(self.decode_snapshot(doc, &k, &v)?)),
            None => Ok(None),
        }
    }
}

impl<K: Kv> Store for RecordStore<K> {
    fn load(&self, doc: &str) -> Result<StoredDoc, StoreError> {
        let snapshot = self.latest_snapshot(doc, u64::MAX)?;
        let after = snapshot.as_ref().map_or(0, |s| s.rev);
        let ops = self.ops(doc, after, u64::MAX)?;
        Ok(StoredDoc { snapshot, ops })
    }

    fn append(&self, doc: &str, records: &[LogRecord]) -> Result<(), StoreError> {
        for r in records {
            let k = key(doc, r.rev);
            self.kv
                .put(Tree::Ops, &k, &self.encode(doc, &k, KIND_OP, r)?)?;
        }
        Ok(())
    }

    fn put_snapshot(&self, doc: &str, snapshot: &DocumentSnapshot) -> Result<(), StoreError> {
        let k = key(doc, snapshot.rev);
        let v = self.encode(doc, &k, KIND_SNAPSHOT, snapshot)?;
        self.kv.put(Tree::Snapshots, &k, &v)
    }

    fn compact(&self, doc: &str, rev: u64) -> Result<(), StoreError> {
        let Some(keep) = self.latest_snapshot(doc, rev)? else {
            return Ok(());
        };
        self.kv
            .delete_range(Tree::Snapshots, &prefix(doc), &key(doc, keep.rev))?;
        self.kv
            .delete_range(Tree::Ops, &prefix(doc), &key(doc, keep.rev.min(rev) + 1))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.kv.flush()
    }

    fn versions(&self, doc: &str) -> Result<Versions, StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        let snapshots: Vec<u64> = self
            .kv
            .range(Tree::Snapshots, &p, &end)?
            .iter()
            .filter_map(|(k, _)| key_rev(doc, k))
            .collect();
        let first_op = self.first_op_rev(doc)?;
        let last_op = match self.kv.last_in(Tree::Ops, &p, &end)? {
            Some((k, _)) => key_rev(doc, &k).unwrap_or(0),
            None => 0,
        };
        let last_rev = last_op.max(snapshots.last().copied().unwrap_or(0));
        Ok(Versions {
            snapshots,
            first_op,
            last_rev,
        })
    }

    fn ops(&self, doc: &str, from: u64, to: u64) -> Result<Vec<LogRecord>, StoreError> {
        let end = if to == u64::MAX {
            Self::end(doc)
        } else {
            key(doc, to + 1)
        };
        let ops = self
            .kv
            .range(Tree::Ops, &key(doc, from.saturating_add(1)), &end)?
            .iter()
            .map(|(k, v)| self.decode_op(doc, k, v))
            .collect::<Result<Vec<_>, _>>()?;
        check_contiguous(doc, from, &ops)?;
        Ok(ops)
    }

    fn ops_page(
        &self,
        doc: &str,
        from: u64,
        to: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let end = if to == u64::MAX {
            Self::end(doc)
        } else {
            key(doc, to.saturating_add(1))
        };
        let ops = self
            .kv
            .range_bounded(
                Tree::Ops,
                &key(doc, from.saturating_add(1)),
                &end,
                max_count.max(1),
                max_bytes,
            )?
            .iter()
            .map(|(k, v)| self.decode_op(doc, k, v))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = ops.first() {
            check_contiguous(doc, first.rev - 1, &ops)?;
        }
        Ok(ops)
    }

    fn first_op(&self, doc: &str) -> Result<Option<u64>, StoreError> {
        self.first_op_rev(doc)
    }

    fn text_at(&self, doc: &str, rev: u64) -> Result<Option<String>, StoreError> {
        let snapshot = self.latest_snapshot(doc, rev)?;
        let base = snapshot.as_ref().map_or(0, |s| s.rev);
        let ops = self.ops(doc, base, rev)?;
        if base + ops.len() as u64 != rev {
            return Ok(None);
        }
        let mut text = snapshot.map(|s| s.text).unwrap_or_default();
        for r in ops {
            text =
                r.op.apply_str(&text)
                    .map_err(|e| corrupt(doc, r.rev, format!("op does not replay: {e}")))?;
        }
        Ok(Some(text))
    }

    fn list_documents(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // Keys are `doc \0 rev`: every key of `doc` sorts before `doc \1`, and document ids
        // never hold 0x00, 0x01 or 0xff.
        let mut from = prefix.as_bytes().to_vec();
        if let Some(a) = after {
            let mut past = a.as_bytes().to_vec();
            past.push(1);
            from = from.max(past);
        }
        let mut to = prefix.as_bytes().to_vec();
        to.push(0xff);
        let mut out = Vec::new();
        while out.len() < limit && from < to {
            let mut next: Option<Vec<u8>> = None;
            for tree in [Tree::Ops, Tree::Snapshots] {
                if let Some(k) = self.kv.first_key_in(tree, &from, &to)? {
                    let doc = k.split(|&b| b == 0).next().unwrap_or_default().to_vec();
                    if next.as_ref().is_none_or(|n| doc < *n) {
                        next = Some(doc);
                    }
                }
            }
            let Some(doc) = next else { break };
            from = doc.clone();
            from.push(1);
            out.push(String::from_utf8_lossy(&doc).into_owned());
        }
        Ok(out)
    }

    fn documents(&self) -> Result<Vec<String>, StoreError> {
        let mut docs = std::collections::BTreeSet::new();
        for tree in [Tree::Ops, Tree::Snapshots] {
            for k in self.kv.keys(tree)? {
                if let Some(i) = k.iter().position(|&b| b == 0) {
                    docs.insert(String::from_utf8_lossy(&k[..i]).into_owned());
                }
            }
        }
        Ok(docs.into_iter().collect())
    }

    fn delete(&self, doc: &str) -> Result<(), StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        if let Some(keys) = &self.keys {
            keys.destroy(&self.kv, doc)?;
        }
        self.kv.delete_range(Tree::Ops, &p, &end)?;
        self.kv.delete_range(Tree::Snapshots, &p, &end)
    }

    fn encrypted(&self) -> bool {
        self.keys.is_some()
    }

    fn check_readable(&self) -> Result<(), StoreError> {
        self.kv.get(Tree::Meta, META_FORMAT_KEY).map(|_| ())
    }

    fn rotate_master_key(&self, ring: MasterKeyring) -> Result<usize, StoreError> {
        match &self.keys {
            Some(keys) => {
                self.check_master_keys(&ring)?;
                keys.rewrap_all(&self.kv, ring)
            }
            None => Err(StoreError::Config(
                "the store is not encrypted: there are no data keys to re-wrap".into(),
            )),
        }
    }

    fn audit_put(&self, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.kv.put(Tree::Audit, &seq.to_be_bytes(), value)
    }

    fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .kv
            .last_in(Tree::Audit, &[], &[0xff; 9])?
            .map(|(k, v)| (audit_seq(&k), v)))
    }

    fn audit_all(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .kv
            .range(Tree::Audit, &[], &[0xff; 9])?
            .into_iter()
            .map(|(k, v)| (audit_seq(&k), v))
            .collect())
    }

    fn last_rev(&self, doc: &str) -> Result<u64, StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        let mut last = 0;
        for tree in [Tree::Ops, Tree::Snapshots] {
            if let Some((k, _)) = self.kv.last_in(tree, &p, &end)? {
                last = last.max(key_rev(doc, &k).unwrap_or(0));
            }
        }
        Ok(last)
    }

    fn manifest_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .kv
            .get(Tree::Meta, META_MANIFEST_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_manifest_id(&self, id: &str) -> Result<(), StoreError> {
        self.kv.put(Tree::Meta, META_MANIFEST_KEY, id.as_bytes())
    }
}

/// The sequence number in an audit key (`u64::MAX` for a malformed key, which the verifier
/// then reports as out of order).
fn audit_seq(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

impl<K: Kv> RecordStore<K> {
    fn first_op_rev(&self, doc: &str) -> Result<Option<u64>, StoreError> {
        let (p, end) = (prefix(doc), Self::end(doc));
        Ok(self
            .kv
            .first_in(Tree::Ops, &p, &end)?
            .and_then(|(k, _)| key_rev(doc, &k)))
    }
}

/// Verifies a whole document offline: every record decodes, revisions are contiguous from the
/// oldest retained point, every op replays, and every snapshot equals the replay at its
/// revision. Returns the number of ops and snapshots checked.
pub fn check_document<K: Kv>(
    store: &RecordStore<K>,
    doc: &str,
) -> Result<(usize, usize), StoreError> {
    let (p, end) = (prefix(doc), RecordStore::<K>::end(doc));
    let snapshots = store
        .kv
        .range(Tree::Snapshots, &p, &end)?
        .iter()
        .map(|(k, v)| store.decode_snapshot(doc, k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let first_op = store.first_op_rev(doc)?.unwrap_or(1);
    // Replay starts at the snapshot just before the first retained op (or from empty).
    let start = snapshots
        .iter()
        .rev()
        .find(|s| s.rev + 1 >= first_op && s.rev < first_op)
        .cloned();
    let base = match &start {
        Some(s) => s.rev,
        None if first_op == 1 => 0,
        None => {
            return Err(corrupt(
                doc,
                first_op,
                "no snapshot before the first retained op",
            ))
        }
    };
    let ops = store.ops(doc, base, u64::MAX)?;
    let mut text = start.map(|s| s.text).unwrap_or_default();
    let mut rev = base;
    let by_rev: BTreeMap<u64, &DocumentSnapshot> = snapshots.iter().map(|s| (s.rev, s)).collect();
    for r in &ops {
        text =
            r.op.apply_str(&text)
                .map_err(|e| corrupt(doc, r.rev, format!("op does not replay: {e}")))?;
        rev = r.rev;
        if let Some(s) = by_rev.get(&rev) {
            if s.text != text {
                return Err(corrupt(
                    doc,
                    rev,
                    "snapshot differs from the replay of the log",
                ));
            }
        }
    }
    if let Some((&last, _)) = by_rev.iter().next_back() {
        if last > rev {
            return Err(corrupt(
                doc,
                rev + 1,
                format!("snapshot at {last} is past the last op"),
            ));
        }
    }
    Ok((ops.len(), snapshots.len()))
}

/// In-memory backend: ordered maps behind a mutex.
#[derive(Default)]
pub struct MemKv {
    trees: Mutex<[BTreeMap<Vec<u8>, Vec<u8>>; TREES]>,
}

fn tree_index(t: Tree) -> usize {
    match t {
        Tree::Ops => 0,
        Tree::Snapshots => 1,
        Tree::Meta => 2,
        Tree::Keys => 3,
        Tree::Audit => 4,
    }
}

impl MemKv {
    fn with<R>(
        &self,
        t: Tree,
        f: impl FnOnce(&mut BTreeMap<Vec<u8>, Vec<u8>>) -> R,
    ) -> Result<R, StoreError> {
        let mut trees = self.trees.lock().map_err(backend)?;
        Ok(f(&mut trees[tree_index(t)]))
    }

    /// Overwrites a raw value (for corruption tests).
    pub fn put_raw(&self, t: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.with(t, |m| {
            m.insert(key.to_vec(), value.to_vec());
        })
    }
}

impl Kv for MemKv {
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put_raw(tree, key, value)
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(tree, |m| m.get(key).cloned())
    }

    fn delete_range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        self.with(tree, |m| {
            let keys: Vec<Vec<u8>> = m
                .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                m.remove(&k);
            }
        })
    }

    fn range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.with(tree, |m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn range_bounded(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        self.with(tree, |m| {
            let mut bytes = 0;
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .take(max_count)
                .take_while(|(_, v)| {
                    let go = bytes < max_bytes;
                    bytes += v.len();
                    go
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn first_key_in(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(tree, |m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .next()
                .map(|(k, _)| k.clone())
        })
    }

    fn first_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.with(tree, |m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .next()
                .map(|(k, v)| (k.clone(), v.clone()))
        })
    }

    fn last_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.with(tree, |m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
                .next_back()
                .map(|(k, v)| (k.clone(), v.clone()))
        })
    }

    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(tree, |m| m.keys().cloned().collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// sled backend: one sled tree per key space.
pub struct SledKv {
    db: sled::Db,
    trees: [sled::Tree; TREES],
}

impl SledKv {
    fn new(db: sled::Db) -> Result<Self, StoreError> {
        let trees = [
            db.open_tree("ops").map_err(backend)?,
            db.open_tree("snapshots").map_err(backend)?,
            db.open_tree("meta").map_err(backend)?,
            db.open_tree("keys").map_err(backend)?,
            db.open_tree("audit").map_err(backend)?,
        ];
        Ok(SledKv { db, trees })
    }

    fn tree(&self, t: Tree) -> &sled::Tree {
        &self.trees[tree_index(t)]
    }

    /// Overwrites a raw value (for corruption tests and repair tools).
    pub fn put_raw(&self, t: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(t).insert(key, value).map_err(backend)?;
        Ok(())
    }
}

impl Kv for SledKv {
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put_raw(tree, key, value)
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn delete_range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        let t = self.tree(tree);
        for item in t.range(from..to) {
            let (k, _) = item.map_err(backend)?;
            t.remove(k).map_err(backend)?;
        }
        Ok(())
    }

    fn range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.tree(tree)
            .range(from..to)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn range_bounded(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in self.tree(tree).range(from..to).take(max_count) {
            if bytes >= max_bytes {
                break;
            }
            let (k, v) = r.map_err(backend)?;
            bytes += v.len();
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn first_key_in(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.tree(tree).range(from..to).next() {
            Some(r) => Ok(Some(r.map_err(backend)?.0.to_vec())),
            None => Ok(None),
        }
    }

    fn first_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        match self.tree(tree).range(from..to).next() {
            Some(r) => {
                let (k, v) = r.map_err(backend)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn last_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        match self.tree(tree).range(from..to).next_back() {
            Some(r) => {
                let (k, v) = r.map_err(backend)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree(tree)
            .iter()
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(backend))
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(rev: u64, op: Op) -> LogRecord {
        LogRecord {
            rev,
            client: "c".into(),
            seq: rev,
            op,
        }
    }

    /// Paged listing over both trees: a document with only a snapshot counts, prefixes and
    /// cursors bound the pages, a cursor past the prefix's range is an empty page.
    fn list_documents_in_pages<K: Kv>(s: &RecordStore<K>) {
        for (doc, n) in [("acme:a", 2), ("acme:a-b", 1), ("acme:b", 1), ("zeta:q", 1)] {
            let recs: Vec<_> = (1..=n).map(|r| rec(r, Op::insert_at(0, "x"))).collect();
            s.append(doc, &recs).unwrap();
        }
        let snap = DocumentSnapshot {
            rev: 0,
            text: String::new(),
            clients: vec![],
        };
        s.put_snapshot("acme:snap-only", &snap).unwrap();
        let all = s.list_documents("acme:", None, 100).unwrap();
        assert_eq!(all, ["acme:a", "acme:a-b", "acme:b", "acme:snap-only"]);
        let first = s.list_documents("acme:", None, 2).unwrap();
        assert_eq!(first, ["acme:a", "acme:a-b"]);
        let rest = s.list_documents("acme:", Some("acme:a-b"), 2).unwrap();
        assert_eq!(rest, ["acme:b", "acme:snap-only"]);
        assert!(s
            .list_documents("acme:", Some("zzz"), 2)
            .unwrap()
            .is_empty());
        assert_eq!(s.list_documents("acme:a", None, 9).unwrap().len(), 2);
        let every = s.list_documents("", None, 100).unwrap();
        assert_eq!(every.len(), 5, "{every:?}");
    }

    #[test]
    fn documents_are_listed_in_pages() {
        list_documents_in_pages(&MemoryStore::new());
        let dir = tempfile::tempdir().unwrap();
        list_documents_in_pages(&SledStore::open(dir.path()).unwrap());
    }

    fn fill<K: Kv>(s: &RecordStore<K>) {
        s.append(
            "d",
            &[
                rec(1, Op::insert_at(0, "ab")),
                rec(2, Op::insert_at(2, "c")),
            ],
        )
        .unwrap();
        s.put_snapshot(
            "d",
            &DocumentSnapshot {
                rev: 2,
                text: "abc".into(),
                clients: vec![("c".into(), 2, 2)],
            },
        )
        .unwrap();
        s.append(
            "d",
            &[rec(3, Op::delete_at(0, 1)), rec(4, Op::insert_at(0, "中"))],
        )
        .unwrap();
        s.append("other", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
    }

    fn exercise<K: Kv>(s: RecordStore<K>) {
        fill(&s);
        let loaded = s.load("d").unwrap();
        assert_eq!(loaded.snapshot.as_ref().map(|s| s.rev), Some(2));
        assert_eq!(
            loaded.ops.iter().map(|r| r.rev).collect::<Vec<_>>(),
            vec![3, 4]
        );
        let doc = loaded
            .into_document("d", DocumentConfig::default())
            .unwrap();
        assert_eq!((doc.text(), doc.rev()), ("中bc".to_string(), 4));
        assert_eq!(s.text_at("d", 1).unwrap().as_deref(), Some("ab"));
        assert_eq!(s.text_at("d", 3).unwrap().as_deref(), Some("bc"));
        assert_eq!(s.text_at("d", 9).unwrap(), None);
        assert_eq!(
            s.versions("d").unwrap(),
            Versions {
                snapshots: vec![2],
                first_op: Some(1),
                last_rev: 4
            }
        );
        assert_eq!(check_document(&s, "d").unwrap(), (4, 1));
        assert_eq!(
            s.documents().unwrap(),
            vec!["d".to_string(), "other".to_string()]
        );
        assert!(s.load("none").unwrap().is_empty());
        // Compaction keeps the snapshot at 2 and the ops after it.
        s.compact("d", 3).unwrap();
        assert_eq!(s.versions("d").unwrap().first_op, Some(3));
        assert_eq!(s.text_at("d", 1).unwrap(), None);
        assert_eq!(s.text_at("d", 2).unwrap().as_deref(), Some("abc"));
        assert_eq!(check_document(&s, "d").unwrap(), (2, 1));
        s.delete("d").unwrap();
        assert!(s.load("d").unwrap().is_empty());
        s.flush().unwrap();
    }

    #[test]
    fn memory_store_round_trip() {
        exercise(MemoryStore::new());
    }

    #[test]
    fn sled_store_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        exercise(SledStore::open(dir.path()).unwrap());
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.documents().unwrap(), vec!["other".to_string()]);
    }

    #[test]
    fn corruption_is_detected_and_named() {
        let s = MemoryStore::new();
        fill(&s);
        let good = s.kv().get(Tree::Ops, &key("d", 3)).unwrap().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                {
                    let mut b = good.clone();
                    let n = b.len();
                    b[n - 1] ^= 1;
                    b
                },
                "checksum",
            ),
            (good[..4].to_vec(), "truncated"),
            (
                {
                    let mut b = good.clone();
                    b[0] = 9;
                    b
                },
                "format",
            ),
            (
                encode_record(KIND_OP, &rec(7, Op::noop())).unwrap(),
                "says revision 7",
            ),
        ];
        for (bad, why) in cases {
            s.kv().put_raw(Tree::Ops, &key("d", 3), &bad).unwrap();
            match s.load("d") {
                Err(StoreError::Corrupt { doc, rev, reason }) => {
                    assert_eq!((doc.as_str(), rev), ("d", 3));
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{why}: {other:?}"),
            }
            assert!(check_document(&s, "d").is_err());
        }
        // A gap in revisions.
        s.kv().put_raw(Tree::Ops, &key("d", 3), &good).unwrap();
        s.kv()
            .delete_range(Tree::Ops, &key("d", 3), &key("d", 4))
            .unwrap();
        assert!(matches!(
            s.load("d"),
            Err(StoreError::Corrupt { rev: 3, .. })
        ));
        // An op that does not replay.
        s.kv()
            .put_raw(
                Tree::Ops,
                &key("d", 3),
                &encode_record(KIND_OP, &rec(3, Op::delete_at(0, 50))).unwrap(),
            )
            .unwrap();
        let err = s
            .load("d")
            .unwrap()
            .into_document("d", DocumentConfig::default())
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { rev: 3, .. }));
    }

    #[test]
    fn encrypted_stores_round_trip() {
        exercise(MemoryStore::encrypted(MasterKeyring::generate().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let ring = MasterKeyring::generate().unwrap();
        exercise(SledStore::open_with(dir.path(), Some(ring.clone())).unwrap());
        let s = SledStore::open_with(dir.path(), Some(ring)).unwrap();
        assert_eq!(s.load("other").unwrap().ops.len(), 1);
        assert!(s.encrypted());
    }

    #[test]
    fn encryption_mode_is_fixed_per_store() {
        let dir = tempfile::tempdir().unwrap();
        let ring = MasterKeyring::generate().unwrap();
        drop(SledStore::open_with(dir.path(), Some(ring.clone())).unwrap());
        let e = SledStore::open(dir.path()).err().expect("needs the key");
        assert!(e.to_string().contains("encrypted"), "{e}");
        // The wrong master key is refused at open (see the key check value test).
        let other = MasterKeyring::generate().unwrap();
        assert!(SledStore::open_with(dir.path(), Some(other)).is_err());
        // A data key that does not unwrap (its wrapped bytes altered) refuses the document.
        let s = SledStore::open_with(dir.path(), Some(ring.clone())).unwrap();
        s.append("d", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
        let mut wrapped = s.kv().get(Tree::Keys, b"d").unwrap().unwrap();
        let n = wrapped.len();
        wrapped[n - 1] ^= 1;
        s.kv().put_raw(Tree::Keys, b"d", &wrapped).unwrap();
        s.flush().unwrap();
        drop(s);
        let s = SledStore::open_with(dir.path(), Some(ring)).unwrap();
        assert!(matches!(
            s.load("d"),
            Err(StoreError::Corrupt { rev: 1, .. })
        ));
        let plain = tempfile::tempdir().unwrap();
        let s = SledStore::open(plain.path()).unwrap();
        fill(&s);
        drop(s);
        let e = SledStore::open_with(plain.path(), Some(MasterKeyring::generate().unwrap()))
            .err()
            .expect("plaintext documents exist");
        assert!(e.to_string().contains("unencrypted"), "{e}");
    }

    #[test]
    fn a_master_key_ring_with_another_key_under_a_known_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ring = MasterKeyring::generate().unwrap();
        let s = SledStore::open_with(dir.path(), Some(ring.clone())).unwrap();
        s.append("d", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
        s.flush().unwrap();
        drop(s);
        // Another key, also numbered 1: refused at open, nothing written under it.
        let wrong = MasterKeyring::generate().unwrap();
        let e = SledStore::open_with(dir.path(), Some(wrong.clone()))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("not the key"), "{e}");
        // A store written before check values existed: the data keys prove the version.
        let s = SledStore::open_with(dir.path(), Some(ring.clone())).unwrap();
        let mut kcv = META_KCV_PREFIX.to_vec();
        kcv.extend_from_slice(&1u32.to_be_bytes());
        s.kv()
            .delete_range(Tree::Meta, &kcv, &[kcv.as_slice(), &[0]].concat())
            .unwrap();
        s.flush().unwrap();
        drop(s);
        let e = SledStore::open_with(dir.path(), Some(wrong))
            .err()
            .expect("refused by the data key");
        assert!(e.to_string().contains("does not open"), "{e}");
        let s = SledStore::open_with(dir.path(), Some(ring)).unwrap();
        assert_eq!(s.load("d").unwrap().ops.len(), 1);
        assert!(
            s.kv().get(Tree::Meta, &kcv).unwrap().is_some(),
            "recorded again"
        );
    }

    #[test]
    fn sealed_records_are_opaque_and_tamper_evident() {
        let s = MemoryStore::encrypted(MasterKeyring::generate().unwrap());
        fill(&s);
        let good = s.kv().get(Tree::Ops, &key("d", 3)).unwrap().unwrap();
        assert_eq!(good[0], FORMAT_SEALED);
        let snap = s.kv().get(Tree::Snapshots, &key("d", 2)).unwrap().unwrap();
        assert!(
            !snap.windows(3).any(|w| w == b"abc"),
            "snapshot text in the clear"
        );
        let four = s.kv().get(Tree::Ops, &key("d", 4)).unwrap().unwrap();
        assert!(!four.windows(3).any(|w| w == "中".as_bytes()));
        let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
        for i in [1, 3, 7, good.len() / 2, good.len() - 1] {
            let mut b = good.clone();
            b[i] ^= 0x10;
            cases.push((b, if i == 1 { "kind" } else { "" }));
        }
        cases.push((good[..20].to_vec(), "truncated"));
        cases.push((
            encode_record(KIND_OP, &rec(3, Op::noop())).unwrap(),
            "only sealed",
        ));
        cases.push((four.clone(), "authentication failed"));
        for (bad, why) in cases {
            s.kv().put_raw(Tree::Ops, &key("d", 3), &bad).unwrap();
            match s.load("d") {
                Err(StoreError::Corrupt { doc, rev, reason }) => {
                    assert_eq!((doc.as_str(), rev), ("d", 3));
                    assert!(reason.contains(why), "{why}: {reason}");
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        s.kv().put_raw(Tree::Ops, &key("d", 3), &good).unwrap();
        assert_eq!(s.load("d").unwrap().ops.len(), 2);
        // A wrapped key with a flipped bit does not unwrap (fresh store: no cached key).
        let t = MemoryStore::encrypted(MasterKeyring::generate().unwrap());
        t.append("k", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
        let mut wrapped = t.kv().get(Tree::Keys, b"k").unwrap().unwrap();
        let n = wrapped.len();
        wrapped[n - 1] ^= 1;
        t.kv().put_raw(Tree::Keys, b"k", &wrapped).unwrap();
        t.keys.as_ref().unwrap().forget_cached();
        match t.load("k") {
            Err(StoreError::Corrupt { reason, .. }) => {
                assert!(reason.contains("wrapped data key"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deleting_a_document_shreds_its_key() {
        let s = MemoryStore::encrypted(MasterKeyring::generate().unwrap());
        fill(&s);
        let old = s.kv().get(Tree::Ops, &key("d", 3)).unwrap().unwrap();
        s.delete("d").unwrap();
        assert!(s.load("d").unwrap().is_empty());
        // The same bytes put back (a copy from a backup or a freed block) no longer open.
        s.kv().put_raw(Tree::Ops, &key("d", 3), &old).unwrap();
        match s.ops("d", 2, 3) {
            Err(StoreError::Corrupt { reason, .. }) => {
                assert!(reason.contains("destroyed"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        s.delete("d").unwrap();
        // A re-created document gets a new key generation.
        s.append("d", &[rec(1, Op::insert_at(0, "new"))]).unwrap();
        let keys = DataKeys::list(s.kv()).unwrap();
        assert!(keys.contains(&("d".to_string(), 2, 1)), "{keys:?}");
        s.kv().put_raw(Tree::Ops, &key("d", 3), &old).unwrap();
        assert!(s.ops("d", 2, 3).is_err());
    }

    #[test]
    fn master_key_rotation_rewraps_without_rewriting_data() {
        let mut ring = MasterKeyring::generate().unwrap();
        let s = MemoryStore::encrypted(ring.clone());
        fill(&s);
        let ops_before = s.kv().range(Tree::Ops, &[], PAST_ALL_DOCS).unwrap();
        ring.add_version().unwrap();
        assert_eq!(s.rotate_master_key(ring.clone()).unwrap(), 2);
        assert_eq!(
            s.kv().range(Tree::Ops, &[], PAST_ALL_DOCS).unwrap(),
            ops_before
        );
        for (_, _, master) in DataKeys::list(s.kv()).unwrap() {
            assert_eq!(master, 2);
        }
        // Only the new version is needed from now on.
        ring.retire_old();
        s.keys.as_ref().unwrap().forget_cached();
        s.rotate_master_key(ring).unwrap();
        s.keys.as_ref().unwrap().forget_cached();
        assert_eq!(s.load("other").unwrap().ops.len(), 1);
        assert!(MemoryStore::new()
            .rotate_master_key(MasterKeyring::generate().unwrap())
            .is_err());
    }
}
