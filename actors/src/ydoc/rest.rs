//! REST on a Yjs document: read its content or state ([`YRead`]) and apply an update
//! ([`YPost`]). Both answer once everything accepted before them is durable.

use actix::prelude::*;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::oneshot;

use super::{Waiter, YDocActor, REST_AUTHOR};
use crate::errors::ActorError;

/// What a [`YRead`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YReadWhat {
    /// Every root type as JSON.
    Content,
    /// The whole document as one Yjs update.
    State,
}

/// A Yjs document read over REST.
#[derive(Clone, Debug)]
pub struct YState {
    /// The durable revision read.
    pub rev: u64,
    /// The content (for [`YReadWhat::Content`]).
    pub content: Option<serde_json::Value>,
    /// The state (for [`YReadWhat::State`]).
    pub state: Option<Vec<u8>>,
}

/// Read the document once everything accepted before is durable.
#[derive(Message)]
#[rtype(result = "Result<YState, ActorError>")]
pub struct YRead {
    /// What to read.
    pub what: YReadWhat,
}

impl YDocActor {
    fn read(&self, what: YReadWhat) -> YState {
        YState {
            rev: self.doc.rev(),
            content: (what == YReadWhat::Content).then(|| self.doc.content()),
            state: (what == YReadWhat::State).then(|| self.doc.encode_state()),
        }
    }
}

impl Handler<YRead> for YDocActor {
    type Result = ResponseActFuture<Self, Result<YState, ActorError>>;

    fn handle(&mut self, m: YRead, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.check_open() {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let (tx, rx) = oneshot::channel();
        self.when_durable(Waiter::Rest(tx));
        let name = self.name.to_string();
        Box::pin(rx.into_actor(self).map(move |r, act, _| match r {
            Ok(()) => Ok(act.read(m.what)),
            Err(_) => Err(ActorError::Closing(name)),
        }))
    }
}

/// Apply a Yjs update posted over REST; answers with the revision once it is durable.
#[derive(Message)]
#[rtype(result = "Result<u64, ActorError>")]
pub struct YPost {
    /// The update.
    pub update: Bytes,
    /// The token subject (authentication on).
    pub subject: Option<Arc<str>>,
}

impl Handler<YPost> for YDocActor {
    type Result = ResponseActFuture<Self, Result<u64, ActorError>>;

    fn handle(&mut self, m: YPost, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.check_open() {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let (tx, rx) = oneshot::channel();
        let res = self.accept(
            REST_AUTHOR,
            "rest",
            m.update,
            m.subject,
            Waiter::Rest(tx),
            ctx,
        );
        let name = self.name.to_string();
        self.schedule_flush(ctx);
        match res {
            Err(e) => Box::pin(actix::fut::ready(Err(e))),
            Ok(rev) => Box::pin(rx.into_actor(self).map(move |r, _, _| match r {
                Ok(()) => Ok(rev),
                Err(_) => Err(ActorError::Closing(name)),
            })),
        }
    }
}

/// History of a Yjs document (versions, an old revision): a read to run against the store off
/// the actor, up to the durable revision.
#[derive(Message)]
#[rtype(result = "Result<crate::history::StoreRead, ActorError>")]
pub struct YHistory;

impl Handler<YHistory> for YDocActor {
    type Result = Result<crate::history::StoreRead, ActorError>;

    fn handle(&mut self, _: YHistory, _: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        Ok(crate::history::StoreRead {
            store: self.store.clone(),
            id: self.id.clone(),
            durable_rev: self.durable_rev,
        })
    }
}
