//! The messages other actors send the store writer to write or wait: `Append` (an op or
//! Yjs update and its audit record), `PutSnapshot` (with compaction), `DeleteDoc`,
//! `RotateMasterKey`, `FlushNow`, `Unfence` (cluster mode); and the tests' `Progress` probe.
//! Each queues its write in arrival order (the invariants are `store_actor.rs`'s).

use super::*;

/// Append one applied op to a document's log; `notify` hears `Durable` once it is flushed
/// (strict mode only).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    /// Document id.
    pub doc: Arc<str>,
    /// The op or update.
    pub record: LogEntry,
    /// The author's token subject (authentication on), for the audit record.
    pub subject: Option<Arc<str>>,
    /// The document actor.
    pub notify: Recipient<Durable>,
}

impl Handler<Append> for StoreActor {
    type Result = ();

    /// Queues the record and, in strict mode, the document for the flush that covers it.
    fn handle(&mut self, m: Append, ctx: &mut Context<Self>) {
        let (doc, rev) = (m.doc.clone(), m.record.rev());
        // Marks and waiter first: the write may leave with its flush at once.
        let seq = self.received + 1;
        self.marks.ops.push_back((seq, doc.clone(), rev));
        self.event_op(seq, &doc, &m.record, m.subject.as_ref());
        if self.strict() {
            self.waiters.push(Waiter {
                seq,
                doc,
                rev,
                notify: m.notify,
            });
        }
        let queued = self.enqueue(
            Write::Op {
                doc: m.doc,
                record: m.record,
                subject: m.subject,
            },
            ctx,
        );
        debug_assert_eq!(queued, seq);
    }
}

/// Store a snapshot, then optionally compact the log before `compact_at`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PutSnapshot {
    /// Document id.
    pub doc: Arc<str>,
    /// The snapshot.
    pub snapshot: SnapshotEntry,
    /// Delete ops and snapshots made obsolete at or before this revision.
    pub compact_at: Option<u64>,
}

impl Handler<PutSnapshot> for StoreActor {
    type Result = ();

    /// Queues the snapshot (flushed with the next flush) and the compaction; skipped below the
    /// disk space reserve (a snapshot only speeds up loading).
    fn handle(&mut self, m: PutSnapshot, ctx: &mut Context<Self>) {
        if !self.ledger.disk.writable() {
            debug!(doc = %m.doc, "snapshot skipped: disk space below the reserve");
            return;
        }
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

/// Delete a document's records (and, encrypted, shred its key); answers once durable. The
/// caller makes sure no actor of the document is open.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeleteDoc {
    /// Document id.
    pub doc: String,
    /// Who deletes it (token subject), for its change event.
    pub subject: Option<String>,
}

impl Handler<DeleteDoc> for StoreActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    /// Queues the deletion behind earlier writes of the document, then waits for the flush.
    fn handle(&mut self, m: DeleteDoc, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let wseq = self.received + 1;
        let events = self.deletion_events(&m.doc, m.subject, wseq);
        let write = Write::Delete {
            doc: m.doc,
            wseq,
            done: tx,
            events,
        };
        self.enqueue_until_durable(write, rx, ctx)
    }
}

/// Re-wrap every data key under the newest key of a ring; answers with the count once
/// durable.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct RotateMasterKey {
    /// The new ring (must still hold the versions the keys are wrapped with now).
    pub ring: MasterKeyring,
}

impl Handler<RotateMasterKey> for StoreActor {
    type Result = ResponseFuture<Result<usize, StoreError>>;

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

/// A fenced document's old actor stepped down and everything it sent was flushed (cluster
/// mode): the document may be written again by the actor that loads it next.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unfence {
    /// The document.
    pub doc: Arc<str>,
}

impl Handler<Unfence> for StoreActor {
    type Result = ();

    fn handle(&mut self, m: Unfence, _: &mut Context<Self>) {
        self.fenced.remove(&m.doc);
        self.store.unfence(&m.doc);
    }
}

/// Test probe: the sequence numbers of the last write received, the last applied to the store
/// (as this actor knows: a batch counts once it returns) and the last covered by a completed
/// flush, and whether a flush is running. Tests wait on it instead of on timing.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "(u64, u64, u64, bool)")]
pub(crate) struct Progress;

#[cfg(test)]
impl Handler<Progress> for StoreActor {
    type Result = MessageResult<Progress>;

    /// Answers `(received, written, flushed, flushing)`.
    fn handle(&mut self, _: Progress, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.received, self.written, self.flushed, self.flushing))
    }
}
