//! What an owning document actor (text or Yjs) does with its lease: renew it every
//! `renew`, step down when it is lost or when NATS was out of reach for longer than
//! `lease − renew` (another node may take it after `lease`), release it when the actor stops.
//! And [`find_owner`]: how a node about to load a document takes its lease or finds the live
//! node holding it.
//!
//! Invariants:
//! - One renewal in flight at a time; each carries the revision of the last one.
//! - An actor that cannot prove it still holds the lease stops ordering the document before
//!   the lease could have expired on the server: it steps down at `lease − renew` without a
//!   successful renewal, not at `lease`.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tracing::{debug, warn};

use coedit_protocol::DocKind;

use super::wire::{self, OwnerMsg, Reply, ToOwner};
use super::{Acquired, Cluster, LeaseError, OWNER_RETRY};
use crate::errors::ActorError;
use crate::metrics::metrics;
use crate::registry::{DocAddr, DocClosed, DocClosing, Registry};
use crate::store_actor::{EventsDisown, EventsOwn, FlushNow, StoreActor, Unfence};

/// Cluster mode: longest a load waits for a silent owner's lease to expire.
pub const OWNER_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A lease this node holds for an open document.
pub struct HeldLease {
    /// The document.
    pub doc: Arc<str>,
    /// The routing connection.
    pub cluster: Arc<Cluster>,
    /// Revision of the last write of the lease key.
    pub revision: u64,
    /// When that write was acknowledged (or the lease taken).
    pub renewed: Instant,
    /// A renewal is in flight.
    pub renewing: bool,
    /// The document's kind, written in the lease.
    pub kind: DocKind,
    /// The task feeding the actor other nodes' requests.
    pub gateway: Option<tokio::task::JoinHandle<()>>,
    /// When the lease was last proven held, shared with the store writer's change events
    /// (which hold a document's changes while the lease is not fresh).
    pub clock: Arc<LeaseClock>,
}

/// When a lease was last proven held (taken or renewed), readable from other actors: a lease
/// is *fresh* while less than `lease − renew` has passed since, the time after which its
/// holder steps down because another node may take it.
#[derive(Debug)]
pub struct LeaseClock {
    renewed: std::sync::Mutex<Instant>,
    limit: std::time::Duration,
}

impl LeaseClock {
    /// A clock of a lease just taken, fresh for `limit`.
    pub fn new(limit: std::time::Duration) -> Self {
        LeaseClock {
            renewed: std::sync::Mutex::new(Instant::now()),
            limit,
        }
    }

    /// The lease was proven held at `at`.
    pub fn renewed(&self, at: Instant) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = (*r).max(at);
        }
    }

    /// Whether this node may still act as the document's owner.
    pub fn is_fresh(&self) -> bool {
        self.renewed
            .lock()
            .map(|r| r.elapsed() < self.limit)
            .unwrap_or(false)
    }
}

impl HeldLease {
    /// A lease of `doc` just taken at `revision`.
    pub fn new(doc: Arc<str>, cluster: Arc<Cluster>, revision: u64, kind: DocKind) -> Self {
        let clock = Arc::new(LeaseClock::new(cluster.lease.saturating_sub(cluster.renew)));
        HeldLease {
            doc,
            cluster,
            revision,
            renewed: Instant::now(),
            renewing: false,
            kind,
            gateway: None,
            clock,
        }
    }

    /// Stops serving requests and gives the lease up (if nobody took it meanwhile). Dropping
    /// a `HeldLease` does the same (an actor that was loaded but never started, say).
    pub fn release(self) {}

    /// Tells the store writer this node now orders the document, loaded at `rev` (change
    /// events: it tells what an earlier owner left untold, then this node's changes).
    pub fn own_events(&self, writer: &Addr<StoreActor>, rev: u64) {
        writer.do_send(EventsOwn {
            doc: self.doc.clone(),
            kind: self.kind,
            rev,
            clock: self.clock.clone(),
        });
    }
}

/// An unloading actor gives its lease up: first the store writer writes the document's
/// pending change (`tell`; dropped if not: the actor was fenced) and flushes it, so that the
/// next owner's event cursor is past it; then the lease is released. Nothing without a lease.
pub async fn give_up(writer: Addr<StoreActor>, lease: Option<HeldLease>, tell: bool) {
    if let Some(l) = lease {
        let _ = writer
            .send(EventsDisown {
                doc: l.doc.clone(),
                tell,
            })
            .await;
        l.release();
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.abort();
        }
        let (leases, revision, doc) =
            (self.cluster.leases.clone(), self.revision, self.doc.clone());
        // Outside a runtime (a process exiting) the lease simply expires.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = leases.release(&doc, revision).await {
                    tracing::debug!(doc = %doc, error = %e, "lease not released (taken or expired)");
                }
            });
        }
    }
}

/// What a document actor hands over when it steps down.
pub struct Handover {
    /// The document id.
    pub id: Arc<str>,
    /// The name clients use.
    pub name: Arc<str>,
    /// The actor's address, as the registry knows it.
    pub addr: DocAddr,
    /// The store writer.
    pub writer: Addr<StoreActor>,
    /// The registry.
    pub registry: Addr<Registry>,
}

/// The part of a step-down both document actors share, once they closed their subscribers
/// and dropped what was not durable: the registry hears `DocClosing` at once; the lease is
/// released; once the writer flushed everything the actor sent, the document may be written
/// again (`Unfence`); then the registry forgets the actor and it stops.
pub fn hand_over<A>(h: Handover, lease: Option<HeldLease>, ctx: &mut Context<A>)
where
    A: Actor<Context = Context<A>>,
{
    crate::metrics::metrics().cluster_step_downs.inc();
    h.registry.do_send(DocClosing {
        id: h.id.clone(),
        addr: h.addr.clone(),
    });
    // Its pending change is the next owner's to tell (from the cluster's cursor).
    h.writer.do_send(EventsDisown {
        doc: h.id.clone(),
        tell: false,
    });
    if let Some(l) = lease {
        l.release();
    }
    let Handover {
        id,
        name,
        addr,
        writer,
        registry,
    } = h;
    let done = async move {
        let _ = writer.send(FlushNow).await;
        let _ = writer.send(Unfence { doc: id.clone() }).await;
        registry.do_send(DocClosed { id, name, addr });
    };
    ctx.wait(actix::fut::wrap_future::<_, A>(done).map(|(), _, ctx: &mut Context<A>| ctx.stop()));
}

/// A document actor that may hold a lease.
pub trait LeaseHolder: Actor<Context = Context<Self>> {
    /// Its lease, if it holds one.
    fn lease_mut(&mut self) -> Option<&mut HeldLease>;
    /// Its document id.
    fn doc_id(&self) -> Arc<str>;
    /// Stop ordering the document now (the lease is lost or cannot be renewed).
    fn step_down(&mut self, why: &str, ctx: &mut Context<Self>);
}

/// Renews `A`'s lease every `renew` while it runs.
pub fn keep_lease<A: LeaseHolder>(act: &mut A, ctx: &mut Context<A>) {
    let Some(renew) = act.lease_mut().map(|l| l.cluster.renew) else {
        return;
    };
    ctx.run_interval(renew, |act, ctx| renew_once(act, ctx));
}

fn renew_once<A: LeaseHolder>(act: &mut A, ctx: &mut Context<A>) {
    let doc = act.doc_id();
    let Some(l) = act.lease_mut() else {
        return;
    };
    let limit = l.cluster.lease.saturating_sub(l.cluster.renew);
    if l.renewed.elapsed() >= limit {
        warn!(doc = %doc, "lease not renewed in time: stepping down");
        return act.step_down("the lease could not be renewed in time", ctx);
    }
    if l.renewing {
        return;
    }
    l.renewing = true;
    let (leases, kind, revision) = (l.cluster.leases.clone(), l.kind, l.revision);
    let started = Instant::now();
    let fut = async move { leases.renew(&doc, kind, revision).await };
    ctx.spawn(fut.into_actor(act).map(move |res, act, ctx| {
        let Some(l) = act.lease_mut() else {
            return;
        };
        l.renewing = false;
        match res {
            Ok(revision) => {
                l.revision = revision;
                l.renewed = started;
                l.clock.renewed(started);
            }
            Err(LeaseError::Lost(_)) => act.step_down("another node took the lease", ctx),
            Err(e) => warn!(error = %e, "lease renewal failed; retrying"),
        }
    }));
}

/// Cluster mode: takes document `doc`'s lease, or finds the live node that holds it. A holder
/// that does not answer (dead, or unloading the document) is waited for until its lease
/// expires or it releases it, up to [`OWNER_WAIT`].
pub async fn find_owner(
    c: &Arc<Cluster>,
    doc: &str,
    kind: DocKind,
) -> Result<Acquired, ActorError> {
    let deadline = std::time::Instant::now() + OWNER_WAIT;
    loop {
        match c.leases.acquire(doc, kind).await {
            Ok(Acquired::Owned(rev)) => {
                metrics().cluster_leases_taken.inc();
                return Ok(Acquired::Owned(rev));
            }
            Ok(Acquired::Held(v)) => {
                let ping = ToOwner {
                    v: wire::WIRE_VERSION,
                    node: c.node.to_string(),
                    msg: OwnerMsg::Ping {
                        sessions: Vec::new(),
                    },
                };
                let answer = c.request(c.doc_subject(doc), wire::encode(&ping)).await;
                if let Ok(Some(Reply::Ok)) = answer.map(|b| wire::decode::<Reply>(&b)) {
                    return Ok(Acquired::Held(v));
                }
                debug!(doc, holder = %v.node, "lease holder does not answer; waiting for the lease");
            }
            Err(e) => debug!(doc, error = %e, "lease not taken; trying again"),
        }
        if std::time::Instant::now() >= deadline {
            return Err(ActorError::Remote {
                code: coedit_protocol::ErrorCode::Unavailable,
                msg: format!(
                    "no node can serve document {doc:?} now: its owner does not answer and its \
                     lease has not expired, or NATS is out of reach; retry"
                ),
            });
        }
        tokio::time::sleep(OWNER_RETRY).await;
    }
}
