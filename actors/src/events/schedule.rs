//! One sink's delivery schedule, pure (the dispatcher actor does the calls, the reads and the
//! writes; it hands this the outcomes and the time): which event may start, which waits, what
//! is settled, what stays in the outbox.
//!
//! Invariants (checked by the tests below, and by a seeded simulation):
//! - Per document, at most one event is in flight or waiting for its retry (the document is
//!   "busy"), and a document's events start in sequence order: the next starts only once the
//!   one before is settled. Events without a document form one more such queue ("").
//! - At most `max_in_flight` attempts run at once; none starts while the sink is disabled.
//! - An event taken is unsettled until [`SinkQueue::settle`]; the low-water mark never passes
//!   an unsettled event (a replayed one below it excepted: the mark never moves back) nor the
//!   first event left in the outbox.
//! - At most [`MAX_QUEUED`] events are held; beyond, new events stay in the outbox ("spilled")
//!   and are read back in order as the queue drains, so spilling changes no order.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::Event;

/// Most events a sink holds in memory; beyond, they are read back from the outbox.
pub const MAX_QUEUED: usize = 20_000;

/// The key of an event's queue: its document, or "" for events without one.
fn queue_key(ev: &Event) -> Arc<str> {
    ev.doc.clone().unwrap_or_else(|| Arc::from(""))
}

/// One sink's schedule. See the module documentation.
#[derive(Debug)]
pub struct SinkQueue {
    max_in_flight: usize,
    max_queued: usize,
    disabled: bool,
    /// Pending events per document, in order, with when they were taken.
    queues: HashMap<Arc<str>, VecDeque<(Arc<Event>, Instant)>>,
    /// Events in `queues`.
    queued: usize,
    /// Documents whose head is in flight or waiting for a retry.
    busy: HashSet<Arc<str>>,
    /// Documents whose head may start, in the order they became ready.
    ready: VecDeque<Arc<str>>,
    in_flight: usize,
    /// Events held (queued or in flight) and not settled.
    unsettled: BTreeSet<u64>,
    /// Every event at or below it is settled (replays excepted).
    low_water: u64,
    /// The first event left in the outbox only (`None`: everything is held).
    spilled_from: Option<u64>,
    /// Events left in the outbox only, as far as counted since start.
    spilled: u64,
}

impl SinkQueue {
    /// A schedule starting after `low_water`, `disabled` or not.
    pub fn new(max_in_flight: usize, low_water: u64, disabled: bool) -> Self {
        Self::with_capacity(max_in_flight, low_water, disabled, MAX_QUEUED)
    }

    /// [`SinkQueue::new`] holding at most `max_queued` events (tests use small ones).
    pub fn with_capacity(
        max_in_flight: usize,
        low_water: u64,
        disabled: bool,
        max_queued: usize,
    ) -> Self {
        SinkQueue {
            max_in_flight: max_in_flight.max(1),
            max_queued: max_queued.max(1),
            disabled,
            queues: HashMap::new(),
            queued: 0,
            busy: HashSet::new(),
            ready: VecDeque::new(),
            in_flight: 0,
            unsettled: BTreeSet::new(),
            low_water,
            spilled_from: None,
            spilled: 0,
        }
    }

    /// Holds `ev` (taken at `now`) unless it is already held. Returns whether it was taken.
    fn hold(&mut self, ev: Arc<Event>, now: Instant) -> bool {
        if !self.unsettled.insert(ev.seq) {
            return false;
        }
        let key = queue_key(&ev);
        self.queued += 1;
        let q = self.queues.entry(key.clone()).or_default();
        q.push_back((ev, now));
        if q.len() == 1 && !self.busy.contains(&key) {
            self.ready.push_back(key);
        }
        true
    }

    /// A new durable event the sink takes: held, or left in the outbox when the schedule is
    /// full or already spilled (order: nothing may overtake what is in the outbox).
    pub fn offer(&mut self, ev: Arc<Event>, now: Instant) {
        if self.spilled_from.is_none() && self.queued >= self.max_queued {
            self.spilled_from = Some(ev.seq);
        }
        if self.spilled_from.is_some() {
            self.spilled += 1;
        } else {
            self.hold(ev, now);
        }
    }

    /// Marks everything after `low_water` up to the outbox's end as left in the outbox (start-up:
    /// [`SinkQueue::refill`] reads it).
    pub fn spill_after(&mut self, low_water: u64, last: u64) {
        if low_water < last {
            self.spilled_from = Some(low_water + 1);
        }
    }

    /// Whether events are left in the outbox and there is room to read them back.
    pub fn wants_refill(&self) -> bool {
        self.spilled_from.is_some() && self.queued < self.max_queued / 2 + 1
    }

    /// Reads events left in the outbox back, in order, up to the capacity: `read(after)` gives
    /// the events after a sequence number (empty at the end), `keep` says which this sink still
    /// takes; `seen` is the last event offered.
    pub fn refill<E>(
        &mut self,
        seen: u64,
        now: Instant,
        mut read: impl FnMut(u64) -> Result<Vec<Event>, E>,
        keep: impl Fn(&Event) -> bool,
    ) -> Result<(), E> {
        while let Some(from) = self.spilled_from {
            if self.queued >= self.max_queued {
                break;
            }
            let evs = read(from - 1)?;
            let mut next = seen + 1;
            for ev in evs.into_iter().take_while(|e| e.seq <= seen) {
                next = ev.seq + 1;
                if keep(&ev) && self.hold(Arc::new(ev), now) {
                    self.spilled = self.spilled.saturating_sub(1);
                    if self.queued >= self.max_queued {
                        break;
                    }
                }
            }
            self.spilled_from = (next <= seen).then_some(next);
        }
        if self.spilled_from.is_none() {
            self.spilled = 0;
        }
        Ok(())
    }

    /// The next attempt to start, if one may: its document and event (the document is busy
    /// until settled).
    pub fn start(&mut self) -> Option<(Arc<str>, Arc<Event>)> {
        while !self.disabled && self.in_flight < self.max_in_flight {
            let doc = self.ready.pop_front()?;
            if let Some((ev, _)) = self.queues.get(&doc).and_then(|q| q.front()).cloned() {
                self.busy.insert(doc.clone());
                self.in_flight += 1;
                return Some((doc, ev));
            }
        }
        None
    }

    /// An attempt ended (whatever its outcome).
    pub fn attempt_done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The retry of `doc`'s head is due: `Some(event)` to attempt again (counted in flight), or
    /// `None` when the sink is disabled meanwhile (the document waits, first in line).
    pub fn retry(&mut self, doc: &Arc<str>) -> Option<Arc<Event>> {
        let head = self
            .queues
            .get(doc)
            .and_then(|q| q.front())
            .map(|(e, _)| e.clone());
        if self.disabled || head.is_none() {
            self.park(doc);
            return None;
        }
        self.in_flight += 1;
        head
    }

    /// `doc`'s head stays pending and goes back to the front of the line (disabled sink).
    pub fn park(&mut self, doc: &Arc<str>) {
        if self.busy.remove(doc) && self.queues.contains_key(doc) {
            self.ready.push_front(doc.clone());
        }
    }

    /// Settles `doc`'s head `seq` (delivered or dead-lettered); returns when it was taken.
    pub fn settle(&mut self, doc: &Arc<str>, seq: u64) -> Option<Instant> {
        let mut taken = None;
        if let Some(q) = self.queues.get_mut(doc) {
            if q.front().is_some_and(|(e, _)| e.seq == seq) {
                taken = q.pop_front().map(|(_, t)| t);
                self.queued -= 1;
            }
            if q.is_empty() {
                self.queues.remove(doc);
            } else if self.busy.contains(doc) {
                self.ready.push_back(doc.clone());
            }
        }
        self.busy.remove(doc);
        self.unsettled.remove(&seq);
        taken
    }

    /// Disables (`true`) or enables the sink.
    pub fn set_disabled(&mut self, disabled: bool) {
        self.disabled = disabled;
    }

    /// Whether the sink is disabled.
    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// Queues `ev` again (a replay), behind what its document's queue holds. False when it is
    /// already held or still in the outbox (it will be delivered anyway).
    pub fn replay(&mut self, ev: Arc<Event>, now: Instant) -> bool {
        if self.unsettled.contains(&ev.seq) || self.spilled_from.is_some_and(|s| ev.seq >= s) {
            return false;
        }
        self.hold(ev, now)
    }

    /// The low-water mark the settled events allow, `seen` being the last event offered; it
    /// becomes the mark (it never moves back).
    pub fn advance_low_water(&mut self, seen: u64) -> u64 {
        let mut lw = seen;
        if let Some(first) = self.unsettled.iter().find(|&&s| s > self.low_water) {
            lw = lw.min(first - 1);
        }
        if let Some(s) = self.spilled_from {
            lw = lw.min(s - 1);
        }
        self.low_water = lw.max(self.low_water);
        self.low_water
    }

    /// The current low-water mark.
    pub fn low_water(&self) -> u64 {
        self.low_water
    }

    /// Events taken and not settled, including those counted in the outbox.
    pub fn pending(&self) -> u64 {
        self.unsettled.len() as u64 + self.spilled
    }

    /// Attempts running.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EventData, EventType};
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn ev(seq: u64, doc: &str) -> Event {
        Event::new(
            "t",
            seq,
            EventType::Changed,
            0,
            EventData {
                document: (!doc.is_empty()).then(|| doc.to_string()),
                ..EventData::default()
            },
        )
    }

    fn arc(seq: u64, doc: &str) -> Arc<Event> {
        Arc::new(ev(seq, doc))
    }

    #[test]
    fn one_in_flight_per_document_in_order_and_a_bounded_total() {
        let now = Instant::now();
        let mut q = SinkQueue::new(2, 0, false);
        for (s, d) in [(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "a")] {
            q.offer(arc(s, d), now);
        }
        let (d1, e1) = q.start().expect("a");
        let (d2, e2) = q.start().expect("b");
        assert_eq!((&*d1, e1.seq, &*d2, e2.seq), ("a", 1, "b", 3));
        assert!(q.start().is_none(), "two in flight at most");
        q.attempt_done();
        q.settle(&d1, 1);
        // c became ready before a's next: a goes behind it.
        let (d3, e3) = q.start().expect("c");
        assert_eq!((&*d3, e3.seq), ("c", 4));
        assert!(q.start().is_none());
        q.attempt_done();
        q.settle(&d3, 4);
        let (d4, e4) = q.start().expect("a again");
        assert_eq!((&*d4, e4.seq), ("a", 2));
        assert_eq!(q.advance_low_water(5), 1, "2 and 3 are not settled");
    }

    #[test]
    fn a_retry_keeps_its_document_busy_and_a_disabled_sink_starts_nothing() {
        let now = Instant::now();
        let mut q = SinkQueue::new(4, 0, false);
        q.offer(arc(1, "a"), now);
        q.offer(arc(2, "a"), now);
        q.offer(arc(3, "b"), now);
        let (a, e) = q.start().expect("a");
        assert_eq!(e.seq, 1);
        q.attempt_done(); // failed: a retry is scheduled, a stays busy
        let (b, _) = q.start().expect("b");
        assert!(q.start().is_none(), "a's next waits for its head");
        assert_eq!(q.retry(&a).map(|e| e.seq), Some(1));
        q.attempt_done();
        q.set_disabled(true); // a 410 on b's attempt
        q.attempt_done();
        q.park(&b);
        assert_eq!(q.retry(&a), None, "no retry while disabled");
        assert!(q.start().is_none());
        q.set_disabled(false);
        let firsts: Vec<u64> = std::iter::from_fn(|| q.start().map(|(_, e)| e.seq)).collect();
        assert_eq!(firsts, vec![1, 3], "both heads, nothing overtaken");
        assert_eq!(q.pending(), 3);
    }

    #[test]
    fn spilled_events_come_back_in_order() {
        let now = Instant::now();
        let outbox: Vec<Event> = (1..=10)
            .map(|s| ev(s, if s % 2 == 0 { "a" } else { "b" }))
            .collect();
        let mut q = SinkQueue::with_capacity(1, 0, false, 3);
        for e in &outbox {
            q.offer(Arc::new(e.clone()), now);
        }
        assert_eq!(q.pending(), 10);
        let mut got = Vec::new();
        for _ in 0..100 {
            if q.wants_refill() {
                q.refill(
                    10,
                    now,
                    |after| {
                        Ok::<_, ()>(
                            outbox
                                .iter()
                                .filter(|e| e.seq > after)
                                .take(2)
                                .cloned()
                                .collect(),
                        )
                    },
                    |_| true,
                )
                .expect("read");
            }
            let Some((d, e)) = q.start() else { break };
            q.attempt_done();
            q.settle(&d, e.seq);
            got.push(e.seq);
        }
        let a: Vec<u64> = got.iter().copied().filter(|s| s % 2 == 0).collect();
        let b: Vec<u64> = got.iter().copied().filter(|s| s % 2 == 1).collect();
        assert_eq!(a, vec![2, 4, 6, 8, 10]);
        assert_eq!(b, vec![1, 3, 5, 7, 9]);
        assert_eq!(q.pending(), 0);
        assert_eq!(q.advance_low_water(10), 10);
    }

    #[test]
    fn replays_and_the_low_water_mark() {
        let now = Instant::now();
        let mut q = SinkQueue::new(1, 5, false);
        q.offer(arc(6, "a"), now);
        let (d, e) = q.start().expect("6");
        q.attempt_done();
        q.settle(&d, e.seq);
        assert_eq!(q.advance_low_water(6), 6);
        // A replay of 3 (below the mark) is held; the mark does not move back.
        assert!(q.replay(arc(3, "a"), now));
        assert!(!q.replay(arc(3, "a"), now), "already held");
        assert_eq!(q.advance_low_water(6), 6);
        assert_eq!(q.start().map(|(_, e)| e.seq), Some(3));
        // An event still in the outbox is not replayed on top.
        q.spill_after(6, 9);
        assert!(!q.replay(arc(8, "b"), now));
        assert_eq!(q.advance_low_water(9), 6);
    }

    /// Random offers, outcomes (done, retry, dead, 410), enables and small capacities: every
    /// event is settled exactly once, per document in sequence order, never more than the
    /// bound in flight. `SEED=n` replays a run.
    #[test]
    fn simulation_keeps_order_and_bounds() {
        let seed = std::env::var("SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        println!("SEED={seed}");
        for round in 0..200u64 {
            let mut r = SmallRng::seed_from_u64(seed ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let now = Instant::now();
            let max_in_flight = r.random_range(1..5);
            let mut q = SinkQueue::with_capacity(max_in_flight, 0, false, r.random_range(1..8));
            let mut outbox: Vec<Event> = Vec::new();
            let mut running: Vec<(Arc<str>, Arc<Event>)> = Vec::new();
            let mut waiting: Vec<Arc<str>> = Vec::new();
            let mut settled: Vec<(String, u64)> = Vec::new();
            let mut seq = 0;
            for _ in 0..400 {
                match r.random_range(0..10) {
                    0..=2 => {
                        seq += 1;
                        let doc = ["a", "b", "c", ""][r.random_range(0..4)];
                        outbox.push(ev(seq, doc));
                        q.offer(arc(seq, doc), now);
                    }
                    3 if q.disabled() => q.set_disabled(false),
                    _ => {}
                }
                if q.wants_refill() {
                    let o = outbox.clone();
                    q.refill(
                        seq,
                        now,
                        |after| {
                            Ok::<_, ()>(
                                o.iter()
                                    .filter(|e| e.seq > after)
                                    .take(3)
                                    .cloned()
                                    .collect(),
                            )
                        },
                        |_| true,
                    )
                    .expect("read");
                }
                while let Some(s) = q.start() {
                    running.push(s);
                }
                assert!(q.in_flight() <= max_in_flight);
                if !waiting.is_empty() && r.random_bool(0.3) {
                    let d = waiting.swap_remove(r.random_range(0..waiting.len()));
                    if let Some(e) = q.retry(&d) {
                        running.push((d, e));
                    }
                }
                if running.is_empty() {
                    continue;
                }
                let (d, e) = running.swap_remove(r.random_range(0..running.len()));
                q.attempt_done();
                match r.random_range(0..10) {
                    0..=5 | 8 => {
                        q.settle(&d, e.seq);
                        settled.push((d.to_string(), e.seq));
                    }
                    6 | 7 => waiting.push(d),
                    _ => {
                        q.set_disabled(true);
                        q.park(&d);
                    }
                }
            }
            let mut seen = HashSet::new();
            for (_, s) in &settled {
                assert!(seen.insert(*s), "round {round}: {s} settled twice");
            }
            for doc in ["a", "b", "c", ""] {
                let order: Vec<u64> = settled
                    .iter()
                    .filter(|(d, _)| d == doc)
                    .map(|(_, s)| *s)
                    .collect();
                let want: Vec<u64> = outbox
                    .iter()
                    .filter(|e| e.doc.as_deref().unwrap_or("") == doc)
                    .map(|e| e.seq)
                    .take(order.len())
                    .collect();
                assert_eq!(order, want, "round {round}, document {doc:?}: out of order");
            }
        }
    }
}
