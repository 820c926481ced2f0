//! The `RemoteDoc` stand-in for Yjs sessions: the messages a `YDocActor` takes from a
//! `YSession` (`YJoin`, `YSyncStep1`, `YUpdate`, `YRefuse`, `YAwareness`, `YQueryAwareness`,
//! `YLeave`), sent to the owner numbered per session, in the order the session sent them.
//!
//! Invariants:
//! - An update is a request: its answer (accepted, or the refusal the owner also told the
//!   client in its frames) reaches the session as a local `YDocActor`'s would, so a viewer's
//!   refused update is audited on the session's node and a transient refusal (disk full,
//!   the owner unloading, no answer) makes the session resync (nothing is left behind).
//! - A second `YJoin` of a subscribed session is a resync (sync step 1 and the awareness
//!   states again), never a second subscription.

use actix::prelude::*;
use coedit_protocol::yjs::Framing;
use coedit_protocol::ErrorCode;
use yrs::updates::encoder::Encode;

use super::RemoteDoc;
use crate::cluster::wire::{self, OwnerMsg, Reply, ToOwner};
use crate::errors::ActorError;
use crate::security::auth::{AuthError, Role};
use crate::ydoc::{YAwareness, YJoin, YLeave, YQueryAwareness, YRefuse, YSyncStep1, YUpdate};

impl RemoteDoc {
    /// Sends the next numbered message of `session`, made by `msg(route, seq)`; `false` if the
    /// session is not subscribed here.
    fn send_numbered(
        &mut self,
        session: crate::SessionId,
        msg: impl FnOnce(u64, u64) -> OwnerMsg,
    ) -> bool {
        match self.next_seq(session) {
            Some((route, seq)) => {
                self.send(msg(route, seq));
                true
            }
            None => false,
        }
    }

    /// The error a session is told for an update the owner refused: a viewer's refusal is
    /// the same `AuthError` a local document gives (the session audits it).
    fn update_refusal(&self, code: ErrorCode, msg: String) -> ActorError {
        if code == ErrorCode::ReadOnly {
            return AuthError::ReadOnly {
                doc: self.name.to_string(),
                role: Role::Viewer,
            }
            .into();
        }
        ActorError::Remote { code, msg }
    }
}

impl Handler<YJoin> for RemoteDoc {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    /// Subscribes the session at the owner (answered once the owner took it), or asks the
    /// owner to sync a subscribed session again.
    fn handle(&mut self, m: YJoin, _: &mut Context<Self>) -> Self::Result {
        let hocuspocus = match &m.framing {
            Framing::Hocuspocus(address) => Some(address.to_string()),
            Framing::YWebsocket => None,
        };
        let readonly = m.readonly;
        if self.subs.contains_key(&m.session) {
            let h = hocuspocus.clone();
            self.send_numbered(m.session, |session, seq| OwnerMsg::YJoin {
                session,
                seq,
                hocuspocus: h,
                readonly,
            });
            return Box::pin(actix::fut::ready(Ok(())));
        }
        self.subscribe(m.session, m.out, |session| OwnerMsg::YJoin {
            session,
            seq: 1,
            hocuspocus,
            readonly,
        })
    }
}

impl Handler<YSyncStep1> for RemoteDoc {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, m: YSyncStep1, _: &mut Context<Self>) -> Self::Result {
        let sv = m.sv.encode_v1();
        if !self.send_numbered(m.session, |session, seq| OwnerMsg::YSync {
            session,
            seq,
            sv,
        }) {
            return Err(ActorError::NotSubscribed(self.name.to_string()));
        }
        Ok(())
    }
}

impl Handler<YUpdate> for RemoteDoc {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    /// Sends the update to the owner and answers with the owner's answer.
    fn handle(&mut self, m: YUpdate, _: &mut Context<Self>) -> Self::Result {
        let Some((route, seq)) = self.next_seq(m.session) else {
            let e = ActorError::NotSubscribed(self.name.to_string());
            return Box::pin(actix::fut::ready(Err(e)));
        };
        let msg = ToOwner {
            v: wire::WIRE_VERSION,
            node: self.cluster.node.to_string(),
            msg: OwnerMsg::YUpdate {
                session: route,
                seq,
                client: m.client.to_string(),
                update: m.update.to_vec(),
                subject: m.subject.map(|s| s.to_string()),
            },
        };
        let ask = self
            .cluster
            .request(self.subject.clone(), wire::encode(&msg));
        Box::pin(ask.into_actor(self).map(|res, act, _| {
            match res.map(|b| wire::decode::<Reply>(&b)) {
                Ok(Some(Reply::Ok)) => Ok(()),
                Ok(Some(Reply::Err { code, msg })) => Err(act.update_refusal(code, msg)),
                // Not known to be applied: the session resyncs (an update applied twice
                // changes nothing).
                Ok(_) => Err(ActorError::Remote {
                    code: ErrorCode::Unavailable,
                    msg: "the node ordering this document did not take the update".into(),
                }),
                Err(e) => Err(ActorError::Remote {
                    code: ErrorCode::Unavailable,
                    msg: e.to_string(),
                }),
            }
        }))
    }
}

impl Handler<YRefuse> for RemoteDoc {
    type Result = ();

    fn handle(&mut self, m: YRefuse, _: &mut Context<Self>) {
        let YRefuse { session, code, msg } = m;
        self.send_numbered(session, |session, seq| OwnerMsg::YRefuse {
            session,
            seq,
            code,
            msg,
        });
    }
}

impl Handler<YAwareness> for RemoteDoc {
    type Result = Result<(), ActorError>;

    /// Relayed through the owner (which tells the client itself if it refuses the update).
    fn handle(&mut self, m: YAwareness, _: &mut Context<Self>) -> Self::Result {
        let update = m.update.to_vec();
        if !self.send_numbered(m.session, |session, seq| OwnerMsg::YAwareness {
            session,
            seq,
            update,
        }) {
            return Err(ActorError::NotSubscribed(self.name.to_string()));
        }
        Ok(())
    }
}

impl Handler<YQueryAwareness> for RemoteDoc {
    type Result = ();

    fn handle(&mut self, m: YQueryAwareness, _: &mut Context<Self>) {
        self.send_numbered(m.session, |session, seq| OwnerMsg::YQueryAwareness {
            session,
            seq,
        });
    }
}

impl Handler<YLeave> for RemoteDoc {
    type Result = ();

    fn handle(&mut self, m: YLeave, ctx: &mut Context<Self>) {
        self.leave(m.session, ctx);
    }
}
