//! The store actor's part in change events (see `crate::events`): it notes ops as their flush
//! makes them durable, turns the coalescer's changes (and deletions, joins, leaves, refusals)
//! into event records written like every other write, and hands each event to the dispatcher
//! once the flush covering its record returns. Also `RecordDelivery`, the dispatcher's marks
//! and audit records.
//!
//! Invariants:
//! - An op is noted only after a flush covered it; an event is dispatched only after a flush
//!   covered its record. So no event describes an edit that is not durable, and none is sent
//!   before it would survive a crash.
//! - A document's change events and cursor are written in change order, and before its
//!   deletion's event (the pending change is taken first, in the deletion's own write).

use std::collections::{HashMap, HashSet};

use coedit_protocol::DocKind;

use super::owned::Ownership;
use super::*;
use crate::dispatcher::EventsDurable;
use crate::events::coalesce::{Change, Coalescer};
use crate::events::outbox::{self, OutboxState, TreeWrite};
use crate::events::{split_storage_id, Event, EventData, EventType, Revs};

/// How often the coalescer is asked for due changes.
pub const EVENT_TICK: Duration = Duration::from_millis(100);

/// What the store writer needs for change events.
pub struct EventsSetup {
    /// At most one `document.changed` per document per interval.
    pub changed_interval: Duration,
    /// The kinds some sink takes (the others are not written).
    pub wanted: HashSet<EventType>,
    /// The outbox's prefix and last sequence number (after the start-up catch-up).
    pub state: OutboxState,
    /// The dispatcher.
    pub dispatcher: Recipient<EventsDurable>,
    /// Cluster mode: the cursors are the cluster's and a node tells the changes of the
    /// documents it owns (`store_actor/owned.rs`).
    pub shared: bool,
}

/// An op written and not yet known durable.
struct PendingOp {
    wseq: u64,
    doc: Arc<str>,
    kind: DocKind,
    rev: u64,
    subject: Option<Arc<str>>,
}

/// The store writer's change-event state.
pub(super) struct EventsWriter {
    pub(super) coalescer: Coalescer,
    /// Cluster mode: the documents this node owns.
    pub(super) owned: Option<Ownership>,
    prefix: String,
    last_seq: u64,
    wanted: HashSet<EventType>,
    /// Whether document changes are told (created or changed wanted).
    pub(super) changes: bool,
    /// Ops written, waiting for their flush, in write order.
    ops: VecDeque<PendingOp>,
    /// Events written, waiting for their flush, in write order.
    written: VecDeque<(u64, Arc<Event>)>,
    dispatcher: Recipient<EventsDurable>,
    /// Session events wanted: each open session's subject and joined documents.
    sessions: HashMap<u64, (Option<Arc<str>>, HashSet<String>)>,
}

impl EventsWriter {
    pub(super) fn new(s: EventsSetup) -> Self {
        let changes =
            s.wanted.contains(&EventType::Created) || s.wanted.contains(&EventType::Changed);
        EventsWriter {
            coalescer: Coalescer::new(s.changed_interval.as_millis() as u64),
            prefix: s.state.prefix,
            last_seq: s.state.last_seq,
            wanted: s.wanted,
            changes,
            ops: VecDeque::new(),
            written: VecDeque::new(),
            dispatcher: s.dispatcher,
            sessions: HashMap::new(),
            owned: s.shared.then(Ownership::default),
        }
    }

    pub(super) fn wants(&self, t: EventType) -> bool {
        self.wanted.contains(&t)
    }

    /// A new event of kind `t` (its sequence number taken).
    pub(super) fn event(&mut self, t: EventType, now: u64, data: EventData) -> Arc<Event> {
        self.last_seq += 1;
        metrics().events_written.inc();
        Arc::new(Event::new(&self.prefix, self.last_seq, t, now, data))
    }

    /// The events of a change and their writes (the cursor with the last one).
    pub(super) fn change_events(
        &mut self,
        c: Change,
        now: u64,
    ) -> (Vec<TreeWrite>, Vec<Arc<Event>>) {
        let (tenant, name) = split_storage_id(&c.doc);
        let base = EventData {
            tenant,
            document: Some(name),
            kind: Some(c.kind.to_string()),
            ..EventData::default()
        };
        let mut evs = Vec::new();
        if c.created() && self.wants(EventType::Created) {
            let actor = c.authors.first().map(|a| a.to_string());
            evs.push(self.event(
                EventType::Created,
                now,
                EventData {
                    revs: Some(Revs { from: 1, to: 1 }),
                    actor,
                    ..base.clone()
                },
            ));
        }
        if self.wants(EventType::Changed) {
            evs.push(self.event(
                EventType::Changed,
                now,
                EventData {
                    revs: Some(Revs {
                        from: c.from,
                        to: c.to,
                    }),
                    authors: Some(c.authors.iter().map(|a| a.to_string()).collect()),
                    more_authors: c.more_authors,
                    actor: c.last_author.as_ref().map(|a| a.to_string()),
                    ..base
                },
            ));
        }
        let mut writes = Vec::new();
        for (i, ev) in evs.iter().enumerate() {
            let cursor = (i + 1 == evs.len()).then_some((&*c.doc, c.to));
            writes.extend(outbox::event_writes(ev, cursor));
        }
        (writes, evs)
    }
}

impl StoreActor {
    /// Turns on change events (before the actor starts).
    pub fn with_events(mut self, setup: EventsSetup) -> Self {
        self.events = Some(EventsWriter::new(setup));
        self
    }

    /// Notes an op written with sequence number `wseq` (told once it is durable).
    pub(super) fn event_op(
        &mut self,
        wseq: u64,
        doc: &Arc<str>,
        record: &LogEntry,
        subject: Option<&Arc<str>>,
    ) {
        if let Some(e) = self.events.as_mut().filter(|e| e.changes) {
            e.ops.push_back(PendingOp {
                wseq,
                doc: doc.clone(),
                kind: match record {
                    LogEntry::Text(_) => DocKind::Text,
                    LogEntry::Yjs(_) => DocKind::Yjs,
                },
                rev: record.rev(),
                subject: subject.cloned(),
            });
        }
    }

    /// After a flush: notes the ops it made durable, hands the events it made durable to the
    /// dispatcher.
    pub(super) fn events_flushed(&mut self) {
        let flushed = self.flushed;
        let fenced = &self.fenced;
        let Some(e) = self.events.as_mut() else {
            return;
        };
        while e.ops.front().is_some_and(|o| o.wseq <= flushed) {
            if let Some(o) = e.ops.pop_front() {
                // Cluster mode: revisions the store refused (another node's are there) are
                // not this node's changes to tell.
                if fenced.get(&o.doc).is_some_and(|from| o.rev >= *from) {
                    continue;
                }
                // Cluster mode: only the owner tells, and not what its catch-up told.
                if e.owned
                    .as_ref()
                    .is_some_and(|own| !own.takes(&o.doc, o.rev))
                {
                    continue;
                }
                e.coalescer.note(&o.doc, o.kind, o.rev, o.subject.as_ref());
            }
        }
        let mut durable = Vec::new();
        while e.written.front().is_some_and(|(w, _)| *w <= flushed) {
            if let Some((_, ev)) = e.written.pop_front() {
                durable.push(ev);
            }
        }
        if !durable.is_empty() {
            e.dispatcher.do_send(EventsDurable(durable));
        }
    }

    /// Writes the changes that are due (`all`: every pending one, at shutdown).
    pub(super) fn emit_due(&mut self, all: bool, ctx: &mut Context<Self>) {
        let now = crate::security::audit::now_ms();
        let Some(e) = self.events.as_mut() else {
            return;
        };
        let mut writes = Vec::new();
        let mut evs = Vec::new();
        let changes = match (&e.owned, all) {
            (_, true) => e.coalescer.drain(),
            (Some(own), false) => e.coalescer.due_if(now, |d| own.ready(d)),
            (None, false) => e.coalescer.due(now),
        };
        for c in changes {
            let (w, v) = e.change_events(c, now);
            writes.extend(w);
            evs.extend(v);
        }
        self.write_events(writes, evs, ctx);
    }

    pub(super) fn write_events(
        &mut self,
        writes: Vec<TreeWrite>,
        evs: Vec<Arc<Event>>,
        ctx: &mut Context<Self>,
    ) {
        if writes.is_empty() {
            return;
        }
        let wseq = self.enqueue(Write::Events(writes), ctx);
        if let Some(e) = self.events.as_mut() {
            e.written.extend(evs.into_iter().map(|ev| (wseq, ev)));
        }
    }

    /// The events of deleting `doc` by `subject`, to be written with the deletion (write
    /// `wseq`): its pending change (ops queued before the deletion are durable with it), then
    /// `document.deleted`; its cursor goes.
    pub(super) fn deletion_events(
        &mut self,
        doc: &str,
        subject: Option<String>,
        wseq: u64,
    ) -> Vec<TreeWrite> {
        let now = crate::security::audit::now_ms();
        let Some(e) = self.events.as_mut() else {
            return Vec::new();
        };
        let mut mine = Vec::new();
        e.ops.retain(|o| {
            if &*o.doc == doc {
                mine.push((o.doc.clone(), o.kind, o.rev, o.subject.clone()));
                false
            } else {
                true
            }
        });
        for (d, kind, rev, subject) in mine {
            e.coalescer.note(&d, kind, rev, subject.as_ref());
        }
        let (mut writes, mut evs) = match e.coalescer.take(doc) {
            Some(c) => e.change_events(c, now),
            None => (Vec::new(), Vec::new()),
        };
        if e.wants(EventType::Deleted) {
            let (tenant, name) = split_storage_id(doc);
            let ev = e.event(
                EventType::Deleted,
                now,
                EventData {
                    tenant,
                    document: Some(name),
                    actor: subject,
                    ..EventData::default()
                },
            );
            writes.extend(outbox::event_writes(&ev, None));
            evs.push(ev);
        }
        if e.changes {
            writes.push(outbox::cursor_delete(doc));
        }
        if let Some(own) = e.owned.as_mut() {
            own.forget(doc);
        }
        e.written.extend(evs.into_iter().map(|ev| (wseq, ev)));
        writes
    }

    /// Session events from the sessions' audit events (when a sink takes them).
    pub(super) fn session_event(&mut self, a: &AuditEvent, ctx: &mut Context<Self>) {
        let Some(e) = self.events.as_mut() else {
            return;
        };
        let (joined, left) = (
            e.wants(EventType::SessionJoined),
            e.wants(EventType::SessionLeft),
        );
        if !joined && !left {
            return;
        }
        let now = crate::security::audit::now_ms();
        let mut evs = Vec::new();
        let mut told =
            |e: &mut EventsWriter, t: EventType, session: u64, doc: &str, role: Option<String>| {
                let actor = e
                    .sessions
                    .get(&session)
                    .and_then(|(s, _)| s.as_ref().map(|s| s.to_string()));
                let (tenant, name) = split_storage_id(doc);
                let data = EventData {
                    tenant,
                    document: Some(name),
                    session: Some(session),
                    actor,
                    role,
                    ..EventData::default()
                };
                evs.push(e.event(t, now, data));
            };
        match a {
            AuditEvent::SessionOpen {
                session, subject, ..
            } => {
                e.sessions.insert(
                    *session,
                    (subject.as_deref().map(Arc::from), HashSet::new()),
                );
            }
            AuditEvent::Join { session, doc, role } => {
                let entry = e.sessions.entry(*session).or_default();
                if entry.1.insert(doc.clone()) && joined {
                    told(e, EventType::SessionJoined, *session, doc, role.clone());
                }
            }
            AuditEvent::Leave { session, doc } => {
                let was = e
                    .sessions
                    .get_mut(session)
                    .is_some_and(|(_, docs)| docs.remove(doc));
                if was && left {
                    told(e, EventType::SessionLeft, *session, doc, None);
                }
            }
            AuditEvent::SessionClose { session } => {
                let docs = e
                    .sessions
                    .get(session)
                    .map(|(_, d)| {
                        let mut v: Vec<String> = d.iter().cloned().collect();
                        v.sort();
                        v
                    })
                    .unwrap_or_default();
                if left {
                    for doc in &docs {
                        told(e, EventType::SessionLeft, *session, doc, None);
                    }
                }
                e.sessions.remove(session);
            }
            _ => {}
        }
        let writes = evs
            .iter()
            .flat_map(|ev| outbox::event_writes(ev, None))
            .collect();
        self.write_events(writes, evs, ctx);
    }

    /// `access.denied` for a refusal recorded one by one (when a sink takes it).
    pub(super) fn refusal_event(&mut self, a: &AuditEvent, ctx: &mut Context<Self>) {
        let Some(e) = self
            .events
            .as_mut()
            .filter(|e| e.wants(EventType::AccessDenied))
        else {
            return;
        };
        let AuditEvent::Refused {
            session,
            subject,
            action,
            doc,
            code,
            reason,
            ..
        } = a
        else {
            return;
        };
        let (tenant, document) = match doc {
            Some(d) => {
                let (t, n) = split_storage_id(d);
                (t, Some(n))
            }
            None => (None, None),
        };
        let ev = e.event(
            EventType::AccessDenied,
            crate::security::audit::now_ms(),
            EventData {
                tenant,
                document,
                session: *session,
                actor: subject.clone(),
                action: Some(action.clone()),
                code: Some(*code),
                reason: Some(reason.clone()),
                ..EventData::default()
            },
        );
        let writes = outbox::event_writes(&ev, None);
        self.write_events(writes, vec![ev], ctx);
    }

    /// Whether refusals must be filtered (audit on, or `access.denied` wanted).
    pub(super) fn refusals_wanted(&self) -> bool {
        self.audit
            || self
                .events
                .as_ref()
                .is_some_and(|e| e.wants(EventType::AccessDenied))
    }
}

/// Record delivery outcomes: outbox marks and, with audit on, a `delivery` audit record
/// (from the dispatcher). Durable with the next flush.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordDelivery {
    /// Outbox mutations.
    pub writes: Vec<TreeWrite>,
    /// The audit record.
    pub audit: Option<AuditEvent>,
}

impl Handler<RecordDelivery> for StoreActor {
    type Result = ();

    /// Queues the marks, then the audit record.
    fn handle(&mut self, m: RecordDelivery, ctx: &mut Context<Self>) {
        if !m.writes.is_empty() {
            self.enqueue(Write::Events(m.writes), ctx);
        }
        if let (true, Some(a)) = (self.audit, m.audit) {
            self.enqueue(Write::Audit(a), ctx);
        }
    }
}
