//! The store actor's audit messages: events appended to the SM3 chain with the next batch
//! (`AppendAudit`), refusals aggregated per window (`AuditRefusal`), and signed checkpoints
//! (`Checkpoint`). Each is ordered with every other write and durable with the next flush.

use super::*;

/// Record an audit event (no-op when audit is off). Durable with the next flush.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AppendAudit(pub AuditEvent);

impl Handler<AppendAudit> for StoreActor {
    type Result = ();

    /// Queues the event behind every write received before it. Before the server's stop
    /// record, the refusals counted so far are summarized.
    fn handle(&mut self, m: AppendAudit, ctx: &mut Context<Self>) {
        self.session_event(&m.0, ctx);
        if m.0 == AuditEvent::ServerStop {
            // Every document is saved: its pending change events go with the last flush.
            self.emit_due(true, ctx);
        }
        if !self.audit {
            return;
        }
        if m.0 == AuditEvent::ServerStop {
            let now = crate::security::audit::now_ms();
            if let Some(summary) = self.refusals.summary(now) {
                self.refusals = RefusalFilter::new(now);
                self.enqueue(Write::Audit(summary), ctx);
            }
        }
        self.enqueue(Write::Audit(m.0), ctx);
    }
}

/// Record a refused request from `source`: on its own, or counted in the summary of its window
/// (see [`crate::security::refusals`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AuditRefusal {
    /// The peer's address (or `unknown`).
    pub source: String,
    /// The refusal.
    pub event: AuditEvent,
}

/// The hash of what makes a refusal "the same" as another: code, subject, action, document.
fn refusal_key(e: &AuditEvent) -> u64 {
    match e {
        AuditEvent::Refused {
            subject,
            action,
            doc,
            code,
            ..
        } => ahash::RandomState::with_seeds(1, 3, 5, 7).hash_one((code, subject, action, doc)),
        _ => 0,
    }
}

impl Handler<AuditRefusal> for StoreActor {
    type Result = ();

    /// Asks the refusal filter; queues the record or only counts it.
    fn handle(&mut self, m: AuditRefusal, ctx: &mut Context<Self>) {
        if !self.refusals_wanted() {
            return;
        }
        let key = refusal_key(&m.event);
        let (verdict, summary) =
            self.refusals
                .admit(&m.source, key, crate::security::audit::now_ms());
        if let (true, Some(summary)) = (self.audit, summary) {
            self.enqueue(Write::Audit(summary), ctx);
        }
        match verdict {
            Verdict::Record => {
                self.refusal_event(&m.event, ctx);
                if self.audit {
                    self.enqueue(Write::Audit(m.event), ctx);
                }
            }
            Verdict::Count => {
                metrics().audit_refusals_counted.inc();
            }
        }
    }
}

/// Append a signed checkpoint of the audit chain (if a signing key is configured) and flush.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint;

impl Handler<Checkpoint> for StoreActor {
    type Result = ResponseFuture<()>;

    /// Queues the checkpoint and answers once it is durable.
    fn handle(&mut self, _: Checkpoint, ctx: &mut Context<Self>) -> Self::Result {
        if self.audit {
            self.enqueue(Write::Checkpoint, ctx);
        }
        let rx = self.flushed_future(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
