//! Cluster mode: which documents' changes this node's store writer tells (`docs/EVENTS.md`,
//! "Cluster mode"). The event cursor of a document is the cluster's (one per document, in
//! JetStream), and a document's changes are told by the node that owns it:
//!
//! - [`EventsOwn`]: a document actor started under a lease. The revisions between the
//!   cluster's cursor and the revision it loaded were stored by an owner that did not tell
//!   them (killed, or paused past its lease and stepped down): they are told now, as
//!   `recovered` changes, before any change of the new owner.
//! - [`EventsDisown`]: the actor stops ordering the document. Unloading (`tell`), its pending
//!   change is written at once and the answer comes once it is durable, before the lease is
//!   released, so the next owner's cursor is past it; stepping down (the lease is lost), its
//!   pending change is dropped: the next owner tells those revisions.
//!
//! Invariants:
//! - A change is written only while the document's lease is fresh ([`LeaseClock`]); otherwise
//!   it stays pending until the owner renews or steps down.
//! - A document's changes wait until the catch-up of [`EventsOwn`] is written (per-document
//!   order); revisions at or below the one loaded are not noted again.
//! - Outside cluster mode nothing here runs: every change is told by the only node.

use std::collections::HashMap;

use coedit_protocol::DocKind;

use super::*;
use crate::cluster::owner::LeaseClock;
use crate::events::{outbox, EventType};

/// A document this node owns.
struct Owned {
    /// Its lease's clock.
    clock: Arc<LeaseClock>,
    /// Revisions up to here were told by the catch-up (or are being).
    told_to: u64,
    /// The catch-up was written: the document's changes may go.
    ready: bool,
}

/// The documents this node owns, for change events.
#[derive(Default)]
pub(super) struct Ownership {
    docs: HashMap<Arc<str>, Owned>,
}

impl Ownership {
    /// Whether durable revision `rev` of `doc` is this node's to tell.
    pub(super) fn takes(&self, doc: &str, rev: u64) -> bool {
        self.docs.get(doc).is_some_and(|o| rev > o.told_to)
    }

    /// Whether `doc`'s pending change may be written now.
    pub(super) fn ready(&self, doc: &str) -> bool {
        self.docs
            .get(doc)
            .is_none_or(|o| o.ready && o.clock.is_fresh())
    }

    /// Forgets `doc` (deleted).
    pub(super) fn forget(&mut self, doc: &str) {
        self.docs.remove(doc);
    }
}

/// Cluster mode: a document actor started under a lease, having loaded revision `rev`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EventsOwn {
    /// The document.
    pub doc: Arc<str>,
    /// Its kind.
    pub kind: DocKind,
    /// The revision the actor loaded.
    pub rev: u64,
    /// Its lease's clock.
    pub clock: Arc<LeaseClock>,
}

impl Handler<EventsOwn> for StoreActor {
    type Result = ();

    /// Reads the cluster's cursor (off the actor: a JetStream read) and tells what lies
    /// between it and `rev`.
    fn handle(&mut self, m: EventsOwn, ctx: &mut Context<Self>) {
        let Some(e) = self.events.as_mut().filter(|e| e.changes) else {
            return;
        };
        let Some(own) = e.owned.as_mut() else {
            return;
        };
        // A change left from an earlier ownership of this node: its revisions are the
        // catch-up's (at or below `rev`).
        e.coalescer.take(&m.doc);
        own.docs.insert(
            m.doc.clone(),
            Owned {
                clock: m.clock.clone(),
                told_to: m.rev,
                ready: false,
            },
        );
        let store = self.store.clone();
        let doc = m.doc.clone();
        let read = tokio::task::spawn_blocking(move || outbox::cursor_of(&*store, &doc));
        ctx.spawn(read.into_actor(self).map(move |res, act, ctx| {
            let now = crate::security::audit::now_ms();
            let Some(e) = act.events.as_mut() else {
                return;
            };
            let Some(own) = e.owned.as_mut() else {
                return;
            };
            match own.docs.get_mut(&m.doc) {
                // Still this ownership (not stepped down, not taken again since).
                Some(o) if Arc::ptr_eq(&o.clock, &m.clock) => o.ready = true,
                _ => return,
            }
            let cursor = match res {
                Ok(Ok(c)) => c.unwrap_or(0),
                Ok(Err(e)) => {
                    warn!(doc = %m.doc, error = %e, "change events: the cursor could not be read; revisions an earlier owner did not tell stay untold");
                    return;
                }
                Err(e) => {
                    warn!(doc = %m.doc, error = %e, "change events: cursor read failed");
                    return;
                }
            };
            let data = outbox::recovered_data(&m.doc, Some(m.kind), cursor, m.rev);
            if data.is_empty() {
                return;
            }
            debug!(doc = %m.doc, from = cursor + 1, to = m.rev, "telling revisions an earlier owner did not");
            let n = data.len();
            let mut writes = Vec::new();
            let mut evs = Vec::new();
            for (i, (t, d)) in data.into_iter().enumerate() {
                if !e.wants(t) {
                    continue;
                }
                let ev = e.event(t, now, d);
                let cursor = (i + 1 == n).then_some((&*m.doc, m.rev));
                writes.extend(outbox::event_writes(&ev, cursor));
                evs.push(ev);
            }
            if evs.last().is_none_or(|ev| ev.kind != EventType::Changed) {
                writes.push(outbox::cursor_put(&m.doc, m.rev));
            }
            act.write_events(writes, evs, ctx);
        }));
    }
}

/// Cluster mode: a document actor stops ordering the document. With `tell` (it unloads), its
/// pending change is written and the answer comes once that is durable; without (it stepped
/// down: the lease is lost), the change is dropped for the next owner to tell.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EventsDisown {
    /// The document.
    pub doc: Arc<str>,
    /// Write its pending change (else drop it).
    pub tell: bool,
}

impl Handler<EventsDisown> for StoreActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, m: EventsDisown, ctx: &mut Context<Self>) -> Self::Result {
        let now = crate::security::audit::now_ms();
        let mut out = (Vec::new(), Vec::new());
        if let Some(e) = self.events.as_mut() {
            if let Some(own) = e.owned.as_mut() {
                own.docs.remove(&m.doc);
                let change = e.coalescer.take(&m.doc);
                if let Some(c) = change.filter(|_| m.tell) {
                    out = e.change_events(c, now);
                }
            }
        }
        let (writes, evs) = out;
        if writes.is_empty() {
            return Box::pin(async {});
        }
        self.write_events(writes, evs, ctx);
        let rx = self.flushed_future(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
