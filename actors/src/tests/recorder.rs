//! The session stand-in of the actor tests: [`Recorder`], an actor implementing
//! `Handler<Outbound>` that decodes every frame a document actor sends it
//! (`ServerMsg::from_msgpack` / `from_json` per frame type) and records it in order, and
//! [`Peer`], one subscribed session as a test drives it (ids, outbox, joins, submits, what it
//! saw). A peer can be stalled, on a thread of its own, to play a client that stopped reading.
//!
//! Invariants:
//! - A recorder records frames in the order its mailbox delivers them and stops at a close
//!   frame, as a session does.
//! - A stalled recorder blocks at most [`WAIT_LIMIT`]; dropping its peer releases it.

use std::sync::{Arc, Condvar, Mutex};

use actix::prelude::*;
use coedit_protocol::{
    Access, ClientId, ErrorCode, Op, PeerPresence, PeerUser, RemoteOp, Role, Selection, ServerMsg,
};

use super::{POLL_PAUSE, WAIT_LIMIT};
use crate::document::{Join, SetPresence, Submit};
use crate::frame::{Format, Frame};
use crate::outbox::{Outbound, Outbox};
use crate::SessionId;

/// Mailbox bound of a recording session (the session's `DEFAULT_OUTBOUND_CAPACITY`).
pub(crate) const RECORDER_CAPACITY: usize = crate::session::DEFAULT_OUTBOUND_CAPACITY;
/// Byte bound of a recording session's outbox (the session's default).
pub(crate) const RECORDER_MAX_BYTES: usize = crate::session::DEFAULT_MAX_OUTBOUND_BYTES;

/// What a recording session saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A data frame, decoded, with the encoding it came in.
    Msg(Format, ServerMsg),
    /// A close frame and its code.
    Close(u16),
}

impl Seen {
    /// The decoded message, if this was a data frame.
    pub(crate) fn msg(&self) -> Option<&ServerMsg> {
        match self {
            Seen::Msg(_, m) => Some(m),
            Seen::Close(_) => None,
        }
    }
}

/// The revisions of every op in the `ops` messages of `seen`, in the order received.
pub(crate) fn op_revs(seen: &[Seen]) -> Vec<u64> {
    seen.iter()
        .filter_map(Seen::msg)
        .flat_map(|m| match m {
            ServerMsg::Ops { ops, .. } => ops.iter().map(|o| o.rev).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The close codes in `seen`.
pub(crate) fn closes(seen: &[Seen]) -> Vec<u16> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Close(c) => Some(*c),
            Seen::Msg(..) => None,
        })
        .collect()
}

/// A held recorder: its handler blocks until released (a client that stopped reading).
#[derive(Default)]
struct Stall {
    released: Mutex<bool>,
    changed: Condvar,
}

impl Stall {
    fn wait(&self) {
        let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        let start = std::time::Instant::now();
        while !*released && start.elapsed() < WAIT_LIMIT {
            released = self
                .changed
                .wait_timeout(released, POLL_PAUSE * 50)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn release(&self) {
        *self.released.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }
}

/// A session stand-in: records every frame it is sent, decoded, in order; stops at a close
/// frame (as a session does), dropping whatever is still queued.
pub(crate) struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    stall: Option<Arc<Stall>>,
    capacity: usize,
}

impl Actor for Recorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.capacity);
    }
}

impl Handler<Outbound> for Recorder {
    type Result = ();

    /// Decodes and records the frames (waiting first while stalled).
    fn handle(&mut self, m: Outbound, ctx: &mut Self::Context) {
        if let Some(stall) = &self.stall {
            stall.wait();
        }
        for frame in &m.frames {
            if self.record(frame) {
                ctx.stop();
                return;
            }
        }
    }
}

impl Recorder {
    /// Decodes and records one frame; true for a close.
    fn record(&mut self, frame: &Frame) -> bool {
        let seen = match frame {
            Frame::Binary(b) => Seen::Msg(
                Format::MsgPack,
                ServerMsg::from_msgpack(b).expect("a MessagePack frame decodes"),
            ),
            Frame::Text(t) => Seen::Msg(
                Format::Json,
                ServerMsg::from_json(t).expect("a JSON frame decodes"),
            ),
            Frame::Close(code, _) => Seen::Close(*code),
        };
        let close = matches!(seen, Seen::Close(_));
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seen);
        close
    }
}

/// Answered once every frame queued before it was recorded.
#[derive(Message)]
#[rtype(result = "()")]
struct SyncRecorder;

impl Handler<SyncRecorder> for Recorder {
    type Result = ();

    fn handle(&mut self, _: SyncRecorder, _: &mut Self::Context) {}
}

/// One subscribed session as a test drives it: its ids, its outbox, what it saw.
pub(crate) struct Peer {
    pub(crate) session: SessionId,
    pub(crate) client: ClientId,
    pub(crate) out: Outbox,
    pub(crate) format: Format,
    addr: Addr<Recorder>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stall: Option<Arc<Stall>>,
    arbiter: Option<Arbiter>,
}

impl Peer {
    /// A MessagePack session on this thread with the session's default bounds.
    pub(crate) fn new(session: SessionId, client: &str) -> Peer {
        Self::build(session, client, Format::MsgPack, RECORDER_MAX_BYTES, None)
    }

    /// A JSON session on this thread with the session's default bounds.
    pub(crate) fn json(session: SessionId, client: &str) -> Peer {
        Self::build(session, client, Format::Json, RECORDER_MAX_BYTES, None)
    }

    /// A MessagePack session on this thread whose outbox refuses frames once `max_bytes` wait.
    pub(crate) fn bounded(session: SessionId, client: &str, max_bytes: usize) -> Peer {
        Self::build(session, client, Format::MsgPack, max_bytes, None)
    }

    /// A session that reads nothing until [`Peer::release`], on a thread of its own, with a
    /// mailbox of `capacity` frames and an outbox bound of `max_bytes`. Returns once the
    /// recorder runs (its mailbox bound is set).
    pub(crate) async fn stalled(
        session: SessionId,
        client: &str,
        capacity: usize,
        max_bytes: usize,
    ) -> Peer {
        let peer = Self::build(session, client, Format::MsgPack, max_bytes, Some(capacity));
        peer.addr
            .send(SyncRecorder)
            .await
            .expect("stalled recorder starts");
        peer
    }

    fn build(
        session: SessionId,
        client: &str,
        format: Format,
        max_bytes: usize,
        stalled_capacity: Option<usize>,
    ) -> Peer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stall = stalled_capacity.map(|_| Arc::new(Stall::default()));
        let recorder = Recorder {
            seen: seen.clone(),
            stall: stall.clone(),
            capacity: stalled_capacity.unwrap_or(RECORDER_CAPACITY),
        };
        let (addr, arbiter) = if stall.is_some() {
            let arbiter = Arbiter::new();
            let addr = Recorder::start_in_arbiter(&arbiter.handle(), move |_| recorder);
            (addr, Some(arbiter))
        } else {
            (recorder.start(), None)
        };
        Peer {
            session,
            client: ClientId::from(client),
            out: Outbox::new(addr.clone().recipient(), max_bytes),
            format,
            addr,
            seen,
            stall,
            arbiter,
        }
    }

    /// The access this session's joins report.
    pub(crate) fn access(&self) -> Access {
        Access {
            role: Role::Editor,
            sub: Some(format!("subject-{}", self.session)),
        }
    }

    /// The display metadata this session's presence carries.
    pub(crate) fn user(&self) -> PeerUser {
        PeerUser {
            name: Some(format!("user {}", self.client)),
            color: Some("#336699".into()),
        }
    }

    /// A join of this session at `rev`.
    pub(crate) fn join(&self, rev: Option<u64>) -> Join {
        Join {
            session: self.session,
            client: self.client.clone(),
            rev,
            format: self.format,
            out: self.out.clone(),
            access: self.access(),
            user: Some(Arc::new(self.user())),
        }
    }

    /// A submit of `op` by this session against `base_rev` under `seq`.
    pub(crate) fn submit(&self, seq: u64, base_rev: u64, op: Op) -> Submit {
        Submit {
            session: Some(self.session),
            client: self.client.clone(),
            seq,
            base_rev,
            reach: op.base_len(),
            op,
            t: Some(1000 + seq),
            subject: Some(Arc::from(format!("subject-{}", self.session))),
        }
    }

    /// A presence of this session: selections `sel` at `rev`.
    pub(crate) fn presence(&self, rev: u64, sel: &[Selection]) -> SetPresence {
        SetPresence {
            session: self.session,
            rev,
            sel: sel.to_vec(),
        }
    }

    /// Everything recorded so far, after the recorder handled every frame queued before this
    /// call (a stopped recorder has nothing more coming). Not for a stalled recorder.
    pub(crate) async fn frames(&self) -> Vec<Seen> {
        let _ = self.addr.send(SyncRecorder).await;
        self.seen_now()
    }

    /// Everything recorded so far, without waiting.
    pub(crate) fn seen_now(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets a stalled recorder read again.
    pub(crate) fn release(&self) {
        if let Some(s) = &self.stall {
            s.release();
        }
    }

    /// Whether the recorder still runs (it stops at a close frame).
    pub(crate) fn connected(&self) -> bool {
        self.addr.connected()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.release();
        if let Some(a) = &self.arbiter {
            a.stop();
        }
    }
}

/// The error messages among `seen`, as `(code, doc, seq)`.
pub(crate) fn errors(seen: &[Seen]) -> Vec<(ErrorCode, Option<String>, Option<u64>)> {
    seen.iter()
        .filter_map(Seen::msg)
        .filter_map(|m| match m {
            ServerMsg::Error { code, doc, seq, .. } => Some((*code, doc.clone(), *seq)),
            _ => None,
        })
        .collect()
}

/// The `presence` messages among `seen`, as `(rev, peers)`.
pub(crate) fn presences(seen: &[Seen]) -> Vec<(u64, Vec<PeerPresence>)> {
    seen.iter()
        .filter_map(Seen::msg)
        .filter_map(|m| match m {
            ServerMsg::Presence { rev, peers, .. } => Some((*rev, peers.clone())),
            _ => None,
        })
        .collect()
}

/// The ops among `seen`, in order.
pub(crate) fn ops(seen: &[Seen]) -> Vec<RemoteOp> {
    seen.iter()
        .filter_map(Seen::msg)
        .flat_map(|m| match m {
            ServerMsg::Ops { ops, .. } => ops.clone(),
            _ => Vec::new(),
        })
        .collect()
}
