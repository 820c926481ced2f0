//! How sessions and REST calls reach a document through the registry: [`call_doc`]
//! (WebSocket joins: this node's actor, or in cluster mode the `RemoteDoc` standing in for the
//! owner), [`call_kind`] (REST: this node's actor only; another node's document is answered
//! `ActorError::Elsewhere`, which the HTTP layer forwards), and the one open-and-ask loop
//! both run.
//!
//! Invariants:
//! - A request that reached an actor just as it began to close asks again (at most
//!   [`MAX_OPEN_ROUNDS`] rounds); by then the registry knows, so the next round waits for the
//!   unload or finds the new owner. No request sleeps and retries.

use actix::prelude::*;

use coedit_protocol::DocKind;

use super::{owned_elsewhere, DocAddr, KindActor, OpenDoc, Registry, MAX_OPEN_ROUNDS};
use crate::cluster::remote_doc::RemoteDoc;
use crate::document::DocActor;
use crate::errors::ActorError;

/// A document's actor as a session holds it: this node's actor of kind `A` (a `DocActor`
/// for text, a `YDocActor` for Yjs), or (cluster mode) the `RemoteDoc` standing in for the
/// owner on another node. Both take the same messages.
pub enum DocLink<A: Actor = DocActor> {
    /// The document actor on this node.
    Local(Addr<A>),
    /// The stand-in for the owner on another node.
    Remote(Addr<RemoteDoc>),
}

impl<A: Actor> Clone for DocLink<A> {
    fn clone(&self) -> Self {
        match self {
            DocLink::Local(a) => DocLink::Local(a.clone()),
            DocLink::Remote(a) => DocLink::Remote(a.clone()),
        }
    }
}

impl<A: Actor> DocLink<A> {
    /// Sends `m` without waiting for its answer.
    pub fn do_send<M>(&self, m: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
        RemoteDoc: Handler<M>,
    {
        match self {
            DocLink::Local(a) => a.do_send(m),
            DocLink::Remote(a) => a.do_send(m),
        }
    }

    /// Sends `m` and returns its answer.
    pub fn send<M>(
        &self,
        m: M,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<M::Result, MailboxError>>>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
        RemoteDoc: Handler<M>,
    {
        match self {
            DocLink::Local(a) => Box::pin(a.send(m)),
            DocLink::Remote(a) => Box::pin(a.send(m)),
        }
    }
}

/// An actor's answer to a request, as [`ask_open`] awaits it.
type Asked<R> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Result<R, ActorError>, actix::MailboxError>>>,
>;

/// The loop both [`call_doc`] and [`call_kind`] run: asks the registry for document `open.id`
/// as `kind`, hands the address to `ask` (which picks the handle to return and sends the
/// request, or refuses the address), and asks again when the actor answered `Closing` (it was
/// unloading; the registry then knows, so the next round waits for the unload to finish and
/// the document to load anew, or, cluster mode, finds its new owner).
async fn ask_open<T, R>(
    registry: &Addr<Registry>,
    open: OpenDoc,
    kind: DocKind,
    mut ask: impl FnMut(DocAddr) -> Result<(T, Asked<R>), ActorError>,
) -> Result<(T, R), ActorError> {
    let mut last = ActorError::Closing(open.name.clone());
    for _ in 0..MAX_OPEN_ROUNDS {
        let request = OpenDoc {
            kind,
            id: open.id.clone(),
            name: open.name.clone(),
            create: open.create,
        };
        let (handle, answer) = ask(registry.send(request).await??)?;
        match answer.await {
            Ok(Ok(r)) => return Ok((handle, r)),
            Ok(Err(e @ ActorError::Closing(_))) => last = e,
            Err(e) => last = ActorError::Mailbox(e),
            Ok(Err(e)) => return Err(e),
        }
    }
    Err(last)
}

/// Sends `make()` to document `open.id`'s actor of kind `A`, opening it (or waiting for it)
/// first: the one way WebSocket joins reach a document (REST calls use [`call_kind`]); in
/// cluster mode the actor may be the `RemoteDoc` standing in for the owner on another node.
pub async fn call_doc<A, M, R>(
    registry: &Addr<Registry>,
    open: OpenDoc,
    make: impl Fn() -> M,
) -> Result<(DocLink<A>, R), ActorError>
where
    A: KindActor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message<Result = Result<R, ActorError>> + Send + 'static,
    R: Send + 'static,
    RemoteDoc: Handler<M>,
{
    let name = open.name.clone();
    ask_open(registry, open, A::KIND, |addr| {
        if let DocAddr::Remote(a, ..) = addr {
            let answer: Asked<R> = Box::pin(a.send(make()));
            return Ok((DocLink::Remote(a), answer));
        }
        let kind = addr.kind();
        let Some(a) = A::addr_of(addr) else {
            return Err(ActorError::WrongKind {
                doc: name.clone(),
                kind,
            });
        };
        let answer: Asked<R> = Box::pin(a.send(make()));
        Ok((DocLink::Local(a), answer))
    })
    .await
}

/// [`call_doc`] for a document actor of kind `A` on this node (the request's `kind` is set to
/// `A::KIND`); a document another node orders is refused, naming that node.
pub async fn call_kind<A, M, R>(
    registry: &Addr<Registry>,
    open: OpenDoc,
    make: impl Fn() -> M,
) -> Result<(Addr<A>, R), ActorError>
where
    A: KindActor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message<Result = Result<R, ActorError>> + Send + 'static,
    R: Send + 'static,
{
    let name = open.name.clone();
    ask_open(registry, open, A::KIND, |addr| {
        if let DocAddr::Remote(_, owner) = &addr {
            return Err(owned_elsewhere(&name, owner));
        }
        let kind = addr.kind();
        let Some(a) = A::addr_of(addr) else {
            return Err(ActorError::WrongKind {
                doc: name.clone(),
                kind,
            });
        };
        let answer: Asked<R> = Box::pin(a.send(make()));
        Ok((a, answer))
    })
    .await
}
