//! The store actor: the store writer's coordinator, with group commit. It orders every write;
//! the writing itself (encoding, sealing, audit hashing) and, in strict mode, the flush run on
//! the write pool ([`crate::write_pool`]).
//!
//! Document actors send every accepted op (`Append`) and snapshot (`PutSnapshot`) here;
//! sessions and the HTTP API send audit events (`AppendAudit`, `AuditRefusal`); administrators
//! delete documents and rotate the master key through it. Writes queue in arrival order and go
//! to the write pool in batches, at most one batch in flight, where they are sealed (encrypted
//! stores), audited (SM3 chain) and written into the store (buffered). In strict mode a batch
//! normally carries its flush: the pool thread flushes the store right after writing it,
//! records in the manifest (outside the store) what it made durable, anchors the audit
//! checkpoints it covered, and answers once (one thread crossing per group commit). Writes
//! arriving meanwhile wait in the queue and leave together with the next flush; with a group
//! commit window (`with_group_commit`) a flush starts at most once per window. A flush without
//! a batch (relaxed mode's interval, `FlushNow` with nothing queued) runs on a blocking thread.
//! At most one flush runs at a time. Then every document with ops covered by it is told
//! `Durable { rev }` (its highest covered revision). So in strict mode all ops arriving, across
//! all documents, while one flush is in progress go into the next one.
//!
//! The write messages (`Append`, `PutSnapshot`, `DeleteDoc`, `RotateMasterKey`, `FlushNow`,
//! `Unfence`) are in `store_actor/writes.rs`; its audit messages (`AppendAudit`,
//! `AuditRefusal`, `Checkpoint`) in `store_actor/audit.rs`;
//! its part in change events (noting durable ops, writing events, handing them to the
//! dispatcher once durable, `RecordDelivery`) in `store_actor/events.rs`; in cluster mode, which
//! documents' changes this node tells (`EventsOwn`, `EventsDisown`) in `store_actor/owned.rs`.
//!
//! Invariants:
//! - Writes are applied in the order this actor received them (one mailbox, one batch in
//!   flight); an op's audit record is written in the same batch as the op, so it is durable
//!   with it. Each write has a sequence number (`wseq`) that keeps growing across restarts
//!   (it continues from the manifest).
//! - `Durable { rev }` is sent only after a flush that started after `rev` was written, and
//!   after the manifest records it.
//! - Below the disk space reserve ([`crate::storage::disk`]), snapshots are skipped (they only speed up
//!   loading) and document actors refuse new edits; what was accepted is still written.
//! - A failed write, flush or manifest append is fatal: sled cannot go on after a failed write
//!   and the server could no longer tell which edits are durable. The actor stops writing and
//!   acknowledging, every session is closed with 1011 and a reason, and the process exits with
//!   `EXIT_STORAGE_FAILURE` after [`FATAL_EXIT_DELAY`] (systemd restarts it; clients resend
//!   what was not acknowledged).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, error, trace, warn};

use crate::document::Durable;
use crate::errors::CLOSE_INTERNAL;
use crate::metrics::metrics;
use crate::security::anchor::{Anchor, AnchorLog};
use crate::security::audit::{AuditChain, AuditEvent};
use crate::security::crypto::MasterKeyring;
use crate::security::refusals::{RefusalFilter, Verdict, REFUSAL_WINDOW};
use crate::session::CloseAllSender;
use crate::storage::disk::{DiskSpace, DISK_CHECK_INTERVAL};
use crate::storage::manifest::Manifest;
use crate::storage::{LogEntry, SnapshotEntry, Store, StoreError};
use crate::write_pool::{flush_and_record, BatchDone, FlushAfter, Write, WriteBatch, WritePool};

/// Exit code when the store cannot flush.
pub const EXIT_STORAGE_FAILURE: i32 = 74;
/// Default flush interval in relaxed mode.
pub const DEFAULT_RELAXED_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Default group commit window in strict mode (see [`StoreActor::with_group_commit`]).
pub const DEFAULT_GROUP_COMMIT: Duration = Duration::ZERO;
/// Default interval between signed audit checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Most writes sent to the crypto actor in one batch.
pub const MAX_BATCH: usize = 4096;
/// Time between a fatal storage failure and the exit, for sessions to get their close frames.
pub const FATAL_EXIT_DELAY: Duration = Duration::from_millis(500);
pub use crate::storage::disk::DEFAULT_MIN_FREE_BYTES;
pub use crate::storage::Durability;

mod audit;
pub use audit::{AppendAudit, AuditRefusal, Checkpoint};
mod events;
mod owned;
mod writes;
pub use events::{EventsSetup, RecordDelivery, EVENT_TICK};
pub use owned::{EventsDisown, EventsOwn};
#[cfg(test)]
pub(crate) use writes::Progress;
pub use writes::{Append, DeleteDoc, FlushNow, PutSnapshot, RotateMasterKey, Unfence};

struct Waiter {
    seq: u64,
    doc: Arc<str>,
    rev: u64,
    notify: Recipient<Durable>,
}

/// What the store writer keeps outside the store, and what it tells when storage fails.
pub struct Ledger {
    /// The manifest of acknowledged revisions.
    pub manifest: Arc<Manifest>,
    /// Where audit checkpoints are anchored.
    pub anchors: Arc<AnchorLog>,
    /// The free-space guard.
    pub disk: Arc<DiskSpace>,
    /// Closes every session on a fatal storage failure.
    pub close_all: Option<CloseAllSender>,
}

impl Ledger {
    /// A ledger that records nothing outside the store (in-memory stores, tests).
    pub fn none() -> Self {
        Ledger {
            manifest: Manifest::disabled(),
            anchors: Arc::new(AnchorLog::disabled()),
            disk: DiskSpace::unlimited(),
            close_all: None,
        }
    }
}

/// What the next flush records: marks collected as writes complete.
#[derive(Default)]
struct Marks {
    /// `(wseq, document, revision)` of written ops, in write order.
    ops: VecDeque<(u64, Arc<str>, u64)>,
    /// `(wseq after a batch, audit chain length then)`.
    audit: VecDeque<(u64, u64)>,
    /// `(wseq after a batch, anchor of a checkpoint written in it)`.
    anchors: VecDeque<(u64, Anchor)>,
    /// The audit length last recorded.
    audit_len: u64,
}

impl Marks {
    /// Takes what writes up to `target` contribute: per document the highest revision (and
    /// its wseq), the audit length, the anchors.
    fn take(&mut self, target: u64) -> (Vec<(String, u64, u64)>, u64, Vec<Anchor>) {
        let mut docs: HashMap<Arc<str>, (u64, u64)> = HashMap::new();
        while self.ops.front().is_some_and(|(w, _, _)| *w <= target) {
            if let Some((w, doc, rev)) = self.ops.pop_front() {
                let e = docs.entry(doc).or_insert((rev, w));
                *e = (e.0.max(rev), e.1.max(w));
            }
        }
        while self.audit.front().is_some_and(|(w, _)| *w <= target) {
            if let Some((_, len)) = self.audit.pop_front() {
                self.audit_len = self.audit_len.max(len);
            }
        }
        let mut anchors = Vec::new();
        while self.anchors.front().is_some_and(|(w, _)| *w <= target) {
            if let Some((_, a)) = self.anchors.pop_front() {
                anchors.push(a);
            }
        }
        let docs = docs
            .into_iter()
            .map(|(d, (rev, w))| (d.to_string(), rev, w))
            .collect();
        (docs, self.audit_len, anchors)
    }

    /// Forgets the op marks of `doc` (its deletion was queued after them).
    fn forget(&mut self, doc: &str) {
        self.ops.retain(|(_, d, _)| &**d != doc);
    }
}

/// The store actor. See the module documentation.
pub struct StoreActor {
    store: Arc<dyn Store>,
    /// Manifest, anchors, disk guard.
    ledger: Ledger,
    /// Marks for the manifest, collected as batches complete.
    marks: Marks,
    /// A fatal failure happened: nothing more is written or acknowledged.
    failed: bool,
    durability: Durability,
    crypto: Addr<WritePool>,
    /// The audit chain's writer state; `None` while a batch holds it.
    chain: Option<AuditChain>,
    /// Whether audit events are recorded.
    audit: bool,
    /// Interval between signed checkpoints (`None`: no signing key).
    checkpoint_interval: Option<Duration>,
    /// Writes not yet sent to the crypto actor, with their sequence numbers.
    queue: Vec<(u64, Write)>,
    /// A batch is being applied.
    in_flight: bool,
    /// Sequence number of the last write received (continues from the manifest).
    received: u64,
    /// Sequence number of the last write applied to the store.
    written: u64,
    /// Sequence number of the last write covered by a completed flush.
    flushed: u64,
    flushing: bool,
    /// Least time between the starts of two flushes in strict mode (group commit window).
    group_commit: Duration,
    /// When the last flush started (tokio's clock, so tests can pause it).
    last_flush_start: Option<Instant>,
    /// A paced flush is scheduled.
    flush_timer: bool,
    /// Documents waiting for durability, in write order.
    waiters: Vec<Waiter>,
    /// Documents another node wrote first (cluster mode), with this node's first revision
    /// not stored: their writes are not durable, their actors are told so
    /// (`Durable::fenced`) until they stepped down ([`Unfence`]).
    fenced: HashMap<Arc<str>, u64>,
    /// Callers of `FlushNow`, with the write they need covered.
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Decides which refusals are recorded one by one and which are only counted.
    refusals: RefusalFilter,
    /// Change events, when a sink takes any.
    events: Option<events::EventsWriter>,
}

impl StoreActor {
    /// A writer for `store`, applying batches on `crypto`, recording what it makes durable in
    /// `ledger`. With `audit`, the audit chain is continued from the store (refused if it is
    /// shorter than the manifest or the anchors say was durable) and signed every
    /// `checkpoint_interval`, if given.
    pub fn new(
        store: Arc<dyn Store>,
        durability: Durability,
        crypto: Addr<WritePool>,
        audit: bool,
        checkpoint_interval: Option<Duration>,
        ledger: Ledger,
        anchored: u64,
    ) -> Result<Self, StoreError> {
        let expected = ledger.manifest.audit_len().max(anchored);
        let chain = if audit {
            Some(AuditChain::resume_checked(&*store, expected)?)
        } else {
            None
        };
        let start = ledger.manifest.last_wseq();
        let marks = Marks {
            audit_len: chain.as_ref().map_or(0, AuditChain::len),
            ..Marks::default()
        };
        Ok(StoreActor {
            store,
            ledger,
            marks,
            failed: false,
            durability,
            crypto,
            chain,
            audit,
            checkpoint_interval,
            queue: Vec::new(),
            in_flight: false,
            received: start,
            written: start,
            flushed: start,
            flushing: false,
            group_commit: Duration::ZERO,
            last_flush_start: None,
            flush_timer: false,
            waiters: Vec::new(),
            fenced: HashMap::new(),
            flush_waiters: Vec::new(),
            refusals: RefusalFilter::new(crate::security::audit::now_ms()),
            events: None,
        })
    }

    /// Sets the group commit window: in strict mode a flush starts at most once per `window`
    /// (zero, the default: as soon as the previous one is done). Writes arriving meanwhile wait
    /// and go to the write pool together, with their flush.
    pub fn with_group_commit(mut self, window: Duration) -> Self {
        self.group_commit = window;
        self
    }

    fn strict(&self) -> bool {
        self.durability == Durability::Strict
    }

    /// Whether a strict-mode flush may start now; if the window is not over, schedules a
    /// [`Self::kick`] for when it is.
    fn flush_due(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.flushing || self.failed {
            return false;
        }
        let since = self.last_flush_start.map_or(Duration::MAX, |t| t.elapsed());
        if since >= self.group_commit {
            return true;
        }
        if !self.flush_timer {
            self.flush_timer = true;
            ctx.run_later(self.group_commit - since, |act, ctx| {
                act.flush_timer = false;
                act.kick(ctx);
            });
        }
        false
    }

    /// Moves the pipeline on: sends queued writes, or starts a flush of what was written.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.failed {
            return;
        }
        if !self.queue.is_empty() {
            self.pump(ctx);
        } else if self.flushed < self.written
            && (!self.flush_waiters.is_empty() || (self.strict() && self.flush_due(ctx)))
        {
            self.start_flush(ctx);
        }
    }

    /// A fatal storage failure: stop writing and acknowledging, close every session with a
    /// reason, exit after [`FATAL_EXIT_DELAY`].
    fn fatal(&mut self, e: &StoreError, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        self.failed = true;
        self.queue.clear();
        error!(
            error = %e,
            "storage failure: the store cannot continue after a failed write (sled keeps the \
             error), so coedit stops here without acknowledging anything more; it exits with \
             code {EXIT_STORAGE_FAILURE} for its supervisor to restart it (free disk space first \
             if the disk is full); clients resend what was not acknowledged"
        );
        if let Some(c) = &self.ledger.close_all {
            c.close_all(
                CLOSE_INTERNAL,
                "storage failure: the server is restarting; reconnect and resend",
            );
        }
        ctx.run_later(FATAL_EXIT_DELAY, |_, _| {
            std::process::exit(EXIT_STORAGE_FAILURE)
        });
    }

    /// Queues a write; returns its sequence number.
    fn enqueue(&mut self, w: Write, ctx: &mut Context<Self>) -> u64 {
        self.received += 1;
        if self.failed {
            return self.received;
        }
        if let Write::Delete { doc, .. } = &w {
            // Marks of writes queued before the deletion must not outlive it.
            self.marks.forget(doc);
        }
        self.queue.push((self.received, w));
        self.pump(ctx);
        self.received
    }

    /// Sends the queue to the write pool if no batch is in flight. In strict mode the batch
    /// carries its own flush (one thread crossing for apply and flush), and waits in the queue
    /// until a flush may start (group commit) unless it is full or someone waits for a flush.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() || self.failed {
            return;
        }
        let flush_now = self.strict() && self.flush_due(ctx);
        if self.strict()
            && !flush_now
            && self.queue.len() < MAX_BATCH
            && self.flush_waiters.is_empty()
        {
            return;
        }
        self.in_flight = true;
        let n = self.queue.len().min(MAX_BATCH);
        let last = self.queue[n - 1].0;
        let writes: Vec<Write> = self.queue.drain(..n).map(|(_, w)| w).collect();
        let flush = flush_now.then(|| {
            self.flushing = true;
            self.last_flush_start = Some(Instant::now());
            let (docs, audit_len, anchors) = self.marks.take(last);
            FlushAfter {
                target: last,
                docs,
                audit_len,
                anchors,
                anchor_log: self.ledger.anchors.clone(),
            }
        });
        let covered = last - self.flushed;
        let batch = WriteBatch {
            writes,
            chain: self.chain.take(),
            flush,
        };
        ctx.spawn(
            self.crypto
                .send(batch)
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let done: BatchDone = match res {
                        Ok(d) => d,
                        Err(e) => {
                            let e = StoreError::Backend(format!("write pool: {e}"));
                            return act.fatal(&e, ctx);
                        }
                    };
                    if let Err(e) = &done.result {
                        return act.fatal(e, ctx);
                    }
                    act.in_flight = false;
                    act.chain = done.chain;
                    act.written = last;
                    if done.flushed {
                        act.flushing = false;
                        act.flushed = last;
                        if let Some(c) = &act.chain {
                            act.marks.audit_len = act.marks.audit_len.max(c.len());
                        }
                        metrics().store_flush_batch.observe(covered as f64);
                        act.notify(ctx);
                    } else {
                        if let Some(c) = &act.chain {
                            act.marks.audit.push_back((last, c.len()));
                        }
                        act.marks
                            .anchors
                            .extend(done.anchors.into_iter().map(|a| (last, a)));
                    }
                    act.kick(ctx);
                }),
        );
    }

    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.flushed >= self.written || self.failed {
            return;
        }
        self.flushing = true;
        self.last_flush_start = Some(Instant::now());
        let target = self.written;
        let batch = target - self.flushed;
        let store = self.store.clone();
        let manifest = self.ledger.manifest.clone();
        let anchor_log = self.ledger.anchors.clone();
        let (docs, audit, anchors) = self.marks.take(target);
        let started = std::time::Instant::now();
        let flush = tokio::task::spawn_blocking(move || {
            flush_and_record(
                &*store,
                &manifest,
                &anchor_log,
                target,
                docs,
                audit,
                &anchors,
            )
        });
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
                    act.notify(ctx);
                    act.kick(ctx);
                }
                Ok(Err(e)) => act.fatal(&e, ctx),
                Err(e) => act.fatal(&StoreError::Backend(e.to_string()), ctx),
            }
        }));
    }

    /// Queues a write that reports on `done`; the answer comes once it is durable.
    fn enqueue_until_durable<T: Send + 'static>(
        &mut self,
        w: Write,
        done: oneshot::Receiver<Result<T, StoreError>>,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<T, StoreError>> {
        self.enqueue(w, ctx);
        let flushed = self.flushed_future(ctx);
        Box::pin(async move {
            let r = done
                .await
                .unwrap_or_else(|_| Err(StoreError::Backend("store writer stopped".into())));
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
            self.kick(ctx);
        }
        rx
    }

    /// Tells documents and `FlushNow` callers what the last flush covered.
    fn notify(&mut self, ctx: &mut Context<Self>) {
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
        for f in self.store.take_fenced() {
            metrics().cluster_fenced.inc();
            self.fenced.insert(Arc::from(f.doc.as_str()), f.from_rev);
            // The audit chain says that the ops it recorded from `from_rev` on were not stored.
            if self.audit {
                let e = AuditEvent::Fenced {
                    doc: f.doc,
                    from_rev: f.from_rev,
                };
                self.enqueue(Write::Audit(e), ctx);
            }
        }
        for (doc, (rev, notify)) in highest {
            let fenced = self.fenced.contains_key(&doc);
            notify.do_send(Durable { rev, fenced });
        }
        self.events_flushed();
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
        ctx.run_interval(DISK_CHECK_INTERVAL, |act, _| {
            act.ledger.disk.check();
        });
        if let Durability::Relaxed { interval } = self.durability {
            ctx.run_interval(interval, |act, ctx| act.start_flush(ctx));
        }
        if self.audit {
            // Summaries of counted refusals are written soon after their window ends.
            ctx.run_interval(REFUSAL_WINDOW / 4, |act, ctx| {
                if let Some(summary) = act.refusals.roll(crate::security::audit::now_ms()) {
                    act.enqueue(Write::Audit(summary), ctx);
                }
            });
        }
        if self.events.is_some() {
            ctx.run_interval(EVENT_TICK, |act, ctx| act.emit_due(false, ctx));
        }
        if let (true, Some(every)) = (self.audit, self.checkpoint_interval) {
            ctx.run_interval(every, |act, ctx| {
                act.enqueue(Write::Checkpoint, ctx);
                act.start_flush(ctx);
            });
        }
    }
}
