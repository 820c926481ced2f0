//! The document actor's read messages (REST): text at a revision, a page of history, the
//! snapshot points. Each answers from memory when it can, or with a plan to read the store
//! off the actor's thread ([`crate::history`]): a long history never blocks the actor.

use super::*;

/// A document's text at a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DocText {
    /// The revision.
    pub rev: u64,
    /// The text.
    pub text: String,
}

/// The text at revision `rev` (the latest durable one when absent): from memory, or a plan to
/// read it from the store off this actor's thread.
#[derive(Message)]
#[rtype(result = "Result<Answer<DocText>, ActorError>")]
pub struct GetText {
    /// The revision wanted.
    pub rev: Option<u64>,
}

impl Handler<GetText> for DocActor {
    type Result = Result<Answer<DocText>, ActorError>;

    /// Serves from memory when possible, else answers with a store read.
    fn handle(&mut self, m: GetText, _: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        let rev = m.rev.unwrap_or(self.durable_rev);
        if rev > self.durable_rev {
            return Err(coedit_protocol::DocError::FutureRevision {
                base: rev,
                current: self.durable_rev,
            }
            .into());
        }
        Ok(match self.doc.text_at(rev) {
            Ok(text) => Answer::Ready(DocText { rev, text }),
            Err(_) => Answer::FromStore(self.store_read()),
        })
    }
}

/// One page of the durable ops producing revisions `from + 1 ..= to` (to the head when `to` is
/// absent), at most `limit`: from memory, or a plan to read them from the store off this
/// actor's thread (see [`crate::history`]).
#[derive(Message)]
#[rtype(result = "Result<Answer<OpsPage>, ActorError>")]
pub struct GetOps {
    /// Revision to start after.
    pub from: u64,
    /// Last revision to include.
    pub to: Option<u64>,
    /// Most ops in the page.
    pub limit: usize,
}

impl Handler<GetOps> for DocActor {
    type Result = Result<Answer<OpsPage>, ActorError>;

    /// Pages from memory when `from` is in the in-memory window, else answers with a store
    /// read; `FutureRevision` past the durable revision.
    fn handle(&mut self, m: GetOps, _: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        let to = m.to.unwrap_or(self.durable_rev);
        if to > self.durable_rev || m.from > self.durable_rev {
            return Err(coedit_protocol::DocError::FutureRevision {
                base: to.max(m.from),
                current: self.durable_rev,
            }
            .into());
        }
        if m.from >= to {
            return Ok(Answer::Ready(OpsPage {
                ops: Vec::new(),
                next: None,
            }));
        }
        let limit = m.limit.clamp(1, MAX_HISTORY_PAGE);
        let Ok(ops) = self.doc.ops_since(m.from) else {
            return Ok(Answer::FromStore(self.store_read()));
        };
        let mut bytes = 0;
        let page: Vec<RemoteOp> = ops
            .take_while(|(rev, _)| *rev <= to)
            .take(limit)
            .take_while(|(_, e)| {
                let go = bytes < HISTORY_PAGE_BYTES;
                bytes += e.op.to_json().len();
                go
            })
            .map(|(rev, e)| remote_op(rev, &e))
            .collect();
        let last = page.last().map_or(m.from, |r| r.rev);
        Ok(Answer::Ready(OpsPage {
            ops: page,
            next: (last < to).then_some(last),
        }))
    }
}

/// Snapshot points and the retained op range: a plan to read them from the store.
#[derive(Message)]
#[rtype(result = "Result<StoreRead, ActorError>")]
pub struct GetVersions;

impl Handler<GetVersions> for DocActor {
    type Result = Result<StoreRead, ActorError>;

    /// Answers with a store read bounded by the durable revision.
    fn handle(&mut self, _: GetVersions, _: &mut Context<Self>) -> Self::Result {
        self.check_open()?;
        Ok(self.store_read())
    }
}

impl DocActor {
    /// A plan to read this document's history from the store, up to the durable revision.
    fn store_read(&self) -> StoreRead {
        StoreRead {
            store: self.store.clone(),
            id: self.id.clone(),
            durable_rev: self.durable_rev,
        }
    }
}
