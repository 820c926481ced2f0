//! The registry: one actor per open document (a `DocActor` for text, a `YDocActor` for Yjs),
//! opened on first use. It owns the whole
//! open lifecycle: WebSocket joins and REST calls reach a document only through
//! [`call_doc`] and [`call_kind`] ("open or wait, then ask", `registry/calls.rs`).
//!
//! A document's slot goes `Opening` (its store read, decryption and replay run on a blocking
//! thread, off the registry's: opens of different documents proceed in parallel, and every
//! request for the document meanwhile waits in the slot) → `Open` → `Closing` (an idle actor
//! said `DocClosing`; requests wait for its `DocClosed`) → absent, or `Opening` again for the
//! requests that waited.
//!
//! Invariants:
//! - One namespace of ids: a document is opened as the kind of its stored records, or (nothing
//!   stored) as the kind first asked for; a request for the other kind gets
//!   `ActorError::WrongKind`, whether the document is stored, loading or open.
//! - At most one document actor per document id exists: a new one is loaded only once the old one
//!   has saved and said `DocClosed` (or is gone), so the load sees the latest state.
//! - No request sleeps and retries: a request that reached an actor just as it began to close
//!   asks again, and by then the registry has the actor's `DocClosing` (sent before the actor
//!   refuses anything), so it waits in the slot. [`MAX_OPEN_ROUNDS`] bounds that.
//! - Every waiter gets an answer: the load's result, `Closing` if the registry shuts down or
//!   the document is deleted meanwhile.
//! - Document ids reaching the registry have been validated by the protocol layer.
//! - At most `parallel_loads` documents load at once (a mass reconnect, or a client opening
//!   many documents, queues cheaply instead of spawning a blocking thread per document).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use coedit_protocol::yjs::YDocConfig;
use coedit_protocol::DocKind;

use crate::cluster::lease::LeaseValue;
use crate::cluster::owner::find_owner;
use crate::cluster::owner::HeldLease;
use crate::cluster::remote_doc::RemoteDoc;
use crate::cluster::{Acquired, Cluster};
use crate::document::{DocActor, DocActorConfig, DocDeps, Shutdown};
use crate::errors::ActorError;
use crate::metrics::metrics;
use crate::security::audit::AuditEvent;
use crate::storage::disk::DiskSpace;
use crate::storage::manifest::Manifest;
use crate::storage::Store;
use crate::store_actor::{AppendAudit, Checkpoint, DeleteDoc, FlushNow, StoreActor};
use crate::ydoc::YDocActor;

mod calls;
pub use calls::{call_doc, call_kind, DocLink};

/// Times a request asks the registry again after the actor it got was closing (each round
/// waits for that actor's `DocClosed`; more than one round happens only when a document
/// unloads again at once).
pub const MAX_OPEN_ROUNDS: u32 = 4;
/// Longest a request waits for a document to open (its load, or an unloading actor's save).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of documents loading at once.
pub const DEFAULT_PARALLEL_LOADS: usize = 16;

/// The actor of an open document, of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocAddr {
    /// A text document.
    Text(Addr<DocActor>),
    /// A Yjs document.
    Yjs(Addr<YDocActor>),
    /// A document another node owns (cluster mode), and its lease: that node, the kind the
    /// lease names (the owner's actor answers a request of the other kind `WrongKind`), its
    /// advertised address.
    Remote(Addr<RemoteDoc>, Arc<LeaseValue>),
}

impl DocAddr {
    /// Its kind.
    pub fn kind(&self) -> DocKind {
        match self {
            DocAddr::Text(_) => DocKind::Text,
            DocAddr::Yjs(_) => DocKind::Yjs,
            DocAddr::Remote(_, lease) => lease.kind,
        }
    }

    fn connected(&self) -> bool {
        match self {
            DocAddr::Text(a) => a.connected(),
            DocAddr::Yjs(a) => a.connected(),
            DocAddr::Remote(a, ..) => a.connected(),
        }
    }

    /// Asks the actor to save and stop.
    async fn shutdown(&self) -> Result<(), actix::MailboxError> {
        match self {
            DocAddr::Text(a) => a.send(Shutdown).await,
            DocAddr::Yjs(a) => a.send(Shutdown).await,
            DocAddr::Remote(a, ..) => a.send(Shutdown).await,
        }
    }
}

/// A document actor of one kind, reached through the registry (see [`call_kind`]).
pub trait KindActor: Actor<Context = Context<Self>> {
    /// Its kind.
    const KIND: DocKind;
    /// Its address in `addr`, if `addr` is of this kind.
    fn addr_of(addr: DocAddr) -> Option<Addr<Self>>;
}

impl KindActor for DocActor {
    const KIND: DocKind = DocKind::Text;
    fn addr_of(addr: DocAddr) -> Option<Addr<Self>> {
        match addr {
            DocAddr::Text(a) => Some(a),
            DocAddr::Yjs(_) | DocAddr::Remote(..) => None,
        }
    }
}

impl KindActor for YDocActor {
    const KIND: DocKind = DocKind::Yjs;
    fn addr_of(addr: DocAddr) -> Option<Addr<Self>> {
        match addr {
            DocAddr::Yjs(a) => Some(a),
            DocAddr::Text(_) | DocAddr::Remote(..) => None,
        }
    }
}

/// A loaded document actor, not yet started.
pub enum Loaded {
    /// A text document.
    Text(Box<DocActor>),
    /// A Yjs document.
    Yjs(Box<YDocActor>),
    /// Owned by another node (cluster mode).
    Remote(Arc<LeaseValue>),
}

/// Someone waiting for a document's actor.
struct Waiter {
    /// The name the request used.
    name: String,
    /// Whether it may create the document.
    create: bool,
    /// The kind it asks for.
    kind: DocKind,
    tx: oneshot::Sender<Result<DocAddr, ActorError>>,
}

impl Waiter {
    /// Answers with `addr` if it is of the kind asked for (a stand-in for another node's
    /// owner takes both kinds: the owner answers).
    fn answer(self, id: &str, addr: &DocAddr) {
        let res = if addr.kind() == self.kind || matches!(addr, DocAddr::Remote(..)) {
            Ok(addr.clone())
        } else {
            Err(ActorError::WrongKind {
                doc: id.to_string(),
                kind: addr.kind(),
            })
        };
        let _ = self.tx.send(res);
    }
}

/// Where a document is in its lifecycle.
enum Slot {
    /// Running.
    Open(DocAddr),
    /// Being loaded on a blocking thread; these wait for it.
    Opening(Vec<Waiter>),
    /// Unloading after idling; these wait for its `DocClosed`, then it is loaded again.
    Closing { addr: DocAddr, waiters: Vec<Waiter> },
}

/// The registry actor. See the module documentation.
pub struct Registry {
    /// Documents open, opening or closing.
    docs: HashMap<Arc<str>, Slot>,
    /// Settings handed to every document actor.
    config: DocActorConfig,
    /// Limits of Yjs documents.
    yconfig: YDocConfig,
    /// Where documents load from.
    store: Arc<dyn Store>,
    /// The store's writer.
    writer: Addr<StoreActor>,
    /// Acknowledged revisions, checked when a document loads.
    manifest: Arc<Manifest>,
    /// The free-space guard.
    disk: Arc<DiskSpace>,
    /// Threads document actors run on, chosen by document id; empty: the registry's own.
    arbiters: Vec<ArbiterHandle>,
    /// Shutting down: no document opens any more.
    shutting_down: bool,
    /// Documents being deleted: they do not open until the deletion is durable.
    deleting: HashSet<String>,
    /// Permits to load: one per document loading now.
    loads: Arc<tokio::sync::Semaphore>,
    /// Cluster mode: leases and routing.
    cluster: Option<Arc<Cluster>>,
}

impl Registry {
    /// A registry opening documents from `store` (written through `writer`), running them on
    /// `arbiters` (spread by document id) or, if none are given, on the registry's own thread.
    pub fn new(
        config: DocActorConfig,
        store: Arc<dyn Store>,
        writer: Addr<StoreActor>,
        arbiters: Vec<ArbiterHandle>,
    ) -> Self {
        Registry {
            docs: HashMap::new(),
            config,
            yconfig: YDocConfig::default(),
            store,
            writer,
            manifest: Manifest::disabled(),
            disk: DiskSpace::unlimited(),
            arbiters,
            shutting_down: false,
            deleting: HashSet::new(),
            loads: Arc::new(tokio::sync::Semaphore::new(DEFAULT_PARALLEL_LOADS)),
            cluster: None,
        }
    }

    /// Cluster mode: a document is loaded only under its lease; one another node holds is
    /// reached through a `RemoteDoc`.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Limits Yjs documents with `yconfig`.
    pub fn with_yjs(mut self, yconfig: YDocConfig) -> Self {
        self.yconfig = yconfig;
        self
    }

    /// Lets at most `n` documents load at once.
    pub fn with_parallel_loads(mut self, n: usize) -> Self {
        self.loads = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// Checks loaded documents against `manifest` and refuses edits when `disk` says so.
    pub fn with_ledger(mut self, manifest: Arc<Manifest>, disk: Arc<DiskSpace>) -> Self {
        self.manifest = manifest;
        self.disk = disk;
        self
    }

    fn arbiter_for(&self, id: &str) -> Option<&ArbiterHandle> {
        if self.arbiters.is_empty() {
            return None;
        }
        let h = ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(id);
        self.arbiters.get(h as usize % self.arbiters.len())
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// The actor of document `id`, loading it if it is not open.
#[derive(Message)]
#[rtype(result = "Result<DocAddr, ActorError>")]
pub struct OpenDoc {
    /// The kind asked for (a document of the other kind is `WrongKind`).
    pub kind: DocKind,
    /// A validated document id, as stored (tenant-qualified with authentication).
    pub id: String,
    /// The id clients use (echoed in messages).
    pub name: String,
    /// Whether a document with nothing stored may be created (else `UnknownDocument`).
    pub create: bool,
}

impl Handler<OpenDoc> for Registry {
    type Result = ResponseFuture<Result<DocAddr, ActorError>>;

    /// Answers with the running actor, or queues the request in the document's slot (loading
    /// it if nobody is); refused during shutdown and while the document is being deleted.
    fn handle(&mut self, m: OpenDoc, ctx: &mut Context<Self>) -> Self::Result {
        if self.shutting_down || self.deleting.contains(&m.id) {
            return Box::pin(std::future::ready(Err(ActorError::Closing(m.name))));
        }
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            name: m.name.clone(),
            create: m.create,
            kind: m.kind,
            tx,
        };
        let name = m.name.clone();
        let answer = Box::pin(async move {
            match tokio::time::timeout(OPEN_TIMEOUT, rx).await {
                Ok(Ok(res)) => res,
                Ok(Err(_)) | Err(_) => Err(ActorError::Closing(name)),
            }
        });
        let waiting = match self.docs.get_mut(m.id.as_str()) {
            Some(Slot::Open(addr)) if addr.connected() => {
                waiter.answer(&m.id, addr);
                return answer;
            }
            Some(Slot::Opening(waiters)) => {
                waiters.push(waiter);
                return answer;
            }
            Some(Slot::Closing { addr, waiters }) if addr.connected() => {
                waiters.push(waiter);
                return answer;
            }
            // Absent, or an actor that stopped without saying so: load it again (with whoever
            // waited for the dead one).
            Some(Slot::Closing { waiters, .. }) => std::mem::take(waiters),
            _ => Vec::new(),
        };
        let mut waiters = waiting;
        waiters.push(waiter);
        self.start_loading(Arc::from(m.id), Arc::from(m.name), waiters, ctx);
        answer
    }
}

impl Registry {
    /// Loads document `id` on a blocking thread for `waiters`; [`Registry::loaded`] answers
    /// them.
    fn start_loading(
        &mut self,
        id: Arc<str>,
        name: Arc<str>,
        waiters: Vec<Waiter>,
        ctx: &mut Context<Self>,
    ) {
        self.docs.insert(id.clone(), Slot::Opening(waiters));
        let deps = DocDeps {
            store: self.store.clone(),
            writer: self.writer.clone(),
            registry: ctx.address(),
            manifest: self.manifest.clone(),
            disk: self.disk.clone(),
        };
        let (config, load_id, permits) = (self.config.clone(), id.clone(), self.loads.clone());
        let yconfig = self.yconfig.clone();
        // Nothing stored: the kind the first waiter asked for.
        let wanted = match self.docs.get(&id) {
            Some(Slot::Opening(w)) => w.first().map_or(DocKind::Text, |w| w.kind),
            _ => DocKind::Text,
        };
        let cluster = self.cluster.clone();
        let load = async move {
            let lease = match &cluster {
                None => None,
                Some(c) => match find_owner(c, &load_id, wanted).await? {
                    Acquired::Owned(rev) => {
                        Some(HeldLease::new(load_id.clone(), c.clone(), rev, wanted))
                    }
                    Acquired::Held(v) => return Ok(Loaded::Remote(Arc::new(v))),
                },
            };
            // The semaphore is never closed: an error cannot happen, and would only mean no
            // bound.
            let _permit = permits.acquire_owned().await.ok();
            tokio::task::spawn_blocking(move || {
                let kind = deps.store.kind(&load_id)?.unwrap_or(wanted);
                let lease = lease.map(|mut l| {
                    l.kind = kind;
                    l
                });
                Ok(match kind {
                    DocKind::Text => {
                        let mut a = DocActor::load(load_id, name, config, deps)?;
                        if let Some(l) = lease {
                            a.hold_lease(l);
                        }
                        Loaded::Text(Box::new(a))
                    }
                    DocKind::Yjs => {
                        let mut a = YDocActor::load(load_id, name, config, yconfig, deps)?;
                        if let Some(l) = lease {
                            a.hold_lease(l);
                        }
                        Loaded::Yjs(Box::new(a))
                    }
                })
            })
            .await
            .unwrap_or_else(|e| {
                Err(ActorError::Store(crate::storage::StoreError::Backend(
                    format!("loading the document failed: {e}"),
                )))
            })
        };
        ctx.spawn(load.into_actor(self).map(move |res, act, ctx| {
            act.loaded(id, res, ctx);
        }));
    }

    /// Starts the loaded actor (if anyone may create it or it exists) and answers the waiters.
    fn loaded(&mut self, id: Arc<str>, res: Result<Loaded, ActorError>, ctx: &mut Context<Self>) {
        let Some(Slot::Opening(waiters)) = self.docs.remove(&id) else {
            return;
        };
        if self.shutting_down || self.deleting.contains(id.as_ref()) {
            for w in waiters {
                let _ = w.tx.send(Err(ActorError::Closing(id.to_string())));
            }
            return;
        }
        let actor = match res {
            Ok(a) => a,
            Err(e) => {
                for w in waiters {
                    let _ = w.tx.send(Err(e.clone()));
                }
                return;
            }
        };
        let (name, new) = match &actor {
            Loaded::Text(a) => (a.name().to_string(), a.is_new()),
            Loaded::Yjs(a) => (a.name().to_string(), a.is_new()),
            Loaded::Remote(held) => {
                let Some(cluster) = self.cluster.clone() else {
                    return;
                };
                let name: Arc<str> = Arc::from(waiters_name(&waiters, &id));
                let remote =
                    RemoteDoc::new(id.clone(), name, held.clone(), cluster, ctx.address()).start();
                let addr = DocAddr::Remote(remote, held.clone());
                self.docs.insert(id.clone(), Slot::Open(addr.clone()));
                for w in waiters {
                    w.answer(&id, &addr);
                }
                return;
            }
        };
        if new && !waiters.iter().any(|w| w.create) {
            for w in waiters {
                let _ = w.tx.send(Err(ActorError::NoSuchDocument(name.clone())));
            }
            return;
        }
        let arbiter = self.arbiter_for(&id).cloned();
        let addr = match (actor, arbiter) {
            (Loaded::Text(a), Some(arb)) => {
                DocAddr::Text(DocActor::start_in_arbiter(&arb, move |_| *a))
            }
            (Loaded::Text(a), None) => DocAddr::Text((*a).start()),
            (Loaded::Yjs(a), Some(arb)) => {
                DocAddr::Yjs(YDocActor::start_in_arbiter(&arb, move |_| *a))
            }
            (Loaded::Yjs(a), None) => DocAddr::Yjs((*a).start()),
            (Loaded::Remote(_), _) => return,
        };
        debug!(doc = %id, kind = %addr.kind(), "document opened");
        self.docs.insert(id.clone(), Slot::Open(addr.clone()));
        metrics().open_documents.set(self.open_count() as i64);
        for w in waiters {
            w.answer(&id, &addr);
        }
    }

    /// Documents with a running actor.
    fn open_count(&self) -> usize {
        self.docs
            .values()
            .filter(|s| !matches!(s, Slot::Opening(_)))
            .count()
    }
}

/// Sent by an idle document actor as it begins to unload (before it refuses anything): requests
/// for the document wait for its [`DocClosed`] instead of reaching it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DocClosing {
    /// Its document id.
    pub id: Arc<str>,
    /// Its address.
    pub addr: DocAddr,
}

impl Handler<DocClosing> for Registry {
    type Result = ();

    fn handle(&mut self, m: DocClosing, _: &mut Context<Self>) {
        if let Some(slot @ Slot::Open(_)) = self.docs.get_mut(&m.id) {
            if matches!(slot, Slot::Open(a) if *a == m.addr) {
                *slot = Slot::Closing {
                    addr: m.addr,
                    waiters: Vec::new(),
                };
            }
        }
    }
}

/// Sent by a document actor that saved itself and is stopping.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DocClosed {
    /// Its document id.
    pub id: Arc<str>,
    /// The name clients use for it.
    pub name: Arc<str>,
    /// Its address (a newer actor for the same id is left alone).
    pub addr: DocAddr,
}

impl Handler<DocClosed> for Registry {
    type Result = ();

    /// Forgets the actor if it is still the registered one, and loads the document again for
    /// the requests that waited for it.
    fn handle(&mut self, m: DocClosed, ctx: &mut Context<Self>) {
        let ours = match self.docs.get(&m.id) {
            Some(Slot::Open(a)) | Some(Slot::Closing { addr: a, .. }) => *a == m.addr,
            _ => false,
        };
        if !ours {
            return;
        }
        if let Some(Slot::Closing { waiters, .. }) = self.docs.remove(&m.id) {
            if !waiters.is_empty() {
                let name = Arc::from(m.name.as_ref());
                self.start_loading(m.id, name, waiters, ctx);
            }
        }
        metrics().open_documents.set(self.open_count() as i64);
    }
}

/// Number of open documents.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct OpenCount;

impl Handler<OpenCount> for Registry {
    type Result = usize;

    /// Counts the running document actors.
    fn handle(&mut self, _: OpenCount, _: &mut Context<Self>) -> usize {
        self.open_count()
    }
}

/// Save every open document, stop them, and flush the store (server shutdown). Answers with
/// the number of documents saved.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ShutdownAll;

impl Handler<ShutdownAll> for Registry {
    type Result = ResponseFuture<usize>;

    /// Asks every document actor to save and stop, waits for all of them, then flushes.
    fn handle(&mut self, _: ShutdownAll, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let mut docs: Vec<(Arc<str>, DocAddr)> = Vec::new();
        for (id, slot) in self.docs.drain() {
            match slot {
                Slot::Open(addr) => docs.push((id, addr)),
                Slot::Closing { addr, waiters } => {
                    refuse_all(waiters, &id);
                    docs.push((id, addr));
                }
                Slot::Opening(waiters) => refuse_all(waiters, &id),
            }
        }
        let writer = self.writer.clone();
        Box::pin(async move {
            let mut saved = 0;
            for (id, addr) in docs {
                match addr.shutdown().await {
                    Ok(()) => saved += 1,
                    Err(e) => warn!(doc = %id, error = %e, "document actor gone at shutdown"),
                }
            }
            writer.do_send(AppendAudit(AuditEvent::ServerStop));
            if let Err(e) = writer.send(Checkpoint).await {
                warn!(error = %e, "store writer gone at shutdown");
            }
            if let Err(e) = writer.send(FlushNow).await {
                warn!(error = %e, "store writer gone at shutdown");
            }
            saved
        })
    }
}

/// Delete a document: stop its actor (subscribers are closed with 1012), then delete its
/// records and, in an encrypted store, destroy its data key. Answers once that is durable.
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct DeleteDocument {
    /// Storage id.
    pub id: String,
    /// Who deletes it (token subject), for its change event.
    pub subject: Option<String>,
}

impl Handler<DeleteDocument> for Registry {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    /// Refuses opens of the document until the deletion is durable.
    fn handle(&mut self, m: DeleteDocument, _: &mut Context<Self>) -> Self::Result {
        if let Some(Slot::Open(DocAddr::Remote(_, owner))) = self.docs.get(m.id.as_str()) {
            return Box::pin(actix::fut::ready(Err(owned_elsewhere(&m.id, owner))));
        }
        if self.shutting_down || !self.deleting.insert(m.id.clone()) {
            return Box::pin(actix::fut::ready(Err(ActorError::Closing(m.id))));
        }
        let open = match self.docs.remove(m.id.as_str()) {
            Some(Slot::Open(addr)) => Some(addr),
            Some(Slot::Closing { addr, waiters }) => {
                refuse_all(waiters, &m.id);
                Some(addr)
            }
            Some(Slot::Opening(waiters)) => {
                refuse_all(waiters, &m.id);
                None
            }
            None => None,
        };
        metrics().open_documents.set(self.open_count() as i64);
        let writer = self.writer.clone();
        let id = m.id.clone();
        let subject = m.subject.clone();
        let cluster = self.cluster.clone();
        let work = async move {
            if let Some(addr) = open {
                addr.shutdown().await?;
            }
            // Cluster mode: deleted only under the document's lease, so that no owner goes on
            // appending to a document whose records are gone.
            let lease = match &cluster {
                Some(c) => match find_owner(c, &id, DocKind::Text).await? {
                    Acquired::Owned(rev) => Some((c.clone(), rev)),
                    Acquired::Held(v) => return Err(owned_elsewhere(&id, &v)),
                },
                None => None,
            };
            let res = writer
                .send(DeleteDoc {
                    doc: id.clone(),
                    subject,
                })
                .await?
                .map_err(ActorError::Store);
            if let Some((c, rev)) = lease {
                HeldLease::new(Arc::from(id.as_str()), c, rev, DocKind::Text).release();
            }
            res
        };
        Box::pin(work.into_actor(self).map(move |res, act, _| {
            act.deleting.remove(&m.id);
            debug!(doc = %m.id, ok = res.is_ok(), "document deleted");
            res
        }))
    }
}

/// The answer to a request this node cannot serve because `owner`'s lease orders document
/// `doc` (the HTTP layer forwards it to the owner's address).
fn owned_elsewhere(doc: &str, owner: &LeaseValue) -> ActorError {
    ActorError::Elsewhere {
        doc: doc.to_string(),
        node: owner.node.clone(),
        url: owner.url.clone(),
    }
}

/// Answers every waiter with `Closing` (shutdown, deletion).
fn refuse_all(waiters: Vec<Waiter>, id: &str) {
    for w in waiters {
        let _ = w.tx.send(Err(ActorError::Closing(id.to_string())));
    }
}

/// The name clients use for document `id`, as the first waiter's request gave it.
fn waiters_name(waiters: &[Waiter], id: &str) -> String {
    waiters
        .first()
        .map_or_else(|| id.to_string(), |w| w.name.clone())
}
