//! The owner's side of routing: the task feeding a document actor the requests other nodes
//! send its document (`{prefix}.doc.{hex id}.req`), the `RemoteSink` actor standing in for a
//! remote session in the document's subscriber table, and [`RemoteSubs`], the bookkeeping of
//! those sessions. The document actor's handler for the requests is `document/remote.rs`.
//!
//! Invariants:
//! - Requests reach the document actor in the order NATS delivered them (one task, `do_send`
//!   in order).
//! - A remote session's messages are taken in sequence; a gap, or its node not mentioning it
//!   for [`REMOTE_SILENCE`], unsubscribes it (with a close frame sent its way).
//! - A remote session's frames leave numbered from 1, in the order the document sent them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures_util::StreamExt;
use tracing::warn;

use super::wire::{self, Reply, ToOwner};
use super::{Cluster, REMOTE_SILENCE};
use crate::outbox::{Outbound, Outbox};
use crate::SessionId;

/// Mailbox capacity of a [`RemoteSink`] (frames wait there only for the publisher).
pub const REMOTE_SINK_CAPACITY: usize = 4096;
/// Bytes a remote session's queue may hold before it is cut as a slow consumer.
pub const REMOTE_OUTBOUND_BYTES: usize = 16 * 1024 * 1024;

/// A request from another node for the document, as its actor receives it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromNode {
    /// The request.
    pub req: ToOwner,
    /// Where to answer, if an answer is expected.
    pub reply: Option<async_nats::Subject>,
}

/// Subscribes to document `doc`'s requests and hands them to `to`, in order, until the
/// returned handle is aborted (the actor stops or steps down).
pub fn serve(
    cluster: Arc<Cluster>,
    doc: &str,
    to: Recipient<FromNode>,
) -> tokio::task::JoinHandle<()> {
    let doc = doc.to_string();
    tokio::spawn(async move {
        let mut sub = match cluster.subscribe_doc(&doc).await {
            Ok(s) => s,
            Err(e) => {
                warn!(doc = %doc, error = %e, "cannot subscribe to the document's requests");
                return;
            }
        };
        while let Some(msg) = sub.next().await {
            match wire::decode::<ToOwner>(&msg.payload) {
                Some(req) if req.v == wire::WIRE_VERSION => {
                    // The actor is gone: its stop aborts this task soon; the senders' pings
                    // fail and their sessions resume elsewhere.
                    if !to.connected() {
                        return;
                    }
                    // Unbounded, as a local session's `do_send`: a request is never dropped
                    // here (a swamped owner shows as NATS's slow-consumer limit instead).
                    to.do_send(FromNode {
                        req,
                        reply: msg.reply,
                    });
                }
                _ => warn!(doc = %doc, "undecodable request from another node"),
            }
        }
    })
}

/// Stands in for one remote session: frames the document sends it go to its node.
pub struct RemoteSink {
    cluster: Arc<Cluster>,
    node: Arc<str>,
    session: u64,
    seq: u64,
}

impl RemoteSink {
    /// A sink for session `session` of node `node`.
    pub fn new(cluster: Arc<Cluster>, node: Arc<str>, session: u64) -> Self {
        RemoteSink {
            cluster,
            node,
            session,
            seq: 0,
        }
    }
}

/// The outbox of remote session `session` of node `node`: a new [`RemoteSink`].
pub fn remote_outbox(cluster: Arc<Cluster>, node: Arc<str>, session: u64) -> Outbox {
    let sink = RemoteSink::new(cluster, node, session).start();
    Outbox::new(sink.recipient(), REMOTE_OUTBOUND_BYTES)
}

impl Actor for RemoteSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(REMOTE_SINK_CAPACITY);
    }
}

impl Handler<Outbound> for RemoteSink {
    type Result = ();

    fn handle(&mut self, m: Outbound, _: &mut Context<Self>) {
        self.seq += 1;
        self.cluster
            .send_frames(&self.node, self.session, self.seq, &m.frames);
    }
}

/// A remote session in the document's subscriber table.
pub struct RemoteSub {
    /// Its id in the subscriber table.
    pub local: SessionId,
    /// Number of its last message taken.
    pub seq: u64,
    /// When its node last mentioned it.
    pub seen: Instant,
}

/// The remote sessions of one document, by node and session on that node.
#[derive(Default)]
pub struct RemoteSubs {
    subs: HashMap<(Arc<str>, u64), RemoteSub>,
}

impl RemoteSubs {
    /// Records a joined remote session.
    pub fn insert(&mut self, node: Arc<str>, session: u64, local: SessionId) {
        self.subs.insert(
            (node, session),
            RemoteSub {
                local,
                seq: 1,
                seen: Instant::now(),
            },
        );
    }

    /// Takes message `seq` of a remote session: its local id if it is the next one; `Err`
    /// with the local id to drop on a gap; `Ok(None)` for an unknown session.
    pub fn take(
        &mut self,
        node: &str,
        session: u64,
        seq: u64,
    ) -> Result<Option<SessionId>, SessionId> {
        let key = (Arc::from(node), session);
        let Some(s) = self.subs.get_mut(&key) else {
            return Ok(None);
        };
        if seq != s.seq + 1 {
            let local = s.local;
            self.subs.remove(&key);
            return Err(local);
        }
        s.seq = seq;
        s.seen = Instant::now();
        Ok(Some(s.local))
    }

    /// Forgets a remote session; its local id.
    pub fn remove(&mut self, node: &str, session: u64) -> Option<SessionId> {
        self.subs
            .remove(&(Arc::from(node), session))
            .map(|s| s.local)
    }

    /// Its node mentioned these sessions now; the answer is those it does not have.
    pub fn seen(&mut self, node: &str, sessions: &[u64]) -> Vec<u64> {
        let now = Instant::now();
        let mut unknown = Vec::new();
        for s in sessions {
            match self.subs.get_mut(&(Arc::from(node), *s)) {
                Some(r) => r.seen = now,
                None => unknown.push(*s),
            }
        }
        unknown
    }

    /// The answer to node `node`'s ping naming `sessions`: `Ok`, or those this owner does not
    /// have (their node closes them).
    pub fn answer_ping(&mut self, node: &str, sessions: &[u64]) -> Reply {
        let unknown = self.seen(node, sessions);
        if unknown.is_empty() {
            Reply::Ok
        } else {
            Reply::Unknown { sessions: unknown }
        }
    }

    /// Forgets the sessions not mentioned for [`REMOTE_SILENCE`]; their local ids.
    pub fn expire(&mut self) -> Vec<SessionId> {
        let mut gone = Vec::new();
        self.subs.retain(|_, s| {
            let keep = s.seen.elapsed() < REMOTE_SILENCE;
            if !keep {
                gone.push(s.local);
            }
            keep
        });
        gone
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_sessions_are_taken_in_sequence_and_reported_when_unknown() {
        let mut r = RemoteSubs::default();
        r.insert(Arc::from("b"), 7, 100);
        assert_eq!(r.take("b", 7, 2), Ok(Some(100)));
        assert_eq!(r.take("b", 7, 3), Ok(Some(100)));
        assert_eq!(r.take("b", 7, 5), Err(100), "a gap drops the session");
        assert_eq!(r.take("b", 7, 6), Ok(None), "then it is unknown");
        assert_eq!(r.take("c", 7, 2), Ok(None), "sessions are per node");
        r.insert(Arc::from("b"), 8, 101);
        assert_eq!(
            r.seen("b", &[7, 8]),
            vec![7],
            "the node hears which it lost"
        );
        assert!(r.expire().is_empty(), "seen just now");
        assert_eq!(r.remove("b", 8), Some(101));
        assert!(r.is_empty());
    }
}
