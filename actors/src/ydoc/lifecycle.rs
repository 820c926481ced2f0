//! The Yjs document actor's lifecycle: a poisoned document's reload, the idle check,
//! snapshots, saving and stopping (idle unload, `Shutdown`), and in cluster mode holding a
//! lease and stepping down ([`LeaseHolder`]). The same rules as a text document's
//! (`document/lifecycle.rs`): an unload snapshots, waits for the flush, then writes its pending
//! change events and releases its lease; a step-down acknowledges nothing not durable.

use super::*;

impl YDocActor {
    /// Yrs failed half-way: close the subscribers and unload without a snapshot.
    pub(super) fn poisoned(&mut self, ctx: &mut Context<Self>) {
        warn!(parent: &self.span, "update integration failed; reloading the document");
        for (_, sub) in self.subs.drain() {
            sub.out.force(Frame::Close(
                CLOSE_INTERNAL,
                "document reloading: reconnect".into(),
            ));
        }
        self.snapshot_rev = self.doc.rev();
        self.unload(ctx);
    }

    pub(super) fn schedule_idle_check(&mut self, ctx: &mut Context<Self>) {
        let generation = self.idle_generation;
        ctx.run_later(self.config.idle_timeout, move |a, ctx| {
            if a.subs.is_empty() && a.idle_generation == generation && !a.closing {
                a.unload(ctx);
            }
        });
    }

    /// Writes a snapshot if there are updates since the last one (not of a poisoned
    /// document).
    pub(super) fn snapshot(&mut self) {
        let rev = self.doc.rev();
        if rev == self.snapshot_rev || self.doc.is_poisoned() {
            return;
        }
        self.snapshot_rev = rev;
        let compact_at = self.config.retain_ops.map(|k| rev.saturating_sub(k));
        self.writer.do_send(PutSnapshot {
            doc: self.id.clone(),
            snapshot: SnapshotEntry::Yjs(YStateRecord {
                rev,
                state: self.doc.encode_state(),
            }),
            compact_at,
        });
    }

    /// Snapshots, waits for the store to flush, sends what became durable, runs `then`, stops.
    pub(super) fn save_and_stop(
        &mut self,
        then: impl FnOnce(&mut Self) + 'static,
    ) -> impl ActorFuture<Self, Output = ()> + 'static {
        self.closing = true;
        self.snapshot();
        self.writer
            .send(FlushNow)
            .into_actor(self)
            .then(move |res, act, _ctx| {
                // Asked once: `Unfence` below clears it on the store writer's thread.
                let fenced = act.store.is_fenced(&act.id);
                if fenced {
                    // Not durable after all: nothing more is answered.
                    act.undurable.clear();
                    act.waiters.clear();
                    act.writer.do_send(Unfence {
                        doc: act.id.clone(),
                    });
                } else if res.is_ok() {
                    act.made_durable(act.doc.rev());
                }
                act.flush();
                then(act);
                // Fenced, its untold revisions are the next owner's (it loaded past them).
                owner::give_up(act.writer.clone(), act.lease.take(), !fenced).into_actor(act)
            })
            .map(|(), _, ctx| ctx.stop())
    }

    /// Saves the document and stops; the registry hears `DocClosing` first.
    pub(super) fn unload(&mut self, ctx: &mut Context<Self>) {
        debug!(parent: &self.span, rev = self.doc.rev(), "unloading Yjs document");
        let (id, name, addr) = (self.id.clone(), self.name.clone(), ctx.address());
        self.registry.do_send(DocClosing {
            id: id.clone(),
            addr: DocAddr::Yjs(addr.clone()),
        });
        let fut = self.save_and_stop(move |act| {
            act.registry.do_send(DocClosed {
                id,
                name,
                addr: DocAddr::Yjs(addr),
            });
        });
        ctx.wait(fut);
    }
}

impl Handler<Shutdown> for YDocActor {
    type Result = ResponseActFuture<Self, ()>;

    /// Snapshots and flushes; once durable, sends every update, closes every subscriber with
    /// 1012, answers and stops.
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Box::pin(actix::fut::ready(()));
        }
        Box::pin(self.save_and_stop(|act| {
            for (_, sub) in act.subs.drain() {
                sub.out.force(Frame::Close(
                    CLOSE_RESTART,
                    "server restarting: reconnect".into(),
                ));
            }
        }))
    }
}

impl YDocActor {
    /// Cluster mode: the actor orders the document under `lease` (taken before the load).
    pub fn hold_lease(&mut self, lease: HeldLease) {
        self.lease = Some(lease);
    }
}

impl LeaseHolder for YDocActor {
    fn lease_mut(&mut self) -> Option<&mut HeldLease> {
        self.lease.as_mut()
    }

    fn doc_id(&self) -> Arc<str> {
        self.id.clone()
    }

    /// Stops ordering the document: subscribers are told to reconnect, nothing not yet
    /// durable is answered, no snapshot; once the writer flushed what this actor sent, the
    /// document may be written again and the registry forgets the actor.
    fn step_down(&mut self, why: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        warn!(parent: &self.span, why, rev = self.doc.rev(), "stepping down");
        self.closing = true;
        for (_, sub) in self.subs.drain() {
            sub.out.force(Frame::Close(
                crate::errors::CLOSE_RESTART,
                "this document moved to another server: reconnect".into(),
            ));
        }
        self.undurable.clear();
        self.waiters.clear();
        self.round.clear();
        let handover = owner::Handover {
            id: self.id.clone(),
            name: self.name.clone(),
            addr: DocAddr::Yjs(ctx.address()),
            writer: self.writer.clone(),
            registry: self.registry.clone(),
        };
        owner::hand_over(handover, self.lease.take(), ctx);
    }
}
