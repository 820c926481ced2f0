//! The dispatcher: delivers durable events to every sink whose filter takes them, in order per
//! document, with retries, dead letters and disabling, and records every outcome through the
//! store writer (delivery marks in the outbox, a `delivery` record in the audit chain).
//!
//! Its operators' messages (`ListSinks`, `EnableSink`, `Replay`) are in `dispatcher/admin.rs`.
//!
//! One actor (on the system arbiter); the HTTP calls run on blocking threads, bounded per sink
//! (`max_in_flight`), so a slow or dead endpoint holds a few threads and never the actors that
//! serve edits.
//!
//! Invariants:
//! - It only ever hears of events after the flush that made them durable (the store actor
//!   sends them from its flush notification), or reads them back from the outbox.
//! - Which event starts when is decided by each sink's pure schedule
//!   ([`crate::events::schedule::SinkQueue`]): per sink and document one event in flight (or
//!   waiting for its retry) at a time, the next only once it is settled (delivered or
//!   dead-lettered), at most `max_in_flight` at once, none while disabled.
//! - An event is settled for a sink once, unless replayed; the settle mark is written before
//!   the sink's low-water mark passes it. After a crash, everything above the low-water mark
//!   and not marked is delivered again (at least once; the id is the same, so receivers
//!   deduplicate).
//! - Memory per sink is bounded by [`crate::events::schedule::MAX_QUEUED`] events: beyond it
//!   new events stay in the outbox only ("spilled") and are read back, in order, as the queue
//!   drains.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rand::Rng;
use serde::Serialize;
use tracing::{info, warn};

use crate::events::outbox::{self, DeadLetter, Settled, TreeWrite};
use crate::events::retry::{Attempt, Next};
use crate::events::schedule::SinkQueue;
use crate::events::sinks::{self, Sink, Target};
use crate::events::{Event, EventsError};
use crate::metrics::metrics;
use crate::security::audit::{now_ms, AuditEvent};
use crate::storage::Store;
use crate::store_actor::{RecordDelivery, StoreActor};

mod admin;
pub use admin::{EnableSink, ListSinks, Replay, Replayed, SinkStatus};

/// How often low-water marks are saved and the outbox trimmed.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(5);
/// Events kept in the outbox behind every sink's low-water mark (for `events replay`).
pub const DEFAULT_RETAIN_EVENTS: u64 = 100_000;

/// One sink: where and how, its schedule, why it is disabled.
struct SinkRun {
    sink: Arc<Sink>,
    agent: ureq::Agent,
    queue: SinkQueue,
    /// Why it is disabled (a 410), if it is.
    disabled: Option<String>,
}

impl SinkRun {
    fn gauge(&self) {
        metrics()
            .events_pending
            .get_or_create(&label(&self.sink.name))
            .set(self.queue.pending() as i64);
    }

    /// Reads spilled events back from the outbox (`settled`: those to skip).
    fn refill(
        &mut self,
        store: &dyn Store,
        seen: u64,
        settled: &HashSet<u64>,
    ) -> Result<(), EventsError> {
        let sink = self.sink.clone();
        self.queue.refill(
            seen,
            Instant::now(),
            |after| outbox::read_after(store, after, outbox::READ_BATCH),
            |ev| sink.matches(ev) && !settled.contains(&ev.seq),
        )?;
        self.gauge();
        Ok(())
    }
}

fn label(name: &str) -> crate::metrics::SinkLabel {
    crate::metrics::SinkLabel {
        sink: name.to_string(),
    }
}

/// The dispatcher. See the module documentation.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    writer: Option<Addr<StoreActor>>,
    /// Outcomes recorded before the store writer was known.
    unwritten: Vec<RecordDelivery>,
    sinks: Vec<SinkRun>,
    /// The last event seen (from the outbox or the store writer).
    seen: u64,
    /// Events kept behind every sink's low-water mark.
    retain: u64,
    /// Events at or below it were trimmed from the outbox.
    trimmed: u64,
    /// Low-water marks last written, per sink.
    saved: Vec<u64>,
}

impl Dispatcher {
    /// A dispatcher for `sinks`, reading what is pending from the outbox (call before the
    /// store writer starts, so no event is both read here and sent by it). `last_seq` is the
    /// outbox's last event; `retain` events are kept behind every sink for replays.
    pub fn new(
        store: Arc<dyn Store>,
        sinks: Vec<Arc<Sink>>,
        last_seq: u64,
        retain: u64,
    ) -> Result<Self, EventsError> {
        let mut runs = Vec::new();
        let mut first_writes = Vec::new();
        for sink in sinks {
            let st = outbox::sink_state(&*store, &sink.name)?;
            let low_water = st.low_water.unwrap_or_else(|| {
                // A sink never seen starts at the outbox's end: history is not told.
                first_writes.extend(outbox::low_water_writes(&sink.name, last_seq));
                last_seq
            });
            let queue = SinkQueue::new(sink.max_in_flight, low_water, st.disabled.is_some());
            let mut run = SinkRun {
                agent: sinks::agent(sink.timeout),
                sink,
                queue,
                disabled: st.disabled,
            };
            for seq in st.replays {
                if let Some(ev) = outbox::find_event(&*store, seq)? {
                    run.queue.replay(Arc::new(ev), Instant::now());
                }
            }
            run.queue.spill_after(low_water, last_seq);
            run.refill(&*store, last_seq, &st.settled)?;
            runs.push(run);
        }
        outbox::apply(&*store, &first_writes)?;
        Ok(Dispatcher {
            saved: runs.iter().map(|r| r.queue.low_water()).collect(),
            store,
            writer: None,
            unwritten: Vec::new(),
            sinks: runs,
            seen: last_seq,
            retain,
            trimmed: 0,
        })
    }

    /// Records outcomes through the store writer (kept until it is known, right after start).
    fn write(&mut self, writes: Vec<TreeWrite>, audit: Option<AuditEvent>) {
        let m = RecordDelivery { writes, audit };
        match &self.writer {
            Some(w) => w.do_send(m),
            None => self.unwritten.push(m),
        }
    }

    /// Starts what may start on sink `i` (reading spilled events back first if there is room).
    fn pump(&mut self, i: usize, ctx: &mut Context<Self>) {
        let seen = self.seen;
        let run = &mut self.sinks[i];
        if run.queue.wants_refill() {
            if let Err(e) = run.refill(&*self.store, seen, &HashSet::new()) {
                warn!(sink = %run.sink.name, error = %e, "cannot read events back from the outbox");
            }
        }
        while let Some((doc, ev)) = self.sinks[i].queue.start() {
            self.attempt(i, doc, ev, 1, ctx);
        }
    }

    /// Makes attempt number `made` to deliver `ev` (the head of `doc`'s queue, counted in
    /// flight) to sink `i`.
    fn attempt(
        &mut self,
        i: usize,
        doc: Arc<str>,
        ev: Arc<Event>,
        made: u32,
        ctx: &mut Context<Self>,
    ) {
        let run = &self.sinks[i];
        let sink = run.sink.clone();
        let agent = run.agent.clone();
        let ev2 = ev.clone();
        let call: std::pin::Pin<Box<dyn std::future::Future<Output = Attempt>>> = match &sink.target
        {
            Target::Webhook { url, secret } => {
                let (url, secret) = (url.clone(), secret.clone());
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || {
                        sinks::post_webhook(&agent, &url, &secret, &ev2)
                    })
                    .await
                    .unwrap_or_else(|e| Attempt::Failed(format!("delivery task: {e}")))
                })
            }
            Target::Nats(n) => {
                let (n, timeout) = (n.clone(), sink.timeout);
                Box::pin(async move { n.publish(&ev2, timeout).await })
            }
        };
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(call)
                .map(move |attempt, act, ctx| act.attempted(i, doc, ev, made, attempt, ctx)),
        );
    }

    fn attempted(
        &mut self,
        i: usize,
        doc: Arc<str>,
        ev: Arc<Event>,
        made: u32,
        attempt: Attempt,
        ctx: &mut Context<Self>,
    ) {
        let run = &mut self.sinks[i];
        run.queue.attempt_done();
        let name = run.sink.name.clone();
        let next = run
            .sink
            .retry
            .next(made, &attempt, rand::rng().random::<f64>());
        let (status, error) = match &attempt {
            Attempt::Status { status, .. } => (Some(*status), format!("HTTP {status}")),
            Attempt::Failed(e) => (None, e.clone()),
        };
        let m = metrics();
        if next != Next::Done {
            m.events_failed.get_or_create(&label(&name)).inc();
        }
        match next {
            Next::Done => {
                m.events_delivered.get_or_create(&label(&name)).inc();
                self.settle(i, &doc, &ev, made, status, None);
            }
            Next::Dead => {
                warn!(sink = %name, event = %ev.id, attempts = made, %error, "event dead-lettered");
                m.events_dead.get_or_create(&label(&name)).inc();
                self.settle(i, &doc, &ev, made, status, Some(error));
            }
            Next::Retry(delay) => {
                ctx.run_later(delay, move |act, ctx| {
                    if let Some(ev) = act.sinks[i].queue.retry(&doc) {
                        act.attempt(i, doc, ev, made + 1, ctx);
                    }
                });
            }
            Next::Disable => {
                warn!(sink = %name, event = %ev.id, "the endpoint answered 410 Gone: it is disabled until enabled again");
                run.queue.park(&doc);
                if run.disabled.is_none() {
                    let why = format!("HTTP 410 at {}", crate::events::rfc3339_ms(now_ms()));
                    self.set_disabled(i, Some(why), &ev.id);
                }
            }
        }
        self.pump(i, ctx);
    }

    /// Settles the head `ev` of `doc`'s queue on sink `i`: delivered, or dead with `error`.
    fn settle(
        &mut self,
        i: usize,
        doc: &Arc<str>,
        ev: &Arc<Event>,
        attempts: u32,
        status: Option<u16>,
        error: Option<String>,
    ) {
        let run = &mut self.sinks[i];
        let at_ms = now_ms();
        if let (Some(taken), None) = (run.queue.settle(doc, ev.seq), &error) {
            metrics()
                .events_latency
                .observe(taken.elapsed().as_secs_f64());
        }
        run.gauge();
        let outcome = if error.is_some() { "dead" } else { "delivered" };
        let settled = Settled {
            outcome: outcome.into(),
            attempts,
            status,
            at_ms,
        };
        let dead = error.map(|error| DeadLetter {
            sink: run.sink.name.clone(),
            seq: ev.seq,
            id: ev.id.clone(),
            kind: ev.kind,
            attempts,
            status,
            error,
            at_ms,
            event: serde_json::from_str(&ev.json).unwrap_or_default(),
        });
        let writes = outbox::settle_writes(&run.sink.name, ev.seq, &settled, dead.as_ref());
        let audit = AuditEvent::Delivery {
            sink: run.sink.name.clone(),
            event: ev.id.clone(),
            outcome: outcome.into(),
            attempts,
            status,
        };
        self.write(writes, Some(audit));
    }

    /// Disables (`Some(why)`) or enables sink `i`, durably and audited.
    fn set_disabled(&mut self, i: usize, why: Option<String>, event: &str) {
        let run = &mut self.sinks[i];
        run.disabled = why.clone();
        run.queue.set_disabled(why.is_some());
        metrics()
            .events_disabled
            .get_or_create(&label(&run.sink.name))
            .set(i64::from(why.is_some()));
        let audit = AuditEvent::Delivery {
            sink: run.sink.name.clone(),
            event: event.to_string(),
            outcome: if why.is_some() { "disabled" } else { "enabled" }.into(),
            attempts: 0,
            status: why.as_ref().map(|_| 410),
        };
        let w = vec![outbox::disabled_write(&run.sink.name, why.as_deref())];
        self.write(w, Some(audit));
    }

    /// Saves low-water marks that moved and trims the outbox behind every sink.
    fn housekeeping(&mut self) {
        let seen = self.seen;
        let mut writes = Vec::new();
        let mut min = seen;
        for (run, saved) in self.sinks.iter_mut().zip(self.saved.iter_mut()) {
            let lw = run.queue.advance_low_water(seen);
            if lw > *saved {
                writes.extend(outbox::low_water_writes(&run.sink.name, lw));
                *saved = lw;
            }
            min = min.min(*saved);
        }
        let trim = min.saturating_sub(self.retain);
        if trim > self.trimmed {
            writes.extend(outbox::trim_writes(trim));
            self.trimmed = trim;
        }
        if !writes.is_empty() {
            self.write(writes, None);
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for i in 0..self.sinks.len() {
            let run = &self.sinks[i];
            metrics()
                .events_disabled
                .get_or_create(&label(&run.sink.name))
                .set(i64::from(run.disabled.is_some()));
            run.gauge();
            info!(sink = %run.sink.name, pending = run.queue.pending(), low_water = run.queue.low_water(), disabled = run.disabled.is_some(), "event sink");
            self.pump(i, ctx);
        }
        ctx.run_interval(HOUSEKEEPING_INTERVAL, |act, _| act.housekeeping());
    }
}

/// The store writer to record outcomes through (sent once, right after both start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseWriter(pub Addr<StoreActor>);

impl Handler<UseWriter> for Dispatcher {
    type Result = ();

    fn handle(&mut self, m: UseWriter, _: &mut Context<Self>) {
        for w in self.unwritten.drain(..) {
            m.0.do_send(w);
        }
        self.writer = Some(m.0);
    }
}

/// Events that just became durable, in sequence order (from the store writer).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EventsDurable(pub Vec<Arc<Event>>);

impl Handler<EventsDurable> for Dispatcher {
    type Result = ();

    /// Queues each event for every sink that takes it (or leaves it in the outbox for a
    /// spilled sink).
    fn handle(&mut self, m: EventsDurable, ctx: &mut Context<Self>) {
        for ev in m.0 {
            if ev.seq <= self.seen {
                continue;
            }
            self.seen = ev.seq;
            for run in &mut self.sinks {
                if run.sink.matches(&ev) {
                    run.queue.offer(ev.clone(), Instant::now());
                    run.gauge();
                }
            }
        }
        for i in 0..self.sinks.len() {
            self.pump(i, ctx);
        }
    }
}
