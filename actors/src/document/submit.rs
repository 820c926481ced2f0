//! The document actor's `Submit`: an op from a session or the REST API, applied to the
//! document, queued for the store, shown to subscribers once durable (strict) or at once
//! (relaxed); a refusal is answered with its code and changes nothing.

use super::*;

/// The result of an accepted submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The revision the op produced.
    pub rev: u64,
    /// The op as applied, when retained.
    pub op: Option<Op>,
    /// The op had already been applied; nothing changed.
    pub duplicate: bool,
}

/// Submit an op: from a subscribed session (which then hears the outcome in its stream) or
/// from the REST API (`session: None`, which gets the result once it is durable).
#[derive(Message)]
#[rtype(result = "Result<Applied, ActorError>")]
pub struct Submit {
    /// The submitting session, if any.
    pub session: Option<SessionId>,
    /// Author's client id.
    pub client: ClientId,
    /// Author's sequence number.
    pub seq: u64,
    /// Base revision.
    pub base_rev: u64,
    /// The op.
    pub op: Op,
    /// The author's opaque timestamp, echoed to subscribers.
    pub t: Option<u64>,
    /// Characters of the base document the op reaches as sent (see `wire::op_reach`).
    pub reach: usize,
    /// The author's token subject (authentication on), for the audit record.
    pub subject: Option<Arc<str>>,
}

impl Handler<Submit> for DocActor {
    type Result = ResponseFuture<Result<Applied, ActorError>>;

    /// Applies the op, hands it to the store, moves stored selections through it and queues it
    /// for fan-out once durable. A session is told of refusals (`error`) and duplicates (`ack`)
    /// directly.
    fn handle(&mut self, m: Submit, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.submit(m, ctx);
        match result {
            Ok((applied, Some(rx))) => Box::pin(async move {
                rx.await
                    .map_err(|_| ActorError::Closing(String::from("document")))?;
                Ok(applied)
            }),
            Ok((applied, None)) => Box::pin(async move { Ok(applied) }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

impl DocActor {
    /// The body of `Submit`: the result, and for a REST caller in strict mode the signal that
    /// the op is durable.
    fn submit(
        &mut self,
        m: Submit,
        ctx: &mut Context<Self>,
    ) -> Result<(Applied, Option<oneshot::Receiver<()>>), ActorError> {
        self.check_open()?;
        if let Some(s) = m.session {
            if !self.subs.contains_key(&s) {
                return Err(ActorError::NotSubscribed(self.name.to_string()));
            }
        }
        let started = Instant::now();
        let submitted = if self.disk.writable() {
            self.doc
                .check_reach(m.base_rev, m.reach)
                .and_then(|()| self.doc.submit(&m.client, m.seq, m.base_rev, m.op))
                .map_err(ActorError::from)
        } else {
            Err(ActorError::StorageFull)
        };
        metrics()
            .op_apply_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics().op(match &submitted {
            Ok(s) if s.duplicate => "duplicate",
            Ok(_) => "applied",
            Err(_) => "refused",
        });
        let applied = match submitted {
            Ok(s) => Applied {
                rev: s.rev,
                op: s.op.cloned(),
                duplicate: s.duplicate,
            },
            Err(e) => {
                debug!(parent: &self.span, error = %e, "op refused");
                if let Some(s) = m.session {
                    let err = ServerMsg::Error {
                        code: e.code(),
                        msg: e.to_string(),
                        doc: Some(self.name.to_string()),
                        seq: Some(m.seq),
                    };
                    self.reply(s, &err);
                    self.flush_cut_presence(ctx);
                }
                return Err(e);
            }
        };
        if !applied.duplicate {
            let op = applied.op.clone().unwrap_or_default();
            for sub in self.subs.values_mut() {
                for s in &mut sub.sel {
                    *s = transform_selection(*s, &op);
                }
            }
            self.writer.do_send(Append {
                doc: self.id.clone(),
                record: LogRecord {
                    rev: applied.rev,
                    client: m.client.to_string(),
                    seq: m.seq,
                    op: op.clone(),
                }
                .into(),
                subject: m.subject,
                notify: ctx.address().recipient(),
            });
            let remote = RemoteOp {
                rev: applied.rev,
                client: m.client.to_string(),
                seq: m.seq,
                op,
                t: m.t,
            };
            if self.strict() {
                self.undurable.push_back(remote);
            } else {
                self.durable_rev = applied.rev;
                self.pending_ops.push(remote);
                self.schedule_flush(ctx);
            }
            if applied.rev - self.snapshot_rev >= self.config.snapshot_every {
                self.snapshot();
            }
        }
        let mut rest = None;
        let waiter = match m.session {
            Some(session) if applied.duplicate => Some(AckWaiter::Session {
                session,
                seq: m.seq,
            }),
            Some(_) => None,
            None => {
                let (tx, rx) = oneshot::channel();
                rest = Some(rx);
                Some(AckWaiter::Rest(tx))
            }
        };
        if let Some(w) = waiter {
            // Keep waiters in revision order: a duplicate's revision may be older than queued.
            let pos = self
                .ack_waiters
                .iter()
                .position(|(r, _)| *r > applied.rev)
                .unwrap_or(self.ack_waiters.len());
            self.ack_waiters.insert(pos, (applied.rev, w));
            self.made_durable(self.durable_rev, ctx);
        }
        Ok((applied, rest))
    }
}
