//! The write pool: the thread (actix `SyncArbiter`) that does the store's writing and its
//! CPU-bound cryptography, so that encoding, sealing, hashing, signing, the store's own
//! buffered writes and its flushes never run on the threads that serve connections. With
//! encryption off it still does the writing.
//!
//! It applies the store actor's batches in order ([`apply_batch`]: encodes and seals records
//! with SM4-GCM, extends the audit chain with SM3, signs checkpoints with SM2, writes into the
//! store's buffers) and, when the batch asks, flushes right after ([`FlushAfter`]). Access
//! tokens are checked elsewhere ([`crate::security::verifier`]), so nobody outside can queue
//! work in front of a flush.
//!
//! Invariants:
//! - The store writer keeps at most one batch in flight, so batches are applied in order (one
//!   thread is all the pool needs).
//! - The audit chain's writer state travels with the batch and comes back with the reply: it
//!   has exactly one owner at any time.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::events::outbox::{self, TreeWrite};
use crate::metrics::metrics;
use crate::security::anchor::{Anchor, AnchorLog};
use crate::security::audit::AuditChain;
use crate::security::audit::AuditEvent;
use crate::security::crypto::Sm2Signer;
use crate::security::crypto::{sm3, MasterKeyring};
use crate::storage::manifest::Manifest;
use crate::storage::{LogEntry, SnapshotEntry, Store, StoreError};

/// Threads of the write pool: the store writer has one batch in flight at a time.
pub const WRITE_POOL_THREADS: usize = 1;

/// The write pool. See the module documentation.
pub struct WritePool {
    store: Arc<dyn Store>,
    manifest: Arc<Manifest>,
    signer: Option<Arc<Sm2Signer>>,
}

impl WritePool {
    /// Starts the write-pool thread writing to `store` and signing audit checkpoints with
    /// `signer`.
    pub fn start(
        store: Arc<dyn Store>,
        manifest: Arc<Manifest>,
        signer: Option<Arc<Sm2Signer>>,
    ) -> Addr<WritePool> {
        SyncArbiter::start(WRITE_POOL_THREADS, move || WritePool {
            store: store.clone(),
            manifest: manifest.clone(),
            signer: signer.clone(),
        })
    }
}

impl Actor for WritePool {
    type Context = SyncContext<Self>;
}

/// One queued write.
pub enum Write {
    /// An applied op (and its audit record).
    Op {
        /// Document id.
        doc: Arc<str>,
        /// The op or update.
        record: LogEntry,
        /// The author's token subject (authentication on).
        subject: Option<Arc<str>>,
    },
    /// A snapshot, then optional compaction.
    Snapshot {
        /// Document id.
        doc: Arc<str>,
        /// The snapshot.
        snapshot: SnapshotEntry,
        /// Compact at or before this revision.
        compact_at: Option<u64>,
    },
    /// Delete a document (and shred its key).
    Delete {
        /// Document id.
        doc: String,
        /// The deletion's write sequence number (recorded in the manifest first).
        wseq: u64,
        /// Told whether it was applied.
        done: oneshot::Sender<Result<(), StoreError>>,
        /// Its change events (and the document's event cursor going), written with it.
        events: Vec<TreeWrite>,
    },
    /// Change events, their cursors, delivery marks (the `events` tree).
    Events(Vec<TreeWrite>),
    /// Re-wrap every data key under a new master key ring.
    Rotate {
        /// The new ring.
        ring: MasterKeyring,
        /// Told the number of keys re-wrapped.
        done: oneshot::Sender<Result<usize, StoreError>>,
    },
    /// An audit event.
    Audit(AuditEvent),
    /// A signed checkpoint of the audit chain.
    Checkpoint,
}

/// Applies writes in order: seals and stores records, extends the audit chain, signs
/// checkpoints (whose anchors are pushed to `anchors`). Runs on a write-pool thread. Stops at
/// the first storage failure.
pub fn apply_batch(
    store: &dyn Store,
    manifest: &Manifest,
    mut chain: Option<&mut AuditChain>,
    signer: Option<&Sm2Signer>,
    writes: Vec<Write>,
    anchors: &mut Vec<Anchor>,
) -> Result<(), StoreError> {
    let m = metrics();
    let sealed = if store.encrypted() { 1 } else { 0 };
    for w in writes {
        match w {
            Write::Op {
                doc,
                record,
                subject,
            } => {
                match &record {
                    LogEntry::Text(r) => store.append(&doc, std::slice::from_ref(r))?,
                    LogEntry::Yjs(r) => store.append_y(&doc, std::slice::from_ref(r))?,
                }
                m.crypto("seal_record", sealed);
                if let Some(c) = chain.as_deref_mut() {
                    m.crypto("audit_hash", 1);
                    // A text op is hashed as its MessagePack, a Yjs update as its bytes.
                    let (rev, client, seq, op_sm3) = match record {
                        LogEntry::Text(r) => {
                            let op = rmp_serde::to_vec(&r.op)
                                .map_err(|e| StoreError::Backend(e.to_string()))?;
                            (r.rev, r.client, r.seq, sm3(&op))
                        }
                        LogEntry::Yjs(r) => (r.rev, r.client, 0, sm3(&r.update)),
                    };
                    let event = AuditEvent::Op {
                        doc: doc.to_string(),
                        rev,
                        client,
                        seq,
                        op_sm3: hex::encode(op_sm3),
                        subject: subject.map(|s| s.to_string()),
                    };
                    c.append(store, event)?;
                }
            }
            Write::Snapshot {
                doc,
                snapshot,
                compact_at,
            } => {
                match &snapshot {
                    SnapshotEntry::Text(s) => store.put_snapshot(&doc, s)?,
                    SnapshotEntry::Yjs(s) => store.put_y_state(&doc, s)?,
                }
                m.crypto("seal_record", sealed);
                if let Some(rev) = compact_at {
                    store.compact(&doc, rev)?;
                }
            }
            Write::Delete {
                doc,
                wseq,
                done,
                events,
            } => {
                // The manifest first: a crash between the two leaves a document the manifest
                // calls deleted and the store still has, never a "lost" one.
                let r = manifest
                    .record_delete(wseq, &doc)
                    .map_err(|e| StoreError::Backend(e.to_string()))
                    .and_then(|()| store.delete(&doc))
                    .and_then(|()| outbox::apply(store, &events));
                match r {
                    Ok(()) => {
                        let _ = done.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = done.send(Err(StoreError::Backend(e.to_string())));
                        return Err(e);
                    }
                }
            }
            Write::Events(writes) => outbox::apply(store, &writes)?,
            Write::Rotate { ring, done } => {
                // A rotation that fails (e.g. a key that does not unwrap) is reported, not
                // fatal: nothing was replaced for the keys it did not reach.
                let _ = done.send(store.rotate_master_key(ring));
            }
            Write::Audit(event) => {
                if let Some(c) = chain.as_deref_mut() {
                    m.crypto("audit_hash", 1);
                    c.append(store, event)?;
                }
            }
            Write::Checkpoint => {
                if let (Some(c), Some(s)) = (chain.as_deref_mut(), signer) {
                    m.crypto("checkpoint_sign", 1);
                    anchors.push(c.checkpoint(store, s)?);
                }
            }
        }
    }
    Ok(())
}

/// A flush that follows a batch on the same thread (group commit with no thread crossing):
/// what the manifest and the anchor log record once the store's flush returns.
pub struct FlushAfter {
    /// Sequence number of the last write covered (the batch's last).
    pub target: u64,
    /// Per document: highest revision and its write sequence number.
    pub docs: Vec<(String, u64, u64)>,
    /// Audit chain length recorded by earlier batches (the batch's own is added).
    pub audit_len: u64,
    /// Anchors of checkpoints written by earlier batches (the batch's own are added).
    pub anchors: Vec<Anchor>,
    /// Where the anchors are appended.
    pub anchor_log: Arc<AnchorLog>,
}

/// Flushes the store, then records in the manifest what it made durable and appends the
/// anchors of the checkpoints it covered: the order that makes an acknowledgement safe.
pub fn flush_and_record(
    store: &dyn Store,
    manifest: &Manifest,
    anchor_log: &AnchorLog,
    target: u64,
    docs: Vec<(String, u64, u64)>,
    audit_len: u64,
    anchors: &[Anchor],
) -> Result<(), StoreError> {
    store.flush()?;
    manifest
        .record_flush(target, docs, audit_len)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    anchor_log
        .append(anchors)
        .map_err(|e| StoreError::Backend(e.to_string()))
}

/// Apply a batch of writes in order (sent by the store writer only), then flush if asked.
#[derive(Message)]
#[rtype(result = "BatchDone")]
pub struct WriteBatch {
    /// The writes.
    pub writes: Vec<Write>,
    /// The audit chain's writer state (`None`: audit off).
    pub chain: Option<AuditChain>,
    /// Flush right after applying (strict mode, no flush running).
    pub flush: Option<FlushAfter>,
}

/// The outcome of a [`WriteBatch`].
pub struct BatchDone {
    /// Number of writes applied.
    pub applied: usize,
    /// The first failure, which stops the batch.
    pub result: Result<(), StoreError>,
    /// The chain state, handed back.
    pub chain: Option<AuditChain>,
    /// Anchors of the checkpoints written (to be recorded once durable; empty when the
    /// batch's own flush recorded them).
    pub anchors: Vec<Anchor>,
    /// The batch's flush ran and succeeded: everything up to its target is durable.
    pub flushed: bool,
}

impl Handler<WriteBatch> for WritePool {
    type Result = MessageResult<WriteBatch>;

    /// Seals and writes each record, appends audit records (and signed checkpoints).
    fn handle(&mut self, m: WriteBatch, _: &mut SyncContext<Self>) -> Self::Result {
        let mut chain = m.chain;
        let applied = m.writes.len();
        let mut anchors = Vec::new();
        let mut result = apply_batch(
            &*self.store,
            &self.manifest,
            chain.as_mut(),
            self.signer.as_deref(),
            m.writes,
            &mut anchors,
        );
        let mut flushed = false;
        if let (Ok(()), Some(f)) = (&result, m.flush) {
            let started = std::time::Instant::now();
            let audit_len = chain
                .as_ref()
                .map_or(f.audit_len, |c| c.len().max(f.audit_len));
            let mut all = f.anchors;
            all.append(&mut anchors);
            result = flush_and_record(
                &*self.store,
                &self.manifest,
                &f.anchor_log,
                f.target,
                f.docs,
                audit_len,
                &all,
            );
            flushed = result.is_ok();
            metrics()
                .store_flush_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        MessageResult(BatchDone {
            applied,
            result,
            chain,
            anchors,
            flushed,
        })
    }
}
