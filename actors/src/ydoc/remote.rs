//! Cluster mode, the owner's side for Yjs documents: requests from sessions on other nodes
//! (`cluster::gateway::FromNode`), turned into the same `YJoin`, `YSyncStep1`, `YUpdate`,
//! `YRefuse`, `YAwareness`, `YQueryAwareness` and leave a local session sends. A remote
//! session is a subscriber like any other, whose outbox is a `RemoteSink` sending its frames
//! to its node.
//!
//! Invariants:
//! - A remote session's messages are taken in sequence; a gap unsubscribes it and sends it a
//!   close frame (its node closes the client's connection; the client reconnects and syncs).
//! - An update is answered (accepted, or the refusal also told in the session's frames), so
//!   the session's node audits and resyncs as for a local document.
//! - A node asking an actor that is stepping down or unloading hears `NotOwner`.

use std::sync::atomic::Ordering;

use yrs::updates::decoder::Decode;

use super::*;
use crate::cluster::gateway::{remote_outbox, FromNode};
use crate::cluster::wire::{self, OwnerMsg, Reply};
use crate::errors::CLOSE_RESTART;

impl Handler<FromNode> for YDocActor {
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
        let refused = |e: ActorError| Reply::Err {
            code: e.code(),
            msg: e.to_string(),
        };
        match m.req.msg {
            OwnerMsg::Ping { sessions } => {
                let answer = self.remote.answer_ping(&node, &sessions);
                cluster.answer(reply, wire::encode(&answer));
            }
            OwnerMsg::YJoin {
                session,
                seq,
                hocuspocus,
                readonly,
            } => {
                let framing = hocuspocus.map_or(Framing::YWebsocket, |a| {
                    Framing::Hocuspocus(Arc::from(a.as_str()))
                });
                if seq > 1 {
                    // A resync of a subscribed session: it keeps its outbox.
                    let Some(local) = self.take_remote(&node, session, seq, ctx) else {
                        return;
                    };
                    if let Some(out) = self.subs.get(&local).map(|s| s.out.clone()) {
                        let join = YJoin {
                            session: local,
                            framing,
                            readonly,
                            out,
                        };
                        let _ = <Self as Handler<YJoin>>::handle(self, join, ctx);
                    }
                    return;
                }
                if let Some(old) = self.remote.remove(&node, session) {
                    self.remove_subscriber(old, ctx);
                }
                let local = crate::session::NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
                let join = YJoin {
                    session: local,
                    framing,
                    readonly,
                    out: remote_outbox(cluster.clone(), node.clone(), session),
                };
                let answer = match <Self as Handler<YJoin>>::handle(self, join, ctx) {
                    Ok(()) => {
                        self.remote.insert(node, session, local);
                        Reply::Ok
                    }
                    Err(e) => refused(e),
                };
                cluster.answer(reply, wire::encode(&answer));
            }
            OwnerMsg::Leave { session, .. } => {
                if let Some(local) = self.remote.remove(&node, session) {
                    self.remove_subscriber(local, ctx);
                }
            }
            OwnerMsg::YSync { session, seq, sv } => {
                let Some(local) = self.take_remote(&node, session, seq, ctx) else {
                    return;
                };
                match StateVector::decode_v1(&sv) {
                    Ok(sv) => {
                        let m = YSyncStep1 { session: local, sv };
                        let _ = <Self as Handler<YSyncStep1>>::handle(self, m, ctx);
                    }
                    // Decoded on the session's node: garbled between the servers.
                    Err(_) => {
                        self.remote.remove(&node, session);
                        self.drop_remote(local, ctx);
                    }
                }
            }
            OwnerMsg::YUpdate {
                session,
                seq,
                client,
                update,
                subject,
            } => {
                let Some(local) = self.take_remote(&node, session, seq, ctx) else {
                    let e = ActorError::NotSubscribed(self.name.to_string());
                    return cluster.answer(reply, wire::encode(&refused(e)));
                };
                let m = YUpdate {
                    session: local,
                    client: Arc::from(client.as_str()),
                    update: Bytes::from(update),
                    subject: subject.map(|s| Arc::from(s.as_str())),
                };
                let answer = match <Self as Handler<YUpdate>>::handle(self, m, ctx) {
                    Ok(()) => Reply::Ok,
                    Err(e) => refused(e),
                };
                cluster.answer(reply, wire::encode(&answer));
            }
            OwnerMsg::YRefuse {
                session,
                seq,
                code,
                msg,
            } => {
                if let Some(local) = self.take_remote(&node, session, seq, ctx) {
                    let m = YRefuse {
                        session: local,
                        code,
                        msg,
                    };
                    <Self as Handler<YRefuse>>::handle(self, m, ctx);
                }
            }
            OwnerMsg::YAwareness {
                session,
                seq,
                update,
            } => {
                let Some(local) = self.take_remote(&node, session, seq, ctx) else {
                    return;
                };
                let m = YAwareness {
                    session: local,
                    update: Bytes::from(update),
                };
                if let Err(e) = <Self as Handler<YAwareness>>::handle(self, m, ctx) {
                    // What the session's node would have told the client at once.
                    if let Some(framing) = self.subs.get(&local).map(|s| s.framing.clone()) {
                        let frames =
                            framing.refusal(&refusal_json(e.code(), &e.to_string()), false);
                        self.send(local, frames);
                        self.schedule_flush(ctx);
                    }
                }
            }
            OwnerMsg::YQueryAwareness { session, seq } => {
                if let Some(local) = self.take_remote(&node, session, seq, ctx) {
                    let m = YQueryAwareness { session: local };
                    <Self as Handler<YQueryAwareness>>::handle(self, m, ctx);
                }
            }
            // A text session's join (its other messages are of no session here).
            OwnerMsg::Join { .. } => {
                let e = ActorError::WrongKind {
                    doc: self.name.to_string(),
                    kind: coedit_protocol::DocKind::Yjs,
                };
                cluster.answer(reply, wire::encode(&refused(e)));
            }
            OwnerMsg::Submit { .. } | OwnerMsg::Presence { .. } => {}
        }
    }
}

impl YDocActor {
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
                self.drop_remote(local, ctx);
                None
            }
        }
    }

    /// Closes a remote session (its node closes the client's connection; it reconnects).
    fn drop_remote(&mut self, local: SessionId, ctx: &mut Context<Self>) {
        if let Some(sub) = self.subs.get(&local) {
            sub.out.force(Frame::Close(
                CLOSE_RESTART,
                "messages between servers were lost: reconnect".into(),
            ));
        }
        self.remove_subscriber(local, ctx);
    }
}
