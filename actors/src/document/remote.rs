//! Cluster mode, the owner's side: requests from sessions on other nodes
//! (`cluster::gateway::FromNode`), turned into the same `Join`, `Submit`, `SetPresence` and
//! `Leave` a local session sends. A remote session is a subscriber like any other, whose
//! outbox is a `RemoteSink` sending its frames to its node.
//!
//! Invariants:
//! - A remote session's messages are taken in sequence; a gap unsubscribes it and sends it a
//!   close frame (its node closes the client's connection; the client resumes by revision).
//! - A node asking an actor that is stepping down or unloading hears `NotOwner` and looks
//!   again.

use super::*;
use crate::cluster::gateway::{remote_outbox, FromNode};
use crate::cluster::wire::{self, OwnerMsg, Reply};

impl Handler<FromNode> for DocActor {
    type Result = ();

    fn handle(&mut self, m: FromNode, ctx: &mut Context<Self>) {
        let Some(cluster) = self.lease.as_ref().map(|l| l.cluster.clone()) else {
            return;
        };
        let reply = m.reply;
        if self.closing {
            return cluster.answer(reply, wire::encode(&Reply::NotOwner));
        }
        let node: Arc<str> = Arc::from(m.req.node.as_str());
        match m.req.msg {
            OwnerMsg::Ping { sessions } => {
                let answer = self.remote.answer_ping(&node, &sessions);
                cluster.answer(reply, wire::encode(&answer));
            }
            // A Yjs session's join or update (the others are of no session here).
            OwnerMsg::YJoin { .. } | OwnerMsg::YUpdate { .. } => {
                let e = ActorError::WrongKind {
                    doc: self.name.to_string(),
                    kind: coedit_protocol::DocKind::Text,
                };
                let answer = Reply::Err {
                    code: e.code(),
                    msg: e.to_string(),
                };
                cluster.answer(reply, wire::encode(&answer));
            }
            OwnerMsg::YSync { .. }
            | OwnerMsg::YRefuse { .. }
            | OwnerMsg::YAwareness { .. }
            | OwnerMsg::YQueryAwareness { .. } => {}
            OwnerMsg::Join {
                session,
                client,
                rev,
                json,
                access,
                user,
                ..
            } => {
                if let Some(old) = self.remote.remove(&node, session) {
                    self.remove_subscriber(old, ctx);
                }
                let local =
                    crate::session::NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let join = Join {
                    session: local,
                    client: Arc::from(client.as_str()),
                    rev,
                    format: if json { Format::Json } else { Format::MsgPack },
                    out: remote_outbox(cluster.clone(), node.clone(), session),
                    access,
                    user: user.map(Arc::new),
                };
                let answer = match <Self as Handler<Join>>::handle(self, join, ctx) {
                    Ok(()) => {
                        self.remote.insert(node, session, local);
                        Reply::Ok
                    }
                    Err(e) => Reply::Err {
                        code: e.code(),
                        msg: e.to_string(),
                    },
                };
                cluster.answer(reply, wire::encode(&answer));
            }
            OwnerMsg::Leave { session, .. } => {
                if let Some(local) = self.remote.remove(&node, session) {
                    self.remove_subscriber(local, ctx);
                }
            }
            OwnerMsg::Submit {
                session,
                seq,
                client,
                op_seq,
                base_rev,
                op,
                t,
                reach,
                subject,
            } => {
                let Some(local) = self.take_remote(&node, session, seq, ctx) else {
                    return;
                };
                let op = match serde_json::from_str(&op) {
                    Ok(op) => op,
                    Err(e) => {
                        let err = ServerMsg::Error {
                            code: ErrorCode::InvalidOp,
                            msg: format!("op garbled between servers: {e}"),
                            doc: Some(self.name.to_string()),
                            seq: Some(op_seq),
                        };
                        return self.reply(local, &err);
                    }
                };
                let submit = Submit {
                    session: Some(local),
                    client: Arc::from(client.as_str()),
                    seq: op_seq,
                    base_rev,
                    op,
                    t,
                    reach,
                    subject: subject.map(|s| Arc::from(s.as_str())),
                };
                // A session's outcome (ack, error) reaches it in its frames; the future only
                // matters to REST callers.
                drop(<Self as Handler<Submit>>::handle(self, submit, ctx));
            }
            OwnerMsg::Presence {
                session,
                seq,
                rev,
                sel,
            } => {
                if let Some(local) = self.take_remote(&node, session, seq, ctx) {
                    let m = SetPresence {
                        session: local,
                        rev,
                        sel,
                    };
                    <Self as Handler<SetPresence>>::handle(self, m, ctx);
                }
            }
        }
    }
}

impl DocActor {
    /// The local id of a remote session's message `seq`, if it is the next one; a gap drops
    /// the session (told to reconnect).
    fn take_remote(
        &mut self,
        node: &str,
        session: u64,
        seq: u64,
        ctx: &mut Context<Self>,
    ) -> Option<SessionId> {
        match self.remote.take(node, session, seq) {
            Ok(local) => local,
            Err(local) => {
                warn!(parent: &self.span, node, session, seq, "messages from another node were lost: dropping its session");
                if let Some(sub) = self.subs.get(&local) {
                    sub.out.force(Frame::Close(
                        CLOSE_RESTART,
                        "messages between servers were lost: reconnect and resume".into(),
                    ));
                }
                self.remove_subscriber(local, ctx);
                None
            }
        }
    }
}
