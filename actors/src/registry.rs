//! The registry: one `DocActor` per open document, opened on first use.
//!
//! Invariants:
//! - At most one live `DocActor` per document id is in `docs`; an unloading actor removes
//!   itself with `DocClosed` (only if it is still the registered one) before it stops, and has
//!   saved the document before that, so the next `OpenDoc` loads the latest state.
//! - Document ids reaching the registry have been validated by the protocol layer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use tracing::{debug, warn};

use crate::document::{DocActor, DocActorConfig, DocDeps, Shutdown};
use crate::errors::ActorError;
use crate::metrics::metrics;
use crate::security::audit::AuditEvent;
use crate::storage::disk::DiskSpace;
use crate::storage::manifest::Manifest;
use crate::storage::Store;
use crate::store_actor::{AppendAudit, Checkpoint, DeleteDoc, FlushNow, StoreActor};

/// The registry actor. See the module documentation.
pub struct Registry {
    /// Open documents.
    docs: HashMap<Arc<str>, Addr<DocActor>>,
    /// Settings handed to every document actor.
    config: DocActorConfig,
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
            store,
            writer,
            manifest: Manifest::disabled(),
            disk: DiskSpace::unlimited(),
            arbiters,
            shutting_down: false,
            deleting: HashSet::new(),
        }
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
#[rtype(result = "Result<Addr<DocActor>, ActorError>")]
pub struct OpenDoc {
    /// A validated document id, as stored (tenant-qualified with authentication).
    pub id: String,
    /// The id clients use (echoed in messages).
    pub name: String,
    /// Whether a document with nothing stored may be created (else `UnknownDocument`).
    pub create: bool,
}

impl Handler<OpenDoc> for Registry {
    type Result = Result<Addr<DocActor>, ActorError>;

    /// Returns the open actor or starts one from the store (refused during shutdown).
    fn handle(&mut self, m: OpenDoc, ctx: &mut Context<Self>) -> Self::Result {
        if self.shutting_down || self.deleting.contains(&m.id) {
            return Err(ActorError::Closing(m.name));
        }
        if let Some(addr) = self.docs.get(m.id.as_str()) {
            if addr.connected() {
                return Ok(addr.clone());
            }
        }
        let id: Arc<str> = Arc::from(m.id);
        let deps = DocDeps {
            store: self.store.clone(),
            writer: self.writer.clone(),
            registry: ctx.address(),
            manifest: self.manifest.clone(),
            disk: self.disk.clone(),
        };
        let actor = DocActor::load(
            id.clone(),
            Arc::from(m.name.as_str()),
            self.config.clone(),
            deps,
        )?;
        if actor.is_new() && !m.create {
            return Err(ActorError::NoSuchDocument(m.name));
        }
        let addr = match self.arbiter_for(&id) {
            Some(arbiter) => DocActor::start_in_arbiter(arbiter, move |_| actor),
            None => actor.start(),
        };
        debug!(doc = %id, "document opened");
        self.docs.insert(id, addr.clone());
        metrics().open_documents.set(self.docs.len() as i64);
        Ok(addr)
    }
}

/// Sent by a document actor that saved itself and is stopping.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DocClosed {
    /// Its document id.
    pub id: Arc<str>,
    /// Its address (a newer actor for the same id is left alone).
    pub addr: Addr<DocActor>,
}

impl Handler<DocClosed> for Registry {
    type Result = ();

    /// Forgets the actor if it is still the registered one.
    fn handle(&mut self, m: DocClosed, _: &mut Context<Self>) {
        if self.docs.get(&m.id) == Some(&m.addr) {
            self.docs.remove(&m.id);
            metrics().open_documents.set(self.docs.len() as i64);
        }
    }
}

/// Number of open documents.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct OpenCount;

impl Handler<OpenCount> for Registry {
    type Result = usize;

    /// Counts the registered document actors.
    fn handle(&mut self, _: OpenCount, _: &mut Context<Self>) -> usize {
        self.docs.len()
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
        let docs: Vec<(Arc<str>, Addr<DocActor>)> = self.docs.drain().collect();
        let writer = self.writer.clone();
        Box::pin(async move {
            let mut saved = 0;
            for (id, addr) in docs {
                match addr.send(Shutdown).await {
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
}

impl Handler<DeleteDocument> for Registry {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    /// Refuses opens of the document until the deletion is durable.
    fn handle(&mut self, m: DeleteDocument, _: &mut Context<Self>) -> Self::Result {
        if self.shutting_down || !self.deleting.insert(m.id.clone()) {
            return Box::pin(actix::fut::ready(Err(ActorError::Closing(m.id))));
        }
        let open = self.docs.remove(m.id.as_str());
        metrics().open_documents.set(self.docs.len() as i64);
        let writer = self.writer.clone();
        let id = m.id.clone();
        let work = async move {
            if let Some(addr) = open {
                addr.send(Shutdown).await?;
            }
            writer
                .send(DeleteDoc { doc: id.clone() })
                .await?
                .map_err(ActorError::Store)
        };
        Box::pin(work.into_actor(self).map(move |res, act, _| {
            act.deleting.remove(&m.id);
            debug!(doc = %m.id, ok = res.is_ok(), "document deleted");
            res
        }))
    }
}
