//! The document actor: owns one `Document` and everyone subscribed to it.
//!
//! This file holds the actor's state, durability bookkeeping and joins;
//! its other messages are in `document/`: `submit` (`Submit`), `presence`
//! (`SetPresence`), `reads` (`GetText`, `GetOps`, `GetVersions`), `remote` (cluster mode:
//! requests from sessions on other nodes), `lifecycle` (idle unload, snapshots, `Shutdown`,
//! stepping down), `fanout` (answers and fan-out rounds).
//!
//! Invariants:
//! - Submits are serialized by the actor's mailbox; each accepted op is applied at once (later
//!   ops transform against it) and sent to the store actor.
//! - Nothing is shown before it is durable (strict mode): an accepted op reaches subscribers,
//!   the author's ack included, only after the store reports it flushed; joins, snapshots and
//!   REST reads see the last durable revision (the text of the non-durable tail is rolled back
//!   with the document's undo tail). In relaxed mode everything is shown at once.
//! - All messages of a document reach a subscriber in revision order. Fan-out is coalesced in
//!   rounds: at most one round per tick, `max(fanout_tick, subscribers ×
//!   fanout_tick_per_subscriber)` (sent at once when the previous round is a tick old, so light
//!   load adds no delay); a round is one mailbox message per subscriber holding the `ops` and
//!   then the `presence` frames, each encoded once per format and shared by every subscriber.
//!   The author finds its own op in that stream (that is its ack); a duplicate of an applied op is answered with an explicit `ack` once that op
//!   is durable and after every earlier revision was sent.
//! - Stored selections are transformed through every applied op, so they always refer to the
//!   current revision.
//! - A session whose outbound queue is over its bound (frames or bytes, see `outbox::Outbox`)
//!   is a slow consumer: it is unsubscribed and closed with code 1013; it resumes by rejoining
//!   with its revision. A join's answer (catch-up or snapshot, then presence) is queued whole or
//!   not at all, so a long catch-up is never cut by its own size.
//! - Snapshots are written every `snapshot_every` ops, after `snapshot_interval` of activity,
//!   and when the document unloads.
//! - When nobody has been subscribed for `idle_timeout`, the actor snapshots the document,
//!   waits for the store to flush, tells the registry, refuses further requests with
//!   `ActorError::Closing`, and stops.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use ahash::AHashMap;
use coedit_protocol::document::DocumentConfig;
use coedit_protocol::wire::{chunk_ops, OPS_MESSAGE_BUDGET};
use coedit_protocol::{
    transform_selection, Access, ClientId, Document, ErrorCode, Op, PeerPresence, PeerUser,
    RemoteOp, Selection, ServerMsg,
};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info_span, warn};

use crate::cluster::gateway::{self, RemoteSubs};
use crate::cluster::owner::{self, HeldLease, LeaseHolder};
use crate::cluster::PING_INTERVAL;
use crate::errors::{ActorError, CLOSE_RESTART, CLOSE_TRY_AGAIN};
use crate::frame::{Format, Frame};
use crate::history::{Answer, OpsPage, StoreRead, HISTORY_PAGE_BYTES, MAX_HISTORY_PAGE};
use crate::metrics::metrics;
use crate::outbox::{Outbox, Refused};
use crate::registry::{DocAddr, DocClosed, DocClosing, Registry};
use crate::storage::disk::DiskSpace;
use crate::storage::manifest::Manifest;
use crate::storage::Durability;
use crate::storage::{LogRecord, Store};
use crate::store_actor::{Append, FlushNow, PutSnapshot, StoreActor, Unfence};
use crate::SessionId;

mod fanout;
mod lifecycle;
mod presence;
mod reads;
mod remote;
mod submit;
pub use lifecycle::Shutdown;
pub use presence::SetPresence;
pub use reads::{DocText, GetOps, GetText, GetVersions};
pub use submit::{Applied, Submit};

/// Default coalescing tick for fan-out.
pub const DEFAULT_FANOUT_TICK: Duration = Duration::from_millis(1);
/// Default stretch of the fan-out tick per subscriber (see `DocActorConfig`).
pub const DEFAULT_FANOUT_TICK_PER_SUBSCRIBER: Duration = Duration::from_micros(30);
/// Longest fan-out tick, however many subscribers.
pub const MAX_FANOUT_TICK: Duration = Duration::from_millis(100);
/// Default time a document stays loaded with no subscribers.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of ops between snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;
/// Default interval at which an active document is snapshotted.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);

/// Settings of every document actor.
#[derive(Clone, Debug)]
pub struct DocActorConfig {
    /// Fan-out coalescing tick; zero sends at once.
    pub fanout_tick: Duration,
    /// Added to the tick per subscriber: a document with `n` subscribers sends at most one
    /// round per `max(fanout_tick, n * fanout_tick_per_subscriber)` (at most
    /// [`MAX_FANOUT_TICK`]).
    pub fanout_tick_per_subscriber: Duration,
    /// Time without subscribers before the document unloads.
    pub idle_timeout: Duration,
    /// When ops are acknowledged.
    pub durability: Durability,
    /// Ops between snapshots.
    pub snapshot_every: u64,
    /// Interval at which a document with new ops is snapshotted.
    pub snapshot_interval: Duration,
    /// Ops kept in the log before the latest snapshot (`None`: keep the whole history).
    pub retain_ops: Option<u64>,
    /// Limits of the document itself.
    pub document: DocumentConfig,
}

impl Default for DocActorConfig {
    fn default() -> Self {
        DocActorConfig {
            fanout_tick: DEFAULT_FANOUT_TICK,
            fanout_tick_per_subscriber: DEFAULT_FANOUT_TICK_PER_SUBSCRIBER,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            durability: Durability::Strict,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
            retain_ops: None,
            document: DocumentConfig::default(),
        }
    }
}

/// One subscribed session.
struct Subscriber {
    client: ClientId,
    out: Outbox,
    format: Format,
    sel: Vec<Selection>,
    /// Display name and colour, sent with its presence.
    user: Option<Arc<PeerUser>>,
}

/// Someone waiting for a revision to become durable.
enum AckWaiter {
    /// A session's duplicate resend: gets an `ack`.
    Session { session: SessionId, seq: u64 },
    /// A REST submit: its response is released.
    Rest(oneshot::Sender<()>),
}

/// The actor owning one document. See the module documentation.
pub struct DocActor {
    /// Document id in the store (tenant-qualified with authentication).
    id: Arc<str>,
    /// The id clients use for it, echoed in every message.
    name: Arc<str>,
    /// Nothing was stored for it when it was loaded.
    new: bool,
    /// The document core.
    doc: Document,
    /// Highest revision known durable (equal to `doc.rev()` in relaxed mode).
    durable_rev: u64,
    /// Subscribed sessions.
    subs: AHashMap<SessionId, Subscriber>,
    /// Accepted ops waiting for durability, in revision order.
    undurable: VecDeque<RemoteOp>,
    /// Durable ops not yet sent.
    pending_ops: Vec<RemoteOp>,
    /// Presence changes since the last flush, by client.
    pending_presence: AHashMap<ClientId, (Vec<Selection>, Option<Arc<PeerUser>>)>,
    /// Waiting for a revision to become durable, in revision order.
    ack_waiters: VecDeque<(u64, AckWaiter)>,
    /// A fan-out flush is scheduled.
    flush_scheduled: bool,
    /// When the last fan-out flush sent anything.
    last_flush: Instant,
    /// Revision of the last snapshot written.
    snapshot_rev: u64,
    /// Bumped whenever the subscriber set becomes empty; an idle check only acts on its own.
    idle_generation: u64,
    /// Saving and stopping; every request is refused.
    closing: bool,
    config: DocActorConfig,
    /// Read access to the store (history).
    store: Arc<dyn Store>,
    /// The store's only writer.
    writer: Addr<StoreActor>,
    registry: Addr<Registry>,
    /// Whether edits are accepted (disk space above the reserve).
    disk: Arc<DiskSpace>,
    /// Cluster mode: the lease this node holds for the document.
    lease: Option<HeldLease>,
    /// Cluster mode: sessions of other nodes subscribed through them.
    remote: RemoteSubs,
    span: tracing::Span,
}

/// What a document actor needs from outside: the store to read, the writer, the registry to
/// tell when it unloads, the manifest to check what it loads against, the disk space guard.
#[derive(Clone)]
pub struct DocDeps {
    /// Read access to the store.
    pub store: Arc<dyn Store>,
    /// The store's writer.
    pub writer: Addr<StoreActor>,
    /// The registry.
    pub registry: Addr<Registry>,
    /// Acknowledged revisions.
    pub manifest: Arc<Manifest>,
    /// The free-space guard.
    pub disk: Arc<DiskSpace>,
}

impl DocActor {
    /// Whether nothing was stored for the document when it was loaded.
    pub fn is_new(&self) -> bool {
        self.new
    }

    /// The id clients use for the document.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads document `id` (which clients call `name`) from the store: its latest snapshot,
    /// then the ops after it. A document that holds fewer revisions than the manifest says
    /// were acknowledged is refused ([`crate::storage::StoreError::Lost`]), never served rolled
    /// back.
    pub fn load(
        id: Arc<str>,
        name: Arc<str>,
        config: DocActorConfig,
        deps: DocDeps,
    ) -> Result<Self, ActorError> {
        let DocDeps {
            store,
            writer,
            registry,
            manifest,
            disk,
        } = deps;
        if let Some(kind @ coedit_protocol::DocKind::Yjs) = store.kind(&id)? {
            return Err(ActorError::WrongKind {
                doc: name.to_string(),
                kind,
            });
        }
        let stored = store.load(&id)?;
        let new = stored.is_empty();
        let snapshot_rev = stored.snapshot.as_ref().map_or(0, |s| s.rev);
        let mut doc = stored.into_document(&id, config.document.clone())?;
        manifest.check_loaded(&id, doc.rev())?;
        if config.durability == Durability::Strict {
            doc.track_undo();
        }
        let span = info_span!("doc", id = %id);
        Ok(DocActor {
            id,
            name,
            new,
            durable_rev: doc.rev(),
            doc,
            subs: AHashMap::new(),
            undurable: VecDeque::new(),
            pending_ops: Vec::new(),
            pending_presence: AHashMap::new(),
            ack_waiters: VecDeque::new(),
            flush_scheduled: false,
            last_flush: Instant::now(),
            snapshot_rev,
            idle_generation: 0,
            closing: false,
            config,
            store,
            writer,
            registry,
            disk,
            lease: None,
            remote: RemoteSubs::default(),
            span,
        })
    }

    fn strict(&self) -> bool {
        self.config.durability == Durability::Strict
    }

    /// Cluster mode: the actor orders the document under `lease` (taken before the load).
    pub fn hold_lease(&mut self, lease: HeldLease) {
        self.lease = Some(lease);
    }

    fn check_open(&self) -> Result<(), ActorError> {
        if self.closing {
            return Err(ActorError::Closing(self.name.to_string()));
        }
        Ok(())
    }

    /// Marks everything up to `rev` durable: sends those ops, then releases every waiter whose
    /// revision is durable.
    fn made_durable(&mut self, rev: u64, ctx: &mut Context<Self>) {
        let rev = rev.min(self.doc.rev());
        if rev > self.durable_rev {
            self.durable_rev = rev;
            self.doc.release_undo(rev);
        }
        let mut moved = false;
        while self
            .undurable
            .front()
            .is_some_and(|o| o.rev <= self.durable_rev)
        {
            if let Some(op) = self.undurable.pop_front() {
                self.pending_ops.push(op);
                moved = true;
            }
        }
        if moved {
            self.schedule_flush(ctx);
        }
        while self
            .ack_waiters
            .front()
            .is_some_and(|(r, _)| *r <= self.durable_rev)
        {
            let Some((r, waiter)) = self.ack_waiters.pop_front() else {
                break;
            };
            match waiter {
                AckWaiter::Session { session, seq } => {
                    // Every earlier revision must have reached the session first.
                    self.flush();
                    let ack = ServerMsg::Ack {
                        doc: self.name.to_string(),
                        seq,
                        rev: r,
                    };
                    self.reply(session, &ack);
                }
                AckWaiter::Rest(tx) => {
                    let _ = tx.send(());
                }
            }
        }
        self.flush_cut_presence(ctx);
    }

    /// Bookkeeping after a subscriber is removed: its presence is cleared.
    fn unsubscribed(&mut self, sub: Subscriber) {
        if !sub.sel.is_empty() {
            self.pending_presence.insert(sub.client, (Vec::new(), None));
        }
        if self.subs.is_empty() {
            self.idle_generation += 1;
        }
    }

    fn remove_subscriber(&mut self, session: SessionId, ctx: &mut Context<Self>) {
        if let Some(sub) = self.subs.remove(&session) {
            self.unsubscribed(sub);
            self.schedule_flush(ctx);
        }
        if self.subs.is_empty() {
            self.schedule_idle_check(ctx);
        }
    }

    /// The retained ops after `from` up to `to`, from memory or the store.
    fn durable_ops(&self, from: u64, to: u64) -> Result<Vec<RemoteOp>, ActorError> {
        let to = to.min(self.durable_rev);
        if from >= to {
            return Ok(Vec::new());
        }
        let from_memory = |from: u64| {
            self.doc.ops_since(from).map(|ops| {
                ops.take_while(|(rev, _)| *rev <= to)
                    .map(|(rev, e)| remote_op(rev, &e))
                    .collect::<Vec<_>>()
            })
        };
        if let Ok(ops) = from_memory(from) {
            return Ok(ops);
        }
        let ops = self.store.ops(&self.id, from, to)?;
        let too_old = |store: &dyn Store, id: &str| -> Result<ActorError, ActorError> {
            Ok(coedit_protocol::DocError::RevisionTooOld {
                base: from,
                oldest: store.versions(id)?.first_op.unwrap_or(to).saturating_sub(1),
            }
            .into())
        };
        if ops.first().is_none_or(|r| r.rev != from + 1) {
            return Err(too_old(&*self.store, &self.id)?);
        }
        let mut out: Vec<RemoteOp> = ops
            .into_iter()
            .map(|r| RemoteOp {
                rev: r.rev,
                client: r.client,
                seq: r.seq,
                op: r.op,
                t: None,
            })
            .collect();
        // The store writer may not have written the newest ops yet (relaxed durability
        // acknowledges before the write): the rest comes from memory, or the caller falls
        // back to a snapshot. Never a silent gap.
        let next = from + out.len() as u64;
        if next < to {
            let Ok(rest) = from_memory(next) else {
                return Err(too_old(&*self.store, &self.id)?);
            };
            out.extend(rest);
        }
        Ok(out)
    }
}

/// A retained op as sent to clients (history carries no author timestamps).
fn remote_op(rev: u64, e: &coedit_protocol::document::AppliedOp<'_>) -> RemoteOp {
    RemoteOp {
        rev,
        client: e.client.to_string(),
        seq: e.seq,
        op: e.op.clone(),
        t: None,
    }
}

impl Actor for DocActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(parent: &self.span, rev = self.doc.rev(), "document loaded");
        self.schedule_idle_check(ctx);
        if let Some(l) = &mut self.lease {
            l.own_events(&self.writer, self.doc.rev());
            let to = ctx.address().recipient();
            l.gateway = Some(gateway::serve(l.cluster.clone(), &self.id, to));
            owner::keep_lease(self, ctx);
            ctx.run_interval(PING_INTERVAL, |a, ctx| {
                for local in a.remote.expire() {
                    a.remove_subscriber(local, ctx);
                }
            });
        }
        ctx.run_interval(self.config.snapshot_interval, |a, _| {
            if !a.closing {
                a.snapshot();
            }
        });
    }
}

/// The store flushed this document's ops up to `rev`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Durable {
    /// Highest durable revision.
    pub rev: u64,
    /// Not durable after all: another node wrote this document first (cluster mode). The
    /// actor steps down.
    pub fenced: bool,
}

impl Handler<Durable> for DocActor {
    type Result = ();

    /// Sends the newly durable ops and releases their acks.
    fn handle(&mut self, m: Durable, ctx: &mut Context<Self>) {
        if m.fenced {
            return LeaseHolder::step_down(self, "another node wrote the document first", ctx);
        }
        self.made_durable(m.rev, ctx);
    }
}

/// Subscribe a session. The answer goes to `out`: the durable ops after `rev` (possibly none)
/// when they are retained, otherwise a snapshot of the last durable revision; then the others'
/// presence.
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Join {
    /// The joining session.
    pub session: SessionId,
    /// Its client id.
    pub client: ClientId,
    /// The revision it already has.
    pub rev: Option<u64>,
    /// The encoding it wants.
    pub format: Format,
    /// Where its frames go.
    pub out: Outbox,
    /// The session's role and subject, reported in the first message of the answer.
    pub access: Access,
    /// Display name and colour for its presence.
    pub user: Option<Arc<PeerUser>>,
}

impl Handler<Join> for DocActor {
    type Result = Result<(), ActorError>;

    /// Adds the subscriber and sends it the catch-up or a snapshot, then current presence, as
    /// one answer (queued whole or not at all).
    fn handle(&mut self, m: Join, ctx: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        let doc = self.name.to_string();
        let durable = self.durable_rev;
        let mut access = Some(m.access);
        let mut answer: Vec<Frame> = match m
            .rev
            .filter(|r| *r <= durable)
            .map(|r| self.durable_ops(r, durable))
        {
            Some(Ok(ops)) => chunk_ops(ops, OPS_MESSAGE_BUDGET)
                .into_iter()
                .map(|ops| {
                    let msg = ServerMsg::Ops {
                        doc: doc.clone(),
                        ops,
                        access: access.take(),
                    };
                    Frame::encode(&msg, m.format)
                })
                .collect(),
            _ => {
                let msg = ServerMsg::Snapshot {
                    doc: doc.clone(),
                    rev: durable,
                    text: self.doc.text_at(durable)?,
                    access: access.take(),
                };
                vec![Frame::encode(&msg, m.format)]
            }
        };
        let peers: Vec<PeerPresence> = self
            .subs
            .values()
            .filter(|s| !s.sel.is_empty())
            .map(|s| PeerPresence {
                client: s.client.to_string(),
                sel: s.sel.clone(),
                user: s.user.as_deref().cloned(),
            })
            .collect();
        if !peers.is_empty() {
            let rev = self.doc.rev();
            let msg = ServerMsg::Presence { doc, rev, peers };
            answer.push(Frame::encode(&msg, m.format));
        }
        self.subs.insert(
            m.session,
            Subscriber {
                client: m.client,
                out: m.out,
                format: m.format,
                sel: Vec::new(),
                user: m.user,
            },
        );
        self.send_all(m.session, answer);
        self.flush_cut_presence(ctx);
        Ok(())
    }
}

/// Unsubscribe a session (leave or disconnect); its presence is cleared for the others.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// The leaving session.
    pub session: SessionId,
}

impl Handler<Leave> for DocActor {
    type Result = ();

    /// Removes the subscriber and schedules the idle check when it was the last.
    fn handle(&mut self, m: Leave, ctx: &mut Context<Self>) {
        self.remove_subscriber(m.session, ctx);
    }
}
