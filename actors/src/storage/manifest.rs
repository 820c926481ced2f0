//! The manifest: a durable record, kept outside sled, of what the store has acknowledged: for
//! every document the highest revision made durable, and the length of the audit chain. sled
//! 0.34's recovery stops silently at the first damaged log entry (a flipped byte once made the
//! server serve a 300-op document at revision 0), so coedit compares what sled returns with
//! the manifest: a document that lost acknowledged revisions is refused, naming them, never
//! served rolled back; a shortened audit chain stops the server from continuing it.
//!
//! File `manifest` in the data directory, an append-only sequence of records:
//! `[magic "CM" (2 bytes)][payload length u32 LE][file offset of this record u64 LE]
//! [CRC-32 of the previous 12 bytes and the payload, u32 LE][payload: MessagePack, named]`.
//! The first record is a [`Entry::Base`] (the whole state when the file was written); then one
//! [`Entry::Flush`] per store flush (the documents it made durable, with their revisions, and
//! the audit chain length) and one [`Entry::Delete`] per document deletion. The file is
//! rewritten as a single `Base` (temp file, fsync, rename, fsync of the directory) when it
//! grows past [`COMPACT_BYTES`]. The file is extended [`PREALLOC_BYTES`] of zeros at a time
//! ahead of the records; readers stop at the zeros (they read as a torn end).
//!
//! Invariants:
//! - A `Flush` record is appended and synced after the store's flush and before anything it
//!   covers is acknowledged, so the manifest never claims less than was acknowledged and never
//!   more than the store made durable. A `Delete` record is synced before the deletion reaches
//!   the store.
//! - Records are ordered by write sequence numbers (`wseq`, global and increasing across
//!   restarts), not by their place in the file: a document's mark from a write before its
//!   deletion never revives it.
//! - Any damaged record is an error, except an incomplete or damaged last record with no valid
//!   record after it (a write torn by a crash; what it covered was never acknowledged), which is
//!   ignored and cut off before the next append.
//! - The store records the manifest's id when the manifest is created; a store that has an id
//!   but no manifest file, or a manifest of another store, is refused.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};

use crate::storage::{Store, StoreError};

mod file;
mod state;
#[cfg(test)]
mod tests;

use file::encode;
pub use file::{parse, read, RecordDefect};
pub use state::{Loss, ManifestState};

/// File name of the manifest in the data directory.
pub const MANIFEST_FILE: &str = "manifest";
/// Version of the manifest format.
pub const MANIFEST_FORMAT: u8 = 1;
/// The file is rewritten as one `Base` record past this size.
pub const COMPACT_BYTES: u64 = 4 * 1024 * 1024;
/// Largest record accepted when reading (a `Base` of very many documents stays far below).
pub const MAX_RECORD_BYTES: usize = 1 << 30;
/// The file grows by this much at a time, written with zeros and synced once, so appending a
/// record and syncing it changes no file metadata (an overwrite of allocated blocks: half the
/// cost of an append on ext4, measured 0.11 against 0.20 ms).
pub const PREALLOC_BYTES: u64 = 1024 * 1024;
/// Record magic.
const MAGIC: [u8; 2] = *b"CM";
/// Bytes before a record's payload.
const HEADER_LEN: usize = 18;

/// A manifest failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Reading or writing the file failed.
    #[error("manifest {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A record is damaged (not a torn last record).
    #[error(
        "manifest {path} is damaged at byte {offset}: {reason}; restore the data directory from \
         a backup, or accept the store as it is with `coedit recover --accept-loss`"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store has had a manifest, but the file is gone.
    #[error(
        "manifest {path} is missing, but the store was written with one (id {id}): restore it \
         from the backup of this data directory, or accept the store as it is with \
         `coedit recover --accept-loss`"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// The id the store records.
        id: String,
    },
    /// The manifest and the store do not belong together.
    #[error(
        "manifest {path} (id {found}) does not belong to this store (id {expected}): was a \
         file copied from another data directory?"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// The id in the manifest.
        found: String,
        /// The id the store records (`none` if it records none).
        expected: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One manifest record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The whole state (first record of a file).
    Base {
        /// Manifest format.
        format: u8,
        /// Id shared with the store's `meta` tree.
        id: String,
        /// Highest write sequence number issued so far.
        wseq: u64,
        /// Highest write sequence number covered by a recorded flush.
        flushed: u64,
        /// Audit chain length made durable.
        audit: u64,
        /// Live documents: `(id, highest durable revision, wseq of that mark)`.
        docs: Vec<(String, u64, u64)>,
        /// Deleted documents whose deletion may still race older marks: `(id, wseq)`.
        deleted: Vec<(String, u64)>,
    },
    /// What one flush made durable.
    Flush {
        /// Highest write sequence number the flush covered.
        flushed: u64,
        /// `(document, highest revision, wseq of the write that produced it)`.
        docs: Vec<(String, u64, u64)>,
        /// Audit chain length made durable.
        audit: u64,
    },
    /// A document is being deleted (synced before the deletion reaches the store).
    Delete {
        /// The deletion's write sequence number.
        wseq: u64,
        /// The document.
        doc: String,
    },
}

/// Reads the manifest of the store in `dir` without changing anything (for `coedit check` and
/// `coedit audit verify`): `None` if the store has never had one; an error if it is damaged,
/// missing while the store records one, or another store's.
pub fn read_for(dir: &Path, store: &dyn Store) -> Result<Option<ManifestState>, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let recorded = store.manifest_id()?;
    if !path.exists() {
        return match recorded {
            Some(id) => Err(ManifestError::Missing { path, id }),
            None => Ok(None),
        };
    }
    let (state, id, _) = read(&path)?;
    if recorded.as_deref() != Some(id.as_str()) {
        return Err(ManifestError::Foreign {
            path,
            found: id,
            expected: recorded.unwrap_or_else(|| "none".into()),
        });
    }
    Ok(Some(state))
}

struct Writer {
    file: File,
    /// Bytes of records.
    len: u64,
    /// Bytes of the file (records, then zeros).
    allocated: u64,
}

impl Writer {
    fn new(file: File, len: u64) -> std::io::Result<Self> {
        let allocated = file.metadata()?.len().max(len);
        Ok(Writer {
            file,
            len,
            allocated,
        })
    }

    /// Makes room for `need` more bytes: zeros written and synced past the end.
    fn reserve(&mut self, need: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.len + need <= self.allocated {
            return Ok(());
        }
        let grow = PREALLOC_BYTES.max(need);
        let zeros = vec![0u8; grow as usize];
        self.file.write_all_at(&zeros, self.allocated)?;
        self.file.sync_all()?;
        self.allocated += grow;
        Ok(())
    }
}

/// The manifest of an open store. See the module documentation.
pub struct Manifest {
    path: Option<PathBuf>,
    id: String,
    /// Documents found to have lost acknowledged revisions (the `damaged_documents` gauge).
    damaged: Mutex<std::collections::HashSet<String>>,
    /// The file is rewritten as one base record past this size.
    compact_bytes: u64,
    state: RwLock<ManifestState>,
    writer: Mutex<Option<Writer>>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Manifest({:?})", self.path)
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `entry` as the whole file at `path` (temp file, fsync, rename, directory fsync).
fn write_whole(path: &Path, entry: &Entry) -> Result<u64, ManifestError> {
    let tmp = path.with_extension("tmp");
    let bytes = encode(entry, 0);
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(bytes.len() as u64)
}

impl Manifest {
    /// A manifest that records nothing (in-memory stores: nothing is durable).
    pub fn disabled() -> Arc<Self> {
        Arc::new(Manifest {
            path: None,
            id: String::new(),
            damaged: Mutex::default(),
            compact_bytes: COMPACT_BYTES,
            state: RwLock::new(ManifestState::default()),
            writer: Mutex::new(None),
        })
    }

    /// Opens the manifest of the store in `dir`, or creates it from the store's current state
    /// if the store never had one (a new store, or one written before manifests existed).
    pub fn open(dir: &Path, store: &dyn Store) -> Result<Arc<Self>, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let recorded = store.manifest_id()?;
        if !path.exists() {
            if let Some(id) = recorded {
                return Err(ManifestError::Missing { path, id });
            }
            return Self::create(dir, store);
        }
        let (state, id, valid) = read(&path)?;
        if recorded.as_deref() != Some(id.as_str()) {
            return Err(ManifestError::Foreign {
                path,
                found: id,
                expected: recorded.unwrap_or_else(|| "none".into()),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        let torn = std::fs::read(&path)
            .map_err(io(&path))?
            .get(valid as usize..)
            .is_some_and(|rest| rest.iter().any(|&b| b != 0));
        if torn {
            warn!(
                path = %path.display(),
                valid,
                len,
                "manifest: cutting off a torn last record (a write interrupted by a crash)"
            );
        }
        if valid < len {
            file.set_len(valid).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let writer = Writer::new(file, valid).map_err(io(&path))?;
        Ok(Self::writing(path, id, state, writer))
    }

    fn writing(path: PathBuf, id: String, state: ManifestState, writer: Writer) -> Arc<Self> {
        Arc::new(Manifest {
            path: Some(path),
            id,
            damaged: Mutex::default(),
            compact_bytes: COMPACT_BYTES,
            state: RwLock::new(state),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Writes a new manifest for `store` as it is now (every document at its stored revision,
    /// the audit chain at its stored length), replacing any old one, and records its id in the
    /// store. Used for a store that never had a manifest and by `coedit recover`.
    pub fn create(dir: &Path, store: &dyn Store) -> Result<Arc<Self>, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let mut state = ManifestState::default();
        for doc in store.documents()? {
            let rev = store.last_rev(&doc)?;
            if rev > 0 {
                state.mark(&doc, rev, 0);
            }
        }
        state.audit = store.audit_last()?.map_or(0, |(seq, _)| seq);
        let id = hex::encode(
            crate::security::crypto::random_bytes::<16>()
                .map_err(|e| StoreError::Config(format!("cannot make a manifest id: {e}")))?,
        );
        let len = write_whole(&path, &state.base(&id))?;
        store.set_manifest_id(&id)?;
        store.flush()?;
        info!(path = %path.display(), documents = state.docs.len(), "manifest written");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let writer = Writer::new(file, len).map_err(io(&path))?;
        Ok(Self::writing(path, id, state, writer))
    }

    /// Whether this manifest records anything.
    pub fn enabled(&self) -> bool {
        self.path.is_some()
    }

    /// A copy of the folded state.
    pub fn state(&self) -> ManifestState {
        self.state.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The highest acknowledged revision of `doc`, if known.
    pub fn expected_rev(&self, doc: &str) -> Option<u64> {
        self.state.read().ok()?.expected_rev(doc)
    }

    /// The audit chain length made durable.
    pub fn audit_len(&self) -> u64 {
        self.state.read().map_or(0, |s| s.audit)
    }

    /// The highest write sequence number issued before this process (new ones start above).
    pub fn last_wseq(&self) -> u64 {
        self.state.read().map_or(0, |s| s.wseq)
    }

    /// Counts `doc` in the `damaged_documents` gauge (once).
    pub fn note_damaged(&self, doc: &str) {
        if let Ok(mut d) = self.damaged.lock() {
            d.insert(doc.to_string());
            crate::metrics::metrics()
                .damaged_documents
                .set(d.len() as i64);
        }
    }

    /// Checks a loaded document against its acknowledged revision.
    pub fn check_loaded(&self, doc: &str, have: u64) -> Result<(), StoreError> {
        match self.expected_rev(doc) {
            Some(expected) if have < expected => {
                self.note_damaged(doc);
                Err(Loss {
                    doc: doc.to_string(),
                    have,
                    expected,
                }
                .into_error())
            }
            _ => Ok(()),
        }
    }

    /// Every document whose stored last revision is behind the manifest.
    pub fn losses(&self, store: &dyn Store) -> Result<Vec<Loss>, StoreError> {
        let mut out = Vec::new();
        for (doc, expected) in self.state().documents() {
            let have = store.last_rev(&doc)?;
            if have < expected {
                out.push(Loss {
                    doc,
                    have,
                    expected,
                });
            }
        }
        Ok(out)
    }

    fn append(&self, entry: &Entry) -> Result<(), ManifestError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut guard = self.writer.lock().map_err(|_| ManifestError::Damaged {
            path: path.clone(),
            offset: 0,
            reason: "writer lock poisoned".into(),
        })?;
        let Some(w) = guard.as_mut() else {
            return Ok(());
        };
        let bytes = encode(entry, w.len);
        use std::os::unix::fs::FileExt;
        w.reserve(bytes.len() as u64).map_err(io(path))?;
        w.file.write_all_at(&bytes, w.len).map_err(io(path))?;
        w.file.sync_data().map_err(io(path))?;
        w.len += bytes.len() as u64;
        let mut state = self.state.write().map_err(|_| ManifestError::Damaged {
            path: path.clone(),
            offset: w.len,
            reason: "state lock poisoned".into(),
        })?;
        state.apply(entry);
        if w.len > self.compact_bytes {
            let len = write_whole(path, &state.base(&self.id))?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io(path))?;
            *w = Writer::new(file, len).map_err(io(path))?;
        }
        Ok(())
    }

    /// Records what a flush made durable (call after the store's flush, before acknowledging).
    pub fn record_flush(
        &self,
        flushed: u64,
        docs: Vec<(String, u64, u64)>,
        audit: u64,
    ) -> Result<(), ManifestError> {
        if !self.enabled() {
            return Ok(());
        }
        {
            let s = self.state.read().map_err(|_| ManifestError::Damaged {
                path: self.path.clone().unwrap_or_default(),
                offset: 0,
                reason: "state lock poisoned".into(),
            })?;
            // Nothing new to vouch for: no append, no sync.
            if docs.is_empty() && audit <= s.audit {
                return Ok(());
            }
        }
        self.append(&Entry::Flush {
            flushed,
            docs,
            audit,
        })
    }

    /// Records a deletion (call before the deletion reaches the store).
    pub fn record_delete(&self, wseq: u64, doc: &str) -> Result<(), ManifestError> {
        self.append(&Entry::Delete {
            wseq,
            doc: doc.to_string(),
        })
    }
}
