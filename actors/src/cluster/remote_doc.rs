//! The `RemoteDoc` actor: a node's stand-in for a document another node owns (one per such
//! document with local sessions, on the registry's thread). It takes the same messages as a
//! `DocActor` from text sessions (`Join`, `Leave`, `Submit`, `SetPresence`, `Shutdown`) and
//! as a `YDocActor` from Yjs sessions (`remote_doc/yjs.rs`), and sends them to the owner,
//! whose actor answers a session of the wrong kind `WrongKind`; the owner's frames reach the
//! sessions through the node's inbox (`Cluster::add_route`).
//!
//! Invariants:
//! - A session's messages leave in the order the session sent them, numbered from 1.
//! - Every [`PING_INTERVAL`] the owner is told which sessions are still here; sessions it
//!   answers it does not have (it dropped them) are closed with 1012 and resume. An owner that
//!   does not answer, or answers that it no longer owns the document, makes this actor close
//!   every one of its sessions with 1012 (they reconnect, to any node, and resume by revision:
//!   unacknowledged ops are resent and recognized by client id and seq) and stop; the next
//!   join finds the new owner, or takes the lease once the old one expired.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{debug, info};

use coedit_protocol::ErrorCode;

use super::lease::LeaseValue;
use super::wire::{self, OwnerMsg, Reply, ToOwner};
use super::{Cluster, ClusterError, PING_INTERVAL};
use crate::document::{Applied, Join, Leave, SetPresence, Shutdown, Submit};
use crate::errors::{ActorError, CLOSE_RESTART};
use crate::frame::{Format, Frame};
use crate::outbox::Outbox;
use crate::registry::{DocAddr, DocClosed, DocClosing, Registry};
use crate::SessionId;

mod yjs;

/// A local session subscribed through the owner.
struct Sub {
    /// Its route: its id between the nodes.
    route: u64,
    /// Number of its last message to the owner.
    seq: u64,
    out: Outbox,
}

/// The stand-in. See the module documentation.
pub struct RemoteDoc {
    id: Arc<str>,
    name: Arc<str>,
    /// The owner's lease as this node read it.
    owner: Arc<LeaseValue>,
    subject: String,
    cluster: Arc<Cluster>,
    registry: Addr<Registry>,
    subs: HashMap<SessionId, Sub>,
    /// Closing: everything is refused.
    closing: bool,
    /// A ping is in flight.
    pinging: bool,
}

impl RemoteDoc {
    /// A stand-in for document `id`, owned by the node holding lease `owner`.
    pub fn new(
        id: Arc<str>,
        name: Arc<str>,
        owner: Arc<LeaseValue>,
        cluster: Arc<Cluster>,
        registry: Addr<Registry>,
    ) -> Self {
        RemoteDoc {
            subject: cluster.doc_subject(&id),
            id,
            name,
            owner,
            cluster,
            registry,
            subs: HashMap::new(),
            closing: false,
            pinging: false,
        }
    }

    fn send(&mut self, msg: OwnerMsg) {
        let m = ToOwner {
            v: wire::WIRE_VERSION,
            node: self.cluster.node.to_string(),
            msg,
        };
        self.cluster.publish(self.subject.clone(), wire::encode(&m));
    }

    /// The route and next message number of `session`.
    fn next_seq(&mut self, session: SessionId) -> Option<(u64, u64)> {
        self.subs.get_mut(&session).map(|s| {
            s.seq += 1;
            (s.route, s.seq)
        })
    }

    /// The owner is gone or moved: every session is closed (they resume elsewhere), the
    /// registry forgets this stand-in.
    fn give_up(&mut self, why: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        info!(doc = %self.id, owner = %self.owner.node, why, "document owner lost: closing its sessions here");
        for (_, sub) in self.subs.drain() {
            self.cluster.remove_route(sub.route);
            sub.out.force(Frame::Close(
                CLOSE_RESTART,
                "the server ordering this document moved: reconnect and resume".into(),
            ));
        }
        self.stop(ctx);
    }

    /// The owner no longer has these sessions (it dropped them): they are closed with 1012
    /// and resume, instead of waiting for frames that will not come.
    fn drop_routes(&mut self, routes: &[u64], ctx: &mut Context<Self>) {
        let gone: Vec<SessionId> = self
            .subs
            .iter()
            .filter(|(_, s)| routes.contains(&s.route))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(sub) = self.subs.remove(&id) {
                info!(doc = %self.id, route = sub.route, "the owner dropped a session: closing it");
                self.cluster.remove_route(sub.route);
                sub.out.force(Frame::Close(
                    CLOSE_RESTART,
                    "the server ordering this document dropped this session: reconnect and resume"
                        .into(),
                ));
            }
        }
        self.unload_if_idle(ctx);
    }

    /// Nobody here uses the document any more.
    fn unload_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.subs.is_empty() && !self.closing {
            self.stop(ctx);
        }
    }

    /// Stops; the registry forgets this stand-in (the next request looks for the owner again).
    fn stop(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        let addr = DocAddr::Remote(ctx.address(), self.owner.clone());
        self.registry.do_send(DocClosing {
            id: self.id.clone(),
            addr: addr.clone(),
        });
        self.registry.do_send(DocClosed {
            id: self.id.clone(),
            name: self.name.clone(),
            addr,
        });
        ctx.stop();
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        if self.pinging || self.closing {
            return;
        }
        self.pinging = true;
        let m = ToOwner {
            v: wire::WIRE_VERSION,
            node: self.cluster.node.to_string(),
            msg: OwnerMsg::Ping {
                sessions: self.subs.values().map(|s| s.route).collect(),
            },
        };
        let ask = self.cluster.request(self.subject.clone(), wire::encode(&m));
        ctx.spawn(ask.into_actor(self).map(|res, act, ctx| {
            act.pinging = false;
            match res.map(|b| wire::decode::<Reply>(&b)) {
                Ok(Some(Reply::Ok)) => {}
                Ok(Some(Reply::Unknown { sessions })) => act.drop_routes(&sessions, ctx),
                Ok(_) => act.give_up("the owner no longer orders it", ctx),
                Err(e) => act.give_up(&e.to_string(), ctx),
            }
        }));
    }
}

impl Actor for RemoteDoc {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(doc = %self.id, owner = %self.owner.node, "routing to the document's owner");
        ctx.run_interval(PING_INTERVAL, |act, ctx| {
            act.unload_if_idle(ctx);
            act.ping(ctx);
        });
    }
}

impl RemoteDoc {
    /// Subscribes local session `session` at the owner with the message `join(route)` makes
    /// (numbered 1); its frames come back through the node's inbox to `out`.
    fn subscribe(
        &mut self,
        session: SessionId,
        out: Outbox,
        join: impl FnOnce(u64) -> OwnerMsg,
    ) -> ResponseActFuture<Self, Result<(), ActorError>> {
        if self.closing {
            let e = ActorError::Closing(self.name.to_string());
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let route = self.cluster.add_route(out.clone());
        self.subs.insert(session, Sub { route, seq: 1, out });
        let msg = ToOwner {
            v: wire::WIRE_VERSION,
            node: self.cluster.node.to_string(),
            msg: join(route),
        };
        let ask = self
            .cluster
            .request(self.subject.clone(), wire::encode(&msg));
        Box::pin(ask.into_actor(self).map(move |res, act, ctx| {
            let answer = match res.map(|b| wire::decode::<Reply>(&b)) {
                Ok(Some(Reply::Ok)) => return Ok(()),
                Ok(Some(Reply::Err { code, msg })) => ActorError::Remote { code, msg },
                Ok(None | Some(Reply::Unknown { .. })) => ActorError::Remote {
                    code: ErrorCode::Internal,
                    msg: "undecodable answer from the owner".into(),
                },
                Ok(Some(Reply::NotOwner)) | Err(ClusterError::NoOwner) => {
                    // Asked again by the caller: by then the registry knows this stand-in is
                    // closing and finds the new owner.
                    act.subs.remove(&session);
                    act.cluster.remove_route(route);
                    act.give_up("the owner did not take the join", ctx);
                    return Err(ActorError::Closing(act.name.to_string()));
                }
                Err(e) => ActorError::Remote {
                    code: ErrorCode::Unavailable,
                    msg: e.to_string(),
                },
            };
            act.subs.remove(&session);
            act.cluster.remove_route(route);
            act.unload_if_idle(ctx);
            Err(answer)
        }))
    }
}

impl Handler<Join> for RemoteDoc {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    /// Subscribes the session at the owner; its frames come back through the node's inbox.
    fn handle(&mut self, m: Join, _: &mut Context<Self>) -> Self::Result {
        let Join {
            session,
            client,
            rev,
            format,
            out,
            access,
            user,
        } = m;
        self.subscribe(session, out, |route| OwnerMsg::Join {
            session: route,
            seq: 1,
            client: client.to_string(),
            rev,
            json: format == Format::Json,
            access,
            user: user.as_deref().cloned(),
        })
    }
}

impl RemoteDoc {
    /// A session leaves: the owner is told, its route closed.
    fn leave(&mut self, session: SessionId, ctx: &mut Context<Self>) {
        if let Some((route, seq)) = self.next_seq(session) {
            self.send(OwnerMsg::Leave {
                session: route,
                seq,
            });
            self.subs.remove(&session);
            self.cluster.remove_route(route);
        }
        self.unload_if_idle(ctx);
    }
}

impl Handler<Leave> for RemoteDoc {
    type Result = ();

    fn handle(&mut self, m: Leave, ctx: &mut Context<Self>) {
        self.leave(m.session, ctx);
    }
}

impl Handler<Submit> for RemoteDoc {
    type Result = Result<Applied, ActorError>;

    /// Sends a session's op to the owner; its ack (or error) comes back in the session's
    /// frames. (REST submits reach the owner's node directly, never this actor.)
    fn handle(&mut self, m: Submit, _: &mut Context<Self>) -> Self::Result {
        let Some(session) = m.session else {
            return Err(ActorError::Remote {
                code: ErrorCode::Unavailable,
                msg: "this document is ordered by another node".into(),
            });
        };
        let Some((route, seq)) = self.next_seq(session) else {
            return Err(ActorError::NotSubscribed(self.name.to_string()));
        };
        let op = serde_json::to_string(&m.op).map_err(|e| ActorError::Remote {
            code: ErrorCode::Internal,
            msg: e.to_string(),
        })?;
        self.send(OwnerMsg::Submit {
            session: route,
            seq,
            client: m.client.to_string(),
            op_seq: m.seq,
            base_rev: m.base_rev,
            op,
            t: m.t,
            reach: m.reach,
            subject: m.subject.map(|s| s.to_string()),
        });
        Ok(Applied {
            rev: 0,
            op: None,
            duplicate: false,
        })
    }
}

impl Handler<SetPresence> for RemoteDoc {
    type Result = ();

    fn handle(&mut self, m: SetPresence, _: &mut Context<Self>) {
        if let Some((route, seq)) = self.next_seq(m.session) {
            self.send(OwnerMsg::Presence {
                session: route,
                seq,
                rev: m.rev,
                sel: m.sel,
            });
        }
    }
}

impl Handler<Shutdown> for RemoteDoc {
    type Result = ();

    /// Server shutdown: the sessions leave the owner and are told to reconnect.
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        let sessions: Vec<SessionId> = self.subs.keys().copied().collect();
        for session in sessions {
            if let Some((route, seq)) = self.next_seq(session) {
                self.send(OwnerMsg::Leave {
                    session: route,
                    seq,
                });
            }
        }
        self.closing = true;
        for (_, sub) in self.subs.drain() {
            self.cluster.remove_route(sub.route);
            sub.out.force(Frame::Close(
                CLOSE_RESTART,
                "server restarting: reconnect and rejoin with your revision".into(),
            ));
        }
        ctx.stop();
    }
}
