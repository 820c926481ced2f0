//! The document actor: owns one `Document` and everyone subscribed to it.
//!
//! Invariants:
//! - Submits are serialized by the actor's mailbox; each accepted op is applied at once, and
//!   reaches subscribers in revision order through one outbound stream per subscriber.
//! - Fan-out is coalesced: ops and presence changes accepted within one tick go out as one `ops`
//!   frame and one `presence` frame, each encoded once per format and shared by every
//!   subscriber. The author finds its own op in that stream (that is its ack); duplicates of
//!   already-applied ops are answered with an explicit `ack`, sent after flushing the pending
//!   ops so that it never overtakes an earlier revision.
//! - Stored selections are transformed through every applied op, so they always refer to the
//!   current revision.
//! - An outbound mailbox that is full marks a slow consumer: it is unsubscribed and closed
//!   with code 1013; it resumes by rejoining with its revision.
//! - When nobody has been subscribed for `idle_timeout`, the actor saves the document, tells
//!   the registry, refuses further requests with `ActorError::Closing`, and stops.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use ahash::AHashMap;
use coedit_protocol::document::DocumentConfig;
use coedit_protocol::{
    transform_selection, ClientId, DocError, Document, DocumentSnapshot, ErrorCode, Op,
    PeerPresence, RemoteOp, Selection, ServerMsg,
};
use tracing::{debug, info_span, warn};

use crate::errors::{ActorError, CLOSE_RESTART, CLOSE_TRY_AGAIN};
use crate::frame::{Format, Frame, SharedFrame};
use crate::registry::{DocClosed, Registry};
use crate::session::Outbound;
use crate::store::Store;
use crate::SessionId;

/// Default coalescing tick for fan-out.
pub const DEFAULT_FANOUT_TICK: Duration = Duration::from_millis(5);
/// Default time a document stays loaded with no subscribers.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of every document actor.
#[derive(Clone, Debug)]
pub struct DocActorConfig {
    /// Fan-out coalescing tick; zero sends every op at once.
    pub fanout_tick: Duration,
    /// Time without subscribers before the document unloads.
    pub idle_timeout: Duration,
    /// Limits of the document itself.
    pub document: DocumentConfig,
}

impl Default for DocActorConfig {
    fn default() -> Self {
        DocActorConfig {
            fanout_tick: DEFAULT_FANOUT_TICK,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            document: DocumentConfig::default(),
        }
    }
}

/// One subscribed session.
struct Subscriber {
    client: ClientId,
    out: Recipient<Outbound>,
    format: Format,
    sel: Vec<Selection>,
}

/// The actor owning one document. See the module documentation.
pub struct DocActor {
    /// Document id.
    id: Arc<str>,
    /// The document core.
    doc: Document,
    /// Subscribed sessions.
    subs: AHashMap<SessionId, Subscriber>,
    /// Ops accepted since the last flush.
    pending_ops: Vec<RemoteOp>,
    /// Presence changes since the last flush, by client.
    pending_presence: AHashMap<ClientId, Vec<Selection>>,
    /// A flush is scheduled.
    flush_scheduled: bool,
    /// Bumped whenever the subscriber set becomes empty; an idle check only acts on its own.
    idle_generation: u64,
    /// Saving and stopping; every request is refused.
    closing: bool,
    config: DocActorConfig,
    store: Arc<dyn Store>,
    registry: Addr<Registry>,
    span: tracing::Span,
}

impl DocActor {
    /// Loads document `id` from `store` (an empty document if it has none).
    pub fn load(
        id: Arc<str>,
        config: DocActorConfig,
        store: Arc<dyn Store>,
        registry: Addr<Registry>,
    ) -> Result<Self, ActorError> {
        let doc = match store.load(&id)? {
            Some(snap) => Document::from_snapshot(snap, config.document.clone()),
            None => Document::new(config.document.clone()),
        };
        let span = info_span!("doc", id = %id);
        Ok(DocActor {
            id,
            doc,
            subs: AHashMap::new(),
            pending_ops: Vec::new(),
            pending_presence: AHashMap::new(),
            flush_scheduled: false,
            idle_generation: 0,
            closing: false,
            config,
            store,
            registry,
            span,
        })
    }

    fn check_open(&self) -> Result<(), ActorError> {
        if self.closing {
            return Err(ActorError::Closing(self.id.to_string()));
        }
        Ok(())
    }

    /// Sends one frame to one subscriber; a full mailbox disconnects it.
    fn send_to(&mut self, session: SessionId, frame: Frame) {
        let Some(sub) = self.subs.get(&session) else {
            return;
        };
        match sub.out.try_send(Outbound(frame)) {
            Ok(()) => {}
            Err(SendError::Full(_)) => {
                warn!(parent: &self.span, session, "slow consumer disconnected");
                let sub = self.subs.remove(&session);
                if let Some(sub) = sub {
                    sub.out.do_send(Outbound(Frame::Close(
                        CLOSE_TRY_AGAIN,
                        "slow consumer: rejoin with your revision".into(),
                    )));
                    self.unsubscribed(sub);
                }
            }
            Err(SendError::Closed(_)) => {
                if let Some(sub) = self.subs.remove(&session) {
                    self.unsubscribed(sub);
                }
            }
        }
    }

    /// Sends a message to one subscriber in its format.
    fn reply(&mut self, session: SessionId, msg: &ServerMsg) {
        if let Some(format) = self.subs.get(&session).map(|s| s.format) {
            self.send_to(session, Frame::encode(msg, format));
        }
    }

    /// Sends `msg` to every subscriber, encoded at most once per format.
    fn broadcast(&mut self, msg: &ServerMsg) {
        let mut shared = SharedFrame::new(msg);
        let targets: Vec<(SessionId, Format)> =
            self.subs.iter().map(|(id, s)| (*id, s.format)).collect();
        for (id, format) in targets {
            self.send_to(id, shared.get(format));
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled {
            return;
        }
        self.flush_scheduled = true;
        if self.config.fanout_tick.is_zero() {
            self.flush();
        } else {
            ctx.run_later(self.config.fanout_tick, |a, _| a.flush());
        }
    }

    /// Sends everything accepted since the last flush.
    fn flush(&mut self) {
        self.flush_scheduled = false;
        if !self.pending_ops.is_empty() {
            let msg = ServerMsg::Ops {
                doc: self.id.to_string(),
                ops: std::mem::take(&mut self.pending_ops),
            };
            self.broadcast(&msg);
        }
        if !self.pending_presence.is_empty() {
            let peers = self
                .pending_presence
                .drain()
                .map(|(client, sel)| PeerPresence {
                    client: client.to_string(),
                    sel,
                })
                .collect();
            let msg = ServerMsg::Presence {
                doc: self.id.to_string(),
                rev: self.doc.rev(),
                peers,
            };
            self.broadcast(&msg);
        }
    }

    /// Bookkeeping after a subscriber is removed: its presence is cleared.
    fn unsubscribed(&mut self, sub: Subscriber) {
        if !sub.sel.is_empty() {
            self.pending_presence.insert(sub.client, Vec::new());
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

    fn schedule_idle_check(&mut self, ctx: &mut Context<Self>) {
        let generation = self.idle_generation;
        ctx.run_later(self.config.idle_timeout, move |a, ctx| {
            if a.subs.is_empty() && a.idle_generation == generation && !a.closing {
                a.unload(ctx);
            }
        });
    }

    /// Saves the document and stops.
    fn unload(&mut self, ctx: &mut Context<Self>) {
        self.flush();
        if let Err(e) = self.store.save(&self.id, &self.doc.snapshot()) {
            warn!(parent: &self.span, error = %e, "cannot save idle document; keeping it loaded");
            self.idle_generation += 1;
            self.schedule_idle_check(ctx);
            return;
        }
        debug!(parent: &self.span, rev = self.doc.rev(), "unloading idle document");
        self.closing = true;
        self.registry.do_send(DocClosed {
            id: self.id.clone(),
            addr: ctx.address(),
        });
        ctx.stop();
    }

    /// Validates selections against the document at `rev` and moves them to the current
    /// revision.
    fn current_selections(&self, rev: u64, sel: &[Selection]) -> Result<Vec<Selection>, String> {
        let len = self.doc.len_at(rev).map_err(|e| e.to_string())? as u64;
        if let Some(bad) = sel.iter().find(|s| s.0 > len || s.1 > len) {
            return Err(format!(
                "selection {bad:?} lies outside the document of {len} characters at revision {rev}"
            ));
        }
        let ops = self.doc.ops_since(rev).map_err(|e| e.to_string())?;
        let mut sel = sel.to_vec();
        for (_, e) in ops {
            for s in &mut sel {
                *s = transform_selection(*s, e.op);
            }
        }
        Ok(sel)
    }
}

impl Actor for DocActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(parent: &self.span, rev = self.doc.rev(), "document loaded");
        self.schedule_idle_check(ctx);
    }
}

/// Subscribe a session. The answer goes to `out`: the ops after `rev` (possibly none) when they
/// are retained, otherwise a snapshot; then the others' presence.
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
    pub out: Recipient<Outbound>,
}

impl Handler<Join> for DocActor {
    type Result = Result<(), ActorError>;

    /// Adds the subscriber and sends it the catch-up or a snapshot, then current presence.
    fn handle(&mut self, m: Join, _: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        let doc = self.id.to_string();
        let catch_up = match m.rev.map(|r| self.doc.ops_since(r)) {
            Some(Ok(ops)) => ServerMsg::Ops {
                doc: doc.clone(),
                ops: ops
                    .map(|(rev, e)| RemoteOp {
                        rev,
                        client: e.client.to_string(),
                        seq: e.seq,
                        op: e.op.clone(),
                        t: None,
                    })
                    .collect(),
            },
            _ => ServerMsg::Snapshot {
                doc: doc.clone(),
                rev: self.doc.rev(),
                text: self.doc.text(),
            },
        };
        let peers: Vec<PeerPresence> = self
            .subs
            .values()
            .filter(|s| !s.sel.is_empty())
            .map(|s| PeerPresence {
                client: s.client.to_string(),
                sel: s.sel.clone(),
            })
            .collect();
        self.subs.insert(
            m.session,
            Subscriber {
                client: m.client,
                out: m.out,
                format: m.format,
                sel: Vec::new(),
            },
        );
        self.reply(m.session, &catch_up);
        if !peers.is_empty() {
            let rev = self.doc.rev();
            self.reply(m.session, &ServerMsg::Presence { doc, rev, peers });
        }
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

/// The result of an accepted submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The revision the op produced.
    pub rev: u64,
    /// The op as applied, when retained.
    pub op: Option<Op>,
    /// The op had already been applied; nothing changed.
    pub duplicate: bool,
}

/// Submit an op: from a subscribed session (which then hears the outcome in its stream) or
/// from the REST API (`session: None`, which reads the returned result).
#[derive(Message)]
#[rtype(result = "Result<Applied, ActorError>")]
pub struct Submit {
    /// The submitting session, if any.
    pub session: Option<SessionId>,
    /// Author's client id.
    pub client: ClientId,
    /// Author's sequence number.
    pub seq: u64,
    /// Base revision.
    pub base_rev: u64,
    /// The op.
    pub op: Op,
    /// The author's opaque timestamp, echoed to subscribers.
    pub t: Option<u64>,
}

impl Handler<Submit> for DocActor {
    type Result = Result<Applied, ActorError>;

    /// Applies the op, moves stored selections through it and queues it for fan-out. A session
    /// is told of refusals (`error`) and duplicates (`ack`) directly.
    fn handle(&mut self, m: Submit, ctx: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        if let Some(s) = m.session {
            if !self.subs.contains_key(&s) {
                return Err(ActorError::NotSubscribed(self.id.to_string()));
            }
        }
        let result = self
            .doc
            .submit(&m.client, m.seq, m.base_rev, m.op)
            .map(|s| Applied {
                rev: s.rev,
                op: s.op.cloned(),
                duplicate: s.duplicate,
            });
        match &result {
            Ok(a) if a.duplicate => {
                if let Some(s) = m.session {
                    // The ack must follow every earlier revision in this session's stream.
                    self.flush();
                    let ack = ServerMsg::Ack {
                        doc: self.id.to_string(),
                        seq: m.seq,
                        rev: a.rev,
                    };
                    self.reply(s, &ack);
                }
            }
            Ok(a) => {
                let op = a.op.clone().unwrap_or_default();
                for sub in self.subs.values_mut() {
                    for s in &mut sub.sel {
                        *s = transform_selection(*s, &op);
                    }
                }
                self.pending_ops.push(RemoteOp {
                    rev: a.rev,
                    client: m.client.to_string(),
                    seq: m.seq,
                    op,
                    t: m.t,
                });
                self.schedule_flush(ctx);
            }
            Err(e) => {
                debug!(parent: &self.span, error = %e, "op refused");
                if let Some(s) = m.session {
                    let err = ServerMsg::Error {
                        code: e.code(),
                        msg: e.to_string(),
                        doc: Some(self.id.to_string()),
                        seq: Some(m.seq),
                    };
                    self.reply(s, &err);
                }
            }
        }
        Ok(result?)
    }
}

/// A session's selections at revision `rev`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPresence {
    /// The session.
    pub session: SessionId,
    /// Revision the selections refer to.
    pub rev: u64,
    /// `[anchor, head]` pairs; empty hides the caret.
    pub sel: Vec<Selection>,
}

impl Handler<SetPresence> for DocActor {
    type Result = ();

    /// Validates and transforms the selections to the current revision, stores them and queues
    /// them for fan-out; a bad selection gets an `error` and changes nothing.
    fn handle(&mut self, m: SetPresence, ctx: &mut Context<Self>) {
        if self.closing || !self.subs.contains_key(&m.session) {
            return;
        }
        match self.current_selections(m.rev, &m.sel) {
            Ok(sel) => {
                if let Some(sub) = self.subs.get_mut(&m.session) {
                    sub.sel = sel.clone();
                    self.pending_presence.insert(sub.client.clone(), sel);
                    self.schedule_flush(ctx);
                }
            }
            Err(msg) => {
                let err = ServerMsg::Error {
                    code: ErrorCode::InvalidSelection,
                    msg,
                    doc: Some(self.id.to_string()),
                    seq: None,
                };
                self.reply(m.session, &err);
            }
        }
    }
}

/// The current text and revision.
#[derive(Message)]
#[rtype(result = "Result<DocumentSnapshot, ActorError>")]
pub struct GetSnapshot;

impl Handler<GetSnapshot> for DocActor {
    type Result = Result<DocumentSnapshot, ActorError>;

    /// Returns a snapshot of the document.
    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        Ok(self.doc.snapshot())
    }
}

/// The retained ops producing revisions `from + 1 ..= to` (to the head when `to` is absent).
#[derive(Message)]
#[rtype(result = "Result<Vec<RemoteOp>, ActorError>")]
pub struct GetOps {
    /// Revision to start after.
    pub from: u64,
    /// Last revision to include.
    pub to: Option<u64>,
}

impl Handler<GetOps> for DocActor {
    type Result = Result<Vec<RemoteOp>, ActorError>;

    /// Returns the ops, or `RevisionTooOld` / `FutureRevision`.
    fn handle(&mut self, m: GetOps, _: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        let to = m.to.unwrap_or(u64::MAX);
        if to > self.doc.rev() && m.to.is_some() {
            return Err(DocError::FutureRevision {
                base: to,
                current: self.doc.rev(),
            }
            .into());
        }
        Ok(self
            .doc
            .ops_since(m.from)?
            .take_while(|(rev, _)| *rev <= to)
            .map(|(rev, e)| RemoteOp {
                rev,
                client: e.client.to_string(),
                seq: e.seq,
                op: e.op.clone(),
                t: None,
            })
            .collect())
    }
}

/// Save now and stop (server shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Shutdown;

impl Handler<Shutdown> for DocActor {
    type Result = Result<(), ActorError>;

    /// Flushes fan-out, tells every subscriber to reconnect (close 1012), saves the document
    /// and stops.
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.flush();
        for (_, sub) in self.subs.drain() {
            sub.out.do_send(Outbound(Frame::Close(
                CLOSE_RESTART,
                "server restarting: reconnect and rejoin with your revision".into(),
            )));
        }
        self.store.save(&self.id, &self.doc.snapshot())?;
        self.closing = true;
        ctx.stop();
        Ok(())
    }
}
