//! The store actor: the only writer of the store, with group commit.
//!
//! Document actors send every accepted op (`Append`) and snapshot (`PutSnapshot`) here. Writes
//! go into the store at once (buffered); at most one flush runs at a time, on a blocking
//! thread, covering everything written before it started. When it completes, every document
//! with ops covered by it is told `Durable { rev }` (its highest covered revision), and if more
//! was written meanwhile the next flush starts at once. So in strict mode all ops arriving,
//! across all documents, while one flush is in progress go into the next one.
//!
//! Invariants:
//! - Records of one document are written in the order its actor sent them (one mailbox).
//! - `Durable { rev }` is sent only after a flush that started after `rev` was written.
//! - A failed flush stops the process (exit code `EXIT_STORAGE_FAILURE`): the server can no
//!   longer tell which edits are durable, and acknowledging any would be a lie. Clients resend
//!   unacknowledged ops after the restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use coedit_protocol::DocumentSnapshot;
use tokio::sync::oneshot;
use tracing::{error, trace};

use crate::document::Durable;
use crate::store::{LogRecord, Store, StoreError};

/// Exit code when the store cannot flush.
pub const EXIT_STORAGE_FAILURE: i32 = 74;
/// Default flush interval in relaxed mode.
pub const DEFAULT_RELAXED_FLUSH_INTERVAL: Duration = Duration::from_millis(200);

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
    /// Writes so far (a sequence number per write).
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
    /// A writer for `store`.
    pub fn new(store: Arc<dyn Store>, durability: Durability) -> Self {
        StoreActor {
            store,
            durability,
            written: 0,
            flushed: 0,
            flushing: false,
            waiters: Vec::new(),
            flush_waiters: Vec::new(),
        }
    }

    fn fatal(e: &StoreError) -> ! {
        error!(error = %e, "storage failure: stopping so that no unsaved edit is acknowledged");
        std::process::exit(EXIT_STORAGE_FAILURE)
    }

    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.flushed >= self.written {
            return;
        }
        self.flushing = true;
        let target = self.written;
        let store = self.store.clone();
        let flush = tokio::task::spawn_blocking(move || store.flush());
        ctx.spawn(flush.into_actor(self).map(move |res, act, ctx| {
            act.flushing = false;
            match res {
                Ok(Ok(())) => {
                    trace!(target, "flushed");
                    act.flushed = target;
                    act.notify();
                    act.start_flush(ctx);
                }
                Ok(Err(e)) => Self::fatal(&e),
                Err(e) => Self::fatal(&StoreError::Backend(e.to_string())),
            }
        }));
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

    /// Writes the record and, in strict mode, queues the document for the next flush.
    fn handle(&mut self, m: Append, ctx: &mut Context<Self>) {
        if let Err(e) = self.store.append(&m.doc, std::slice::from_ref(&m.record)) {
            Self::fatal(&e);
        }
        self.written += 1;
        if self.durability == Durability::Strict {
            self.waiters.push(Waiter {
                seq: self.written,
                doc: m.doc,
                rev: m.record.rev,
                notify: m.notify,
            });
            self.start_flush(ctx);
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

    /// Writes the snapshot (flushed with the next flush) and compacts.
    fn handle(&mut self, m: PutSnapshot, _: &mut Context<Self>) {
        let res = self
            .store
            .put_snapshot(&m.doc, &m.snapshot)
            .and_then(|()| match m.compact_at {
                Some(rev) => self.store.compact(&m.doc, rev),
                None => Ok(()),
            });
        if let Err(e) = res {
            Self::fatal(&e);
        }
        self.written += 1;
    }
}

/// Flush everything written so far; answers once it is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushNow;

impl Handler<FlushNow> for StoreActor {
    type Result = ResponseFuture<()>;

    /// Starts a flush if needed and waits for one covering every write so far.
    fn handle(&mut self, _: FlushNow, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.flushed >= self.written {
            let _ = tx.send(());
        } else {
            self.flush_waiters.push((self.written, tx));
            self.start_flush(ctx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
