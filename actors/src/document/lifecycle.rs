//! The document actor's lifecycle: the idle check, snapshots, saving and stopping (idle
//! unload, `Shutdown`), and in cluster mode stepping down ([`LeaseHolder`]).
//!
//! Invariants:
//! - A document unloads only when nobody has been subscribed for `idle_timeout`; it snapshots,
//!   waits for the store to flush, tells the registry, and in cluster mode writes its pending
//!   change events and releases its lease only after that.
//! - A step-down acknowledges nothing that is not durable and writes no snapshot.

use super::*;

impl DocActor {
    pub(super) fn schedule_idle_check(&mut self, ctx: &mut Context<Self>) {
        let generation = self.idle_generation;
        ctx.run_later(self.config.idle_timeout, move |a, ctx| {
            if a.subs.is_empty() && a.idle_generation == generation && !a.closing {
                a.unload(ctx);
            }
        });
    }

    /// Writes a snapshot if there are ops since the last one.
    pub(super) fn snapshot(&mut self) {
        let rev = self.doc.rev();
        if rev == self.snapshot_rev {
            return;
        }
        self.snapshot_rev = rev;
        let compact_at = self.config.retain_ops.map(|k| rev.saturating_sub(k));
        self.writer.do_send(PutSnapshot {
            doc: self.id.clone(),
            snapshot: self.doc.snapshot().into(),
            compact_at,
        });
    }

    /// Snapshots and resolves once everything is durable, after sending every op to the
    /// subscribers and running `then`; then stops the actor.
    pub(super) fn save_and_stop(
        &mut self,
        then: impl FnOnce(&mut Self) + 'static,
    ) -> impl ActorFuture<Self, Output = ()> + 'static {
        self.closing = true;
        self.snapshot();
        self.writer
            .send(FlushNow)
            .into_actor(self)
            .then(move |res, act, ctx| {
                // Asked once: `Unfence` below clears it on the store writer's thread.
                let fenced = act.store.is_fenced(&act.id);
                if fenced {
                    // Not durable after all: nothing more is acknowledged; sessions resume
                    // on the node that wrote first.
                    act.undurable.clear();
                    act.ack_waiters.clear();
                    act.writer.do_send(Unfence {
                        doc: act.id.clone(),
                    });
                } else if res.is_ok() {
                    act.made_durable(act.doc.rev(), ctx);
                }
                act.flush();
                then(act);
                // Fenced, its untold revisions are the next owner's (it loaded past them).
                owner::give_up(act.writer.clone(), act.lease.take(), !fenced).into_actor(act)
            })
            .map(|(), _, ctx| ctx.stop())
    }

    /// Saves the document and stops.
    /// The registry hears `DocClosing` first (before this actor refuses anything), so requests
    /// wait for the unload instead of racing it.
    pub(super) fn unload(&mut self, ctx: &mut Context<Self>) {
        debug!(parent: &self.span, rev = self.doc.rev(), "unloading idle document");
        let (id, name, addr) = (self.id.clone(), self.name.clone(), ctx.address());
        self.registry.do_send(DocClosing {
            id: id.clone(),
            addr: DocAddr::Text(addr.clone()),
        });
        let fut = self.save_and_stop(move |act| {
            act.registry.do_send(DocClosed {
                id,
                name,
                addr: DocAddr::Text(addr),
            });
        });
        ctx.wait(fut);
    }
}

/// Save now and stop (server shutdown): subscribers are told to reconnect (close 1012), a
/// snapshot is written and flushed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for DocActor {
    type Result = ResponseActFuture<Self, ()>;

    /// Snapshots and flushes; once durable, sends every op, closes every subscriber with 1012,
    /// answers and stops.
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Box::pin(actix::fut::ready(()));
        }
        Box::pin(self.save_and_stop(|act| {
            for (_, sub) in act.subs.drain() {
                sub.out.force(Frame::Close(
                    CLOSE_RESTART,
                    "server restarting: reconnect and rejoin with your revision".into(),
                ));
            }
        }))
    }
}

impl LeaseHolder for DocActor {
    fn lease_mut(&mut self) -> Option<&mut HeldLease> {
        self.lease.as_mut()
    }

    fn doc_id(&self) -> Arc<str> {
        self.id.clone()
    }

    /// Stops ordering the document: every subscriber (local or remote) is told to reconnect
    /// (1012), nothing not yet durable is acknowledged, no snapshot is written; once the store
    /// writer flushed everything this actor sent, the document may be written again
    /// (`Unfence`) and the registry forgets the actor.
    fn step_down(&mut self, why: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        warn!(parent: &self.span, why, rev = self.doc.rev(), durable = self.durable_rev, "stepping down");
        self.closing = true;
        for (_, sub) in self.subs.drain() {
            sub.out.force(Frame::Close(
                CLOSE_RESTART,
                "this document moved to another server: reconnect and resume".into(),
            ));
        }
        self.undurable.clear();
        self.pending_ops.clear();
        self.ack_waiters.clear();
        let handover = owner::Handover {
            id: self.id.clone(),
            name: self.name.clone(),
            addr: DocAddr::Text(ctx.address()),
            writer: self.writer.clone(),
            registry: self.registry.clone(),
        };
        owner::hand_over(handover, self.lease.take(), ctx);
    }
}
