//! The Yjs document actor: owns one [`YDocument`], everyone subscribed to it (over
//! y-websocket or Hocuspocus) and their awareness states. REST reads and writes are in
//! `ydoc/rest.rs`; what a session sends (join, sync, updates, awareness, leave) in
//! `ydoc/sessions.rs`; cluster mode's requests from sessions on other nodes in
//! `ydoc/remote.rs`; reload, idle unload, snapshots, `Shutdown` and stepping down in
//! `ydoc/lifecycle.rs`.
//!
//! Invariants:
//! - Updates are serialized by the mailbox; each is checked and applied at once (`YDocument`
//!   refuses before changing anything) and sent to the store actor with the next revision.
//! - An accepted update reaches the other subscribers, and its author hears `SyncStatus(true)`
//!   (Hocuspocus), only after the store reports it flushed (strict mode); in relaxed mode at
//!   once. What a subscriber is sent goes out in rounds, as for text documents: at most one
//!   message per subscriber per fan-out tick (`max(fanout_tick, subscribers ×
//!   fanout_tick_per_subscriber)`, at once when the last round is a tick old), holding its own
//!   answers in order, the updates relayed to it, then the awareness updates. A refused update is answered `SyncStatus(false)` / permission denied and changes
//!   nothing.
//! - A join's answer (sync step 1 and the awareness states), a sync step 2 and a REST read
//!   wait until every update accepted before them is durable, so nothing the store could
//!   still lose is served to someone who did not write it... except updates accepted after
//!   the request while it waited (a sync step 2 is computed when it is sent): those are valid,
//!   already being flushed, and their authors keep them until acknowledged.
//! - A viewer (read-only) subscriber syncs and sees awareness; an update from it that would
//!   change the document is refused, never applied nor broadcast.
//! - If yrs fails half-way through an update, the actor closes its subscribers (1011) and
//!   unloads without a snapshot; the next open loads the last stored state.
//! - Snapshots (the encoded state) every `snapshot_every` updates, after `snapshot_interval`
//!   of activity, and on unload; idle unload as for text documents.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use ahash::AHashMap;
use bytes::Bytes;
use coedit_protocol::yjs::{AwarenessTable, Framing, YApplied, YDocConfig, YDocument};
use coedit_protocol::ErrorCode;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info_span, warn};
use yrs::StateVector;

use crate::cluster::gateway::{self, RemoteSubs};
use crate::cluster::owner::{self, HeldLease, LeaseHolder};
use crate::cluster::PING_INTERVAL;
use crate::document::MAX_FANOUT_TICK;
use crate::document::{DocActorConfig, DocDeps, Durable, Shutdown};
use crate::errors::{ActorError, CLOSE_INTERNAL, CLOSE_RESTART, CLOSE_TRY_AGAIN};
use crate::frame::Frame;
use crate::metrics::metrics;
use crate::outbox::{Outbox, Refused};
use crate::registry::{DocAddr, DocClosed, DocClosing, Registry};
use crate::security::auth::{AuthError, Role};
use crate::storage::disk::DiskSpace;
use crate::storage::{Durability, LogEntry, SnapshotEntry, Store, YStateRecord, YUpdateRecord};
use crate::store_actor::{Append, FlushNow, PutSnapshot, StoreActor, Unfence};
use crate::SessionId;

mod lifecycle;
mod remote;
mod rest;
mod sessions;
pub use rest::{YHistory, YPost, YRead, YReadWhat, YState};
pub use sessions::{YAwareness, YJoin, YLeave, YQueryAwareness, YRefuse, YSyncStep1, YUpdate};

/// The JSON error told to a client whose update was refused.
pub fn refusal_json(code: ErrorCode, msg: &str) -> String {
    serde_json::json!({"error": {"code": code, "msg": msg}}).to_string()
}

/// The author of updates posted over REST (no session has this id).
const REST_AUTHOR: SessionId = 0;

/// One subscribed session.
struct YSub {
    out: Outbox,
    framing: Framing,
    readonly: bool,
}

/// Someone waiting for a revision to become durable.
enum Waiter {
    /// A session's update: `SyncStatus(true)`.
    Applied(SessionId),
    /// A session's sync step 1: answered with step 2.
    Sync(SessionId, StateVector),
    /// A session's join: sync step 1 and the awareness states.
    Joined(SessionId),
    /// A REST request.
    Rest(oneshot::Sender<()>),
    /// A session's refused update: its refusal, after the statuses of its earlier updates.
    Refused(SessionId, ErrorCode, String),
}

/// The actor owning one Yjs document. See the module documentation.
pub struct YDocActor {
    id: Arc<str>,
    name: Arc<str>,
    new: bool,
    doc: YDocument,
    durable_rev: u64,
    subs: AHashMap<SessionId, YSub>,
    awareness: AwarenessTable<SessionId>,
    /// Accepted updates waiting for durability: revision, author, update.
    undurable: VecDeque<(u64, SessionId, Bytes)>,
    /// Waiting for a revision to become durable, in revision order.
    waiters: VecDeque<(u64, Waiter)>,
    /// This round: durable updates to relay (revision, author, update).
    round: Vec<(u64, SessionId, Bytes)>,
    /// This round: awareness updates to relay to everyone, in order.
    round_awareness: Vec<Bytes>,
    /// This round: answers to single sessions, in order per session.
    answers: AHashMap<SessionId, Vec<Frame>>,
    /// A round is scheduled.
    flush_scheduled: bool,
    /// When the last round was sent.
    last_flush: Instant,
    snapshot_rev: u64,
    idle_generation: u64,
    closing: bool,
    config: DocActorConfig,
    store: Arc<dyn Store>,
    writer: Addr<StoreActor>,
    registry: Addr<Registry>,
    disk: Arc<DiskSpace>,
    /// Cluster mode: the lease this node holds for the document.
    lease: Option<HeldLease>,
    /// Cluster mode: subscribers on other nodes.
    remote: RemoteSubs,
    span: tracing::Span,
}

impl YDocActor {
    /// Whether nothing was stored for the document when it was loaded.
    pub fn is_new(&self) -> bool {
        self.new
    }

    /// The id clients use for the document.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads Yjs document `id` from the store (its latest snapshot, then the updates after
    /// it), refusing one that holds fewer revisions than the manifest says were acknowledged,
    /// or that is a text document.
    pub fn load(
        id: Arc<str>,
        name: Arc<str>,
        config: DocActorConfig,
        yconfig: YDocConfig,
        deps: DocDeps,
    ) -> Result<Self, ActorError> {
        let DocDeps {
            store,
            writer,
            registry,
            manifest,
            disk,
        } = deps;
        if let Some(kind @ coedit_protocol::DocKind::Text) = store.kind(&id)? {
            return Err(ActorError::WrongKind {
                doc: name.to_string(),
                kind,
            });
        }
        let stored = store.load_y(&id)?;
        let new = stored.is_empty();
        let snapshot_rev = stored.snapshot.as_ref().map_or(0, |s| s.rev);
        let doc = stored.into_document(&id, yconfig)?;
        manifest.check_loaded(&id, doc.rev())?;
        let span = info_span!("ydoc", id = %id);
        Ok(YDocActor {
            id,
            name,
            new,
            durable_rev: doc.rev(),
            doc,
            subs: AHashMap::new(),
            awareness: AwarenessTable::new(),
            undurable: VecDeque::new(),
            waiters: VecDeque::new(),
            round: Vec::new(),
            round_awareness: Vec::new(),
            answers: AHashMap::new(),
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

    fn check_open(&self) -> Result<(), ActorError> {
        if self.closing {
            return Err(ActorError::Closing(self.name.to_string()));
        }
        Ok(())
    }

    fn strict(&self) -> bool {
        self.config.durability == Durability::Strict
    }

    /// Queues frames for one subscriber in this round (before this round's relays).
    fn send(&mut self, session: SessionId, frames: Vec<Vec<u8>>) {
        if !self.subs.contains_key(&session) {
            return;
        }
        self.answers
            .entry(session)
            .or_default()
            .extend(frames.into_iter().map(|f| Frame::Binary(Bytes::from(f))));
    }

    /// Whether the round holds anything to send.
    fn round_pending(&self) -> bool {
        !self.round.is_empty() || !self.round_awareness.is_empty() || !self.answers.is_empty()
    }

    /// The fan-out tick now (as for text documents): the configured tick, stretched by the
    /// subscribers; zero stays zero.
    fn fanout_tick(&self) -> Duration {
        let tick = self.config.fanout_tick;
        if tick.is_zero() {
            return tick;
        }
        let crowd = self.config.fanout_tick_per_subscriber * self.subs.len() as u32;
        tick.max(crowd).min(MAX_FANOUT_TICK)
    }

    /// Sends the round at most once per fan-out tick: at once if the last one is a tick old,
    /// else at the end of the tick. Called at the end of every handler that may add to it.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled || !self.round_pending() {
            return;
        }
        let since = self.last_flush.elapsed();
        let tick = self.fanout_tick();
        if since >= tick {
            self.flush();
        } else {
            self.flush_scheduled = true;
            ctx.run_later(tick - since, |a, _| a.flush());
        }
    }

    /// Sends the round: one message per subscriber holding its answers, the relayed updates
    /// (not its own), then the awareness updates; each update framed once per framing.
    fn flush(&mut self) {
        self.flush_scheduled = false;
        self.last_flush = Instant::now();
        // A subscriber cut as a slow consumer clears its awareness: send that too (each pass
        // can only cut more subscribers, so this ends).
        while self.round_pending() {
            let round = std::mem::take(&mut self.round);
            let aw = std::mem::take(&mut self.round_awareness);
            let mut answers = std::mem::take(&mut self.answers);
            let mut encoded: HashMap<Framing, (Vec<Bytes>, Vec<Bytes>)> = HashMap::new();
            let targets: Vec<(SessionId, Framing)> = self
                .subs
                .iter()
                .map(|(id, s)| (*id, s.framing.clone()))
                .collect();
            for (id, framing) in targets {
                let (updates, awareness) = encoded.entry(framing).or_insert_with_key(|f| {
                    let u = round.iter().map(|(_, _, u)| Bytes::from(f.update(u)));
                    let a = aw.iter().map(|a| Bytes::from(f.awareness(a)));
                    (u.collect(), a.collect())
                });
                // Its answers first: a join's sync step 1 then precedes every relay.
                let mut frames = answers.remove(&id).unwrap_or_default();
                frames.extend(
                    updates
                        .iter()
                        .zip(&round)
                        .filter(|(_, (_, author, _))| *author != id)
                        .map(|(b, _)| Frame::Binary(b.clone())),
                );
                frames.extend(awareness.iter().map(|b| Frame::Binary(b.clone())));
                if !frames.is_empty() {
                    self.send_frames(id, frames);
                }
            }
        }
    }

    fn send_frames(&mut self, session: SessionId, frames: Vec<Frame>) {
        let Some(sub) = self.subs.get(&session) else {
            return;
        };
        let (count, bytes) = (
            frames.len() as u64,
            frames.iter().map(|f| f.len() as u64).sum::<u64>(),
        );
        match sub.out.try_send_all(frames) {
            Ok(()) => {
                let m = metrics();
                m.fanout_frames.inc_by(count);
                m.fanout_bytes.inc_by(bytes);
            }
            Err(refused) => {
                if refused == Refused::Full {
                    warn!(parent: &self.span, session, "slow consumer disconnected");
                    metrics().slow_consumers.inc();
                }
                if let Some(sub) = self.subs.remove(&session) {
                    if refused == Refused::Full {
                        sub.out.force(Frame::Close(
                            CLOSE_TRY_AGAIN,
                            "slow consumer: reconnect and sync again".into(),
                        ));
                    }
                }
                self.unsubscribed(session);
            }
        }
    }

    /// Relays an awareness update to every subscriber, its sender included (as the Hocuspocus
    /// and y-websocket servers do: a provider alone on a document hears its own awareness
    /// renewals, which keep its connection check satisfied).
    fn relay_awareness(&mut self, update: &[u8]) {
        self.round_awareness.push(Bytes::copy_from_slice(update));
    }

    /// Bookkeeping after a subscriber is gone: its awareness states are cleared for the
    /// others; the idle check starts when it was the last.
    fn unsubscribed(&mut self, session: SessionId) {
        if let Some(gone) = self.awareness.remove_owner(session) {
            self.relay_awareness(&gone);
        }
        if self.subs.is_empty() {
            self.idle_generation += 1;
        }
    }

    /// Answers a waiter whose revision is durable.
    fn release(&mut self, waiter: Waiter) {
        match waiter {
            Waiter::Applied(session) => {
                let frame = self
                    .subs
                    .get(&session)
                    .and_then(|s| s.framing.sync_status(true));
                if let Some(f) = frame {
                    self.send(session, vec![f]);
                }
            }
            Waiter::Sync(session, sv) => {
                if let Some(framing) = self.subs.get(&session).map(|s| s.framing.clone()) {
                    let step2 = framing.sync_step2(&self.doc.diff(&sv));
                    self.send(session, vec![step2]);
                }
            }
            Waiter::Joined(session) => {
                if let Some(framing) = self.subs.get(&session).map(|s| s.framing.clone()) {
                    let mut frames = vec![framing.sync_step1(&self.doc.state_vector())];
                    if let Some(all) = self.awareness.encode_all() {
                        frames.push(framing.awareness(&all));
                    }
                    self.send(session, frames);
                }
            }
            Waiter::Rest(tx) => {
                let _ = tx.send(());
            }
            Waiter::Refused(session, code, msg) => {
                let error = refusal_json(code, &msg);
                let frames = self
                    .subs
                    .get(&session)
                    .map(|s| s.framing.refusal(&error, true));
                if let Some(frames) = frames {
                    self.send(session, frames);
                }
            }
        }
    }

    /// Queues `waiter` until everything accepted so far is durable (answers at once if it is).
    fn when_durable(&mut self, waiter: Waiter) {
        let rev = self.doc.rev();
        if rev <= self.durable_rev {
            self.release(waiter);
        } else {
            self.waiters.push_back((rev, waiter));
        }
    }

    /// Marks everything up to `rev` durable: broadcasts those updates, then answers every
    /// waiter whose revision is durable.
    fn made_durable(&mut self, rev: u64) {
        let rev = rev.min(self.doc.rev());
        self.durable_rev = self.durable_rev.max(rev);
        let mut ready = Vec::new();
        while self
            .undurable
            .front()
            .is_some_and(|(r, _, _)| *r <= self.durable_rev)
        {
            ready.extend(self.undurable.pop_front());
        }
        self.round.extend(ready);
        while self
            .waiters
            .front()
            .is_some_and(|(r, _)| *r <= self.durable_rev)
        {
            if let Some((_, w)) = self.waiters.pop_front() {
                self.release(w);
            }
        }
    }

    /// Applies an update from `author` (see the module invariants); answers the author (and
    /// a REST waiter) once durable.
    fn accept(
        &mut self,
        author: SessionId,
        client: &str,
        update: Bytes,
        subject: Option<Arc<str>>,
        waiter: Waiter,
        ctx: &mut Context<Self>,
    ) -> Result<u64, ActorError> {
        if !self.disk.writable() {
            return Err(ActorError::StorageFull);
        }
        let applied = match self.doc.apply(&update) {
            Ok(a) => a,
            Err(e) => {
                metrics().op("refused");
                if self.doc.is_poisoned() {
                    self.poisoned(ctx);
                }
                return Err(e.into());
            }
        };
        let YApplied::Changed { rev } = applied else {
            metrics().op("duplicate");
            self.when_durable(waiter);
            return Ok(self.doc.rev());
        };
        self.writer.do_send(Append {
            doc: self.id.clone(),
            record: LogEntry::Yjs(YUpdateRecord {
                rev,
                client: client.to_string(),
                update: update.to_vec(),
            }),
            subject,
            notify: ctx.address().recipient(),
        });
        metrics().op("applied");
        self.undurable.push_back((rev, author, update));
        self.waiters.push_back((rev, waiter));
        if rev - self.snapshot_rev >= self.config.snapshot_every {
            self.snapshot();
        }
        if !self.strict() {
            self.made_durable(rev);
        }
        Ok(rev)
    }
}

impl Actor for YDocActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(parent: &self.span, rev = self.doc.rev(), "Yjs document loaded");
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

impl Handler<Durable> for YDocActor {
    type Result = ();

    /// Sends the newly durable updates and answers their waiters.
    fn handle(&mut self, m: Durable, ctx: &mut Context<Self>) {
        if m.fenced {
            return LeaseHolder::step_down(self, "another node wrote the document first", ctx);
        }
        self.made_durable(m.rev);
        self.schedule_flush(ctx);
    }
}
