//! The store actor: the only writer of the store, with group commit.
//!
//! Document actors send every accepted op (`Append`) and snapshot (`PutSnapshot`) here;
//! sessions and the HTTP API send audit events (`Record`); administrators delete documents
//! and rotate the master key through it. Writes queue in arrival order and go to the crypto
//! actor in batches, at most one batch in flight, where they are sealed (encrypted stores),
//! audited (SM3 chain) and written into the store (buffered). At most one flush runs at a
//! time, on a blocking thread, covering everything written before it started. When it
//! completes, every document with ops covered by it is told `Durable { rev }` (its highest
//! covered revision), and if more was written meanwhile the next flush starts at once. So in
//! strict mode all ops arriving, across all documents, while one flush is in progress go into
//! the next one.
//!
//! Invariants:
//! - Writes are applied in the order this actor received them (one mailbox, one batch in
//!   flight); an op's audit record is written in the same batch as the op, so it is durable
//!   with it.
//! - `Durable { rev }` is sent only after a flush that started after `rev` was written.
//! - A failed write or flush stops the process (exit code `EXIT_STORAGE_FAILURE`): the server
//!   can no longer tell which edits are durable, and acknowledging any would be a lie. Clients
//!   resend unacknowledged ops after the restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use coedit_protocol::DocumentSnapshot;
use tokio::sync::oneshot;
use tracing::{error, trace, warn};

use crate::audit::{AuditChain, AuditEvent};
use crate::crypto::{sm3, MasterKeyring, Sm2Signer};
use crate::crypto_actor::{BatchDone, CryptoActor, WriteBatch};
use crate::document::Durable;
use crate::metrics::metrics;
use crate::store::{LogRecord, Store, StoreError};

/// Exit code when the store cannot flush.
pub const EXIT_STORAGE_FAILURE: i32 = 74;
/// Default flush interval in relaxed mode.
pub const DEFAULT_RELAXED_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Default interval between signed audit checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Most writes sent to the crypto actor in one batch.
pub const MAX_BATCH: usize = 4096;

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

/// One queued write.
pub enum Write {
    /// An applied op (and its audit record).
    Op {
        /// Document id.
        doc: Arc<str>,
        /// The op.
        record: LogRecord,
    },
    /// A snapshot, then optional compaction.
    Snapshot {
        /// Document id.
        doc: Arc<str>,
        /// The snapshot.
        snapshot: DocumentSnapshot,
        /// Compact at or before this revision.
        compact_at: Option<u64>,
    },
    /// Delete a document (and shred its key).
    Delete {
        /// Document id.
        doc: String,
        /// Told whether it was applied.
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Re-wrap every data key under a new master key ring.
    Rotate {
        /// The new ring.
        ring: MasterKeyring,
        /// Told the number of keys re-wrapped.
        done: oneshot::Sender<Result<usize, String>>,
    },
    /// An audit event.
    Audit(AuditEvent),
    /// A signed checkpoint of the audit chain.
    Checkpoint,
}

/// Applies writes in order: seals and stores records, extends the audit chain, signs
/// checkpoints. Runs on a crypto thread. Stops at the first storage failure.
pub fn apply_batch(
    store: &dyn Store,
    mut chain: Option<&mut AuditChain>,
    signer: Option<&Sm2Signer>,
    writes: Vec<Write>,
) -> Result<(), StoreError> {
    let m = metrics();
    let sealed = if store.encrypted() { 1 } else { 0 };
    for w in writes {
        match w {
            Write::Op { doc, record } => {
                store.append(&doc, std::slice::from_ref(&record))?;
                m.crypto("seal_record", sealed);
                if let Some(c) = chain.as_deref_mut() {
                    m.crypto("audit_hash", 1);
                    let op = rmp_serde::to_vec(&record.op)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    let event = AuditEvent::Op {
                        doc: doc.to_string(),
                        rev: record.rev,
                        client: record.client,
                        seq: record.seq,
                        op_sm3: hex::encode(sm3(&op)),
                    };
                    c.append(store, event)?;
                }
            }
            Write::Snapshot {
                doc,
                snapshot,
                compact_at,
            } => {
                store.put_snapshot(&doc, &snapshot)?;
                m.crypto("seal_record", sealed);
                if let Some(rev) = compact_at {
                    store.compact(&doc, rev)?;
                }
            }
            Write::Delete { doc, done } => {
                let r = store.delete(&doc);
                let _ = done.send(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                r?;
            }
            Write::Rotate { ring, done } => {
                // A rotation that fails (e.g. a key that does not unwrap) is reported, not
                // fatal: nothing was replaced for the keys it did not reach.
                let _ = done.send(store.rotate_master_key(ring).map_err(|e| e.to_string()));
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
                    c.checkpoint(store, s)?;
                }
            }
        }
    }
    Ok(())
}

struct Waiter {
    seq: u64,
    doc: Arc<str>,
    rev: u64,
    notify: Recipient<Durable>,
}

/// The store actor. See the module documentation.
pub struct StoreActor {
    store: Arc<dyn Store>,
    durability: Durability,
    crypto: Addr<CryptoActor>,
    /// The audit chain's writer state; `None` while a batch holds it.
    chain: Option<AuditChain>,
    /// Whether audit events are recorded.
    audit: bool,
    /// Interval between signed checkpoints (`None`: no signing key).
    checkpoint_interval: Option<Duration>,
    /// Writes not yet sent to the crypto actor.
    queue: Vec<Write>,
    /// A batch is being applied.
    in_flight: bool,
    /// Writes received so far (a sequence number per write).
    received: u64,
    /// Writes applied to the store.
    written: u64,
    /// Writes covered by the last completed flush.
    flushed: u64,
    flushing: bool,
    /// Documents waiting for durability, in write order.
    waiters: Vec<Waiter>,
    /// Callers of `FlushNow`, with the write they need covered.
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
}

impl StoreActor {
    /// A writer for `store`, applying batches on `crypto`. With `audit`, the audit chain is
    /// continued from the store (and signed every `checkpoint_interval`, if given).
    pub fn new(
        store: Arc<dyn Store>,
        durability: Durability,
        crypto: Addr<CryptoActor>,
        audit: bool,
        checkpoint_interval: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let chain = if audit {
            Some(AuditChain::resume(&*store)?)
        } else {
            None
        };
        Ok(StoreActor {
            store,
            durability,
            crypto,
            chain,
            audit,
            checkpoint_interval,
            queue: Vec::new(),
            in_flight: false,
            received: 0,
            written: 0,
            flushed: 0,
            flushing: false,
            waiters: Vec::new(),
            flush_waiters: Vec::new(),
        })
    }

    fn fatal(e: &StoreError) -> ! {
        error!(error = %e, "storage failure: stopping so that no unsaved edit is acknowledged");
        std::process::exit(EXIT_STORAGE_FAILURE)
    }

    /// Queues a write; returns its sequence number.
    fn enqueue(&mut self, w: Write, ctx: &mut Context<Self>) -> u64 {
        self.received += 1;
        self.queue.push(w);
        self.pump(ctx);
        self.received
    }

    /// Sends the queue to the crypto actor if no batch is in flight.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        self.in_flight = true;
        let n = self.queue.len().min(MAX_BATCH);
        let writes: Vec<Write> = self.queue.drain(..n).collect();
        let batch = WriteBatch {
            writes,
            chain: self.chain.take(),
        };
        ctx.spawn(
            self.crypto
                .send(batch)
                .into_actor(self)
                .map(|res, act, ctx| {
                    let done: BatchDone = match res {
                        Ok(d) => d,
                        Err(e) => Self::fatal(&StoreError::Backend(format!("crypto actor: {e}"))),
                    };
                    if let Err(e) = &done.result {
                        Self::fatal(e);
                    }
                    act.in_flight = false;
                    act.chain = done.chain;
                    act.written += done.applied as u64;
                    if act.durability == Durability::Strict || !act.flush_waiters.is_empty() {
                        act.start_flush(ctx);
                    }
                    act.pump(ctx);
                }),
        );
    }

    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.flushed >= self.written {
            return;
        }
        self.flushing = true;
        let target = self.written;
        let batch = target - self.flushed;
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let flush = tokio::task::spawn_blocking(move || store.flush());
        ctx.spawn(flush.into_actor(self).map(move |res, act, ctx| {
            act.flushing = false;
            match res {
                Ok(Ok(())) => {
                    trace!(target, "flushed");
                    let m = metrics();
                    m.store_flush_seconds
                        .observe(started.elapsed().as_secs_f64());
                    m.store_flush_batch.observe(batch as f64);
                    act.flushed = target;
                    act.notify();
                    act.start_flush(ctx);
                }
                Ok(Err(e)) => Self::fatal(&e),
                Err(e) => Self::fatal(&StoreError::Backend(e.to_string())),
            }
        }));
    }

    /// Queues a write that reports on `done`; the answer comes once it is durable.
    fn enqueue_until_durable<T: Send + 'static>(
        &mut self,
        w: Write,
        done: oneshot::Receiver<Result<T, String>>,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<T, String>> {
        self.enqueue(w, ctx);
        let flushed = self.flushed_future(ctx);
        Box::pin(async move {
            let r = done
                .await
                .unwrap_or_else(|_| Err("store writer stopped".into()));
            let _ = flushed.await;
            if let Err(e) = &r {
                warn!(error = %e, "administrative write failed");
            }
            r
        })
    }

    /// Waits until everything received so far is flushed.
    fn flushed_future(&mut self, ctx: &mut Context<Self>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.flushed >= self.received {
            let _ = tx.send(());
        } else {
            self.flush_waiters.push((self.received, tx));
            self.start_flush(ctx);
        }
        rx
    }

    /// Tells documents and `FlushNow` callers what the last flush covered.
    fn notify(&mut self) {
        let flushed = self.flushed;
        let mut highest: HashMap<Arc<str>, (u64, Recipient<Durable>)> = HashMap::new();
        self.waiters.retain(|w| {
            if w.seq > flushed {
                return true;
            }
            let e = highest
                .entry(w.doc.clone())
                .or_insert_with(|| (w.rev, w.notify.clone()));
            e.0 = e.0.max(w.rev);
            false
        });
        for (_, (rev, notify)) in highest {
            notify.do_send(Durable { rev });
        }
        let mut i = 0;
        while i < self.flush_waiters.len() {
            if self.flush_waiters[i].0 <= flushed {
                let (_, tx) = self.flush_waiters.swap_remove(i);
                let _ = tx.send(());
            } else {
                i += 1;
            }
        }
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Durability::Relaxed { interval } = self.durability {
            ctx.run_interval(interval, |act, ctx| act.start_flush(ctx));
        }
        if let (true, Some(every)) = (self.audit, self.checkpoint_interval) {
            ctx.run_interval(every, |act, ctx| {
                act.enqueue(Write::Checkpoint, ctx);
                act.start_flush(ctx);
            });
        }
    }
}

/// Append one applied op to a document's log; `notify` hears `Durable` once it is flushed
/// (strict mode only).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    /// Document id.
    pub doc: Arc<str>,
    /// The op.
    pub record: LogRecord,
    /// The document actor.
    pub notify: Recipient<Durable>,
}

impl Handler<Append> for StoreActor {
    type Result = ();

    /// Queues the record and, in strict mode, the document for the flush that covers it.
    fn handle(&mut self, m: Append, ctx: &mut Context<Self>) {
        let (doc, rev) = (m.doc.clone(), m.record.rev);
        let seq = self.enqueue(
            Write::Op {
                doc: m.doc,
                record: m.record,
            },
            ctx,
        );
        if self.durability == Durability::Strict {
            self.waiters.push(Waiter {
                seq,
                doc,
                rev,
                notify: m.notify,
            });
        }
    }
}

/// Store a snapshot, then optionally compact the log before `compact_at`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PutSnapshot {
    /// Document id.
    pub doc: Arc<str>,
    /// The snapshot.
    pub snapshot: DocumentSnapshot,
    /// Delete ops and snapshots made obsolete at or before this revision.
    pub compact_at: Option<u64>,
}

impl Handler<PutSnapshot> for StoreActor {
    type Result = ();

    /// Queues the snapshot (flushed with the next flush) and the compaction.
    fn handle(&mut self, m: PutSnapshot, ctx: &mut Context<Self>) {
        self.enqueue(
            Write::Snapshot {
                doc: m.doc,
                snapshot: m.snapshot,
                compact_at: m.compact_at,
            },
            ctx,
        );
    }
}

/// Record an audit event (no-op when audit is off). Durable with the next flush.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record(pub AuditEvent);

impl Handler<Record> for StoreActor {
    type Result = ();

    /// Queues the event behind every write received before it.
    fn handle(&mut self, m: Record, ctx: &mut Context<Self>) {
        if self.audit {
            self.enqueue(Write::Audit(m.0), ctx);
        }
    }
}

/// Append a signed checkpoint of the audit chain (if a signing key is configured) and flush.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint;

impl Handler<Checkpoint> for StoreActor {
    type Result = ResponseFuture<()>;

    /// Queues the checkpoint and answers once it is durable.
    fn handle(&mut self, _: Checkpoint, ctx: &mut Context<Self>) -> Self::Result {
        if self.audit {
            self.enqueue(Write::Checkpoint, ctx);
        }
        let rx = self.flushed_future(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Delete a document's records (and, encrypted, shred its key); answers once durable. The
/// caller makes sure no actor of the document is open.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct DeleteDoc {
    /// Document id.
    pub doc: String,
}

impl Handler<DeleteDoc> for StoreActor {
    type Result = ResponseFuture<Result<(), String>>;

    /// Queues the deletion behind earlier writes of the document, then waits for the flush.
    fn handle(&mut self, m: DeleteDoc, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let write = Write::Delete {
            doc: m.doc,
            done: tx,
        };
        self.enqueue_until_durable(write, rx, ctx)
    }
}

/// Re-wrap every data key under the newest key of a ring; answers with the count once
/// durable.
#[derive(Message)]
#[rtype(result = "Result<usize, String>")]
pub struct RotateMasterKey {
    /// The new ring (must still hold the versions the keys are wrapped with now).
    pub ring: MasterKeyring,
}

impl Handler<RotateMasterKey> for StoreActor {
    type Result = ResponseFuture<Result<usize, String>>;

    /// Queues the re-wrap behind earlier writes (so it never races a deletion).
    fn handle(&mut self, m: RotateMasterKey, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let write = Write::Rotate {
            ring: m.ring,
            done: tx,
        };
        self.enqueue_until_durable(write, rx, ctx)
    }
}

/// Flush everything received so far; answers once it is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushNow;

impl Handler<FlushNow> for StoreActor {
    type Result = ResponseFuture<()>;

    /// Waits for a flush covering every write received before this message.
    fn handle(&mut self, _: FlushNow, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.flushed_future(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
