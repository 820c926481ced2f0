//! The dispatcher's messages for operators (the admin REST calls and `coedit events`): the
//! sinks' states, enabling a sink disabled by a 410, replaying events.

use super::*;

/// One sink's state, for operators.
#[derive(Clone, Debug, Serialize)]
pub struct SinkStatus {
    /// Its name.
    pub name: String,
    /// `webhook` or `jetstream`.
    pub kind: &'static str,
    /// Events taken and not settled.
    pub pending: u64,
    /// Deliveries in flight.
    pub in_flight: usize,
    /// Why it is disabled, if it is.
    pub disabled: Option<String>,
    /// Every event at or below it is settled (as of the last housekeeping, every 5 s).
    pub low_water: u64,
}

/// The sinks' states.
#[derive(Message)]
#[rtype(result = "Vec<SinkStatus>")]
pub struct ListSinks;

impl Handler<ListSinks> for Dispatcher {
    type Result = MessageResult<ListSinks>;

    fn handle(&mut self, _: ListSinks, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sinks
                .iter()
                .map(|r| SinkStatus {
                    name: r.sink.name.clone(),
                    kind: r.sink.target.kind(),
                    pending: r.queue.pending(),
                    in_flight: r.queue.in_flight(),
                    disabled: r.disabled.clone(),
                    low_water: r.queue.low_water(),
                })
                .collect(),
        )
    }
}

/// Enable a disabled sink: what waited for it is read back from the outbox and delivered.
#[derive(Message)]
#[rtype(result = "Result<(), EventsError>")]
pub struct EnableSink(pub String);

impl Handler<EnableSink> for Dispatcher {
    type Result = Result<(), EventsError>;

    /// Enables the sink (audited) and starts its queues again.
    fn handle(&mut self, m: EnableSink, ctx: &mut Context<Self>) -> Self::Result {
        let i = self
            .sinks
            .iter()
            .position(|r| r.sink.name == m.0)
            .ok_or_else(|| EventsError::Config(format!("no sink named {:?}", m.0)))?;
        if self.sinks[i].disabled.is_some() {
            info!(sink = %m.0, "event sink enabled");
            self.set_disabled(i, None, "");
            self.pump(i, ctx);
        }
        Ok(())
    }
}

/// What a replay did for one id.
#[derive(Clone, Debug, Serialize)]
pub struct Replayed {
    /// The id asked for.
    pub id: String,
    /// The sinks it was queued for again (empty: unknown id, or no sink takes it).
    pub sinks: Vec<String>,
}

/// Deliver events again: to the sinks that dead-lettered them, or, if none did, to every sink
/// that takes them (while they are still in the outbox).
#[derive(Message)]
#[rtype(result = "Result<Vec<Replayed>, EventsError>")]
pub struct Replay(pub Vec<String>);

impl Handler<Replay> for Dispatcher {
    type Result = Result<Vec<Replayed>, EventsError>;

    /// Queues each event again, behind what its document's queue holds; a replay mark keeps
    /// it pending across a restart.
    fn handle(&mut self, m: Replay, ctx: &mut Context<Self>) -> Self::Result {
        let mut out = Vec::new();
        for id in m.0 {
            let mut queued = Vec::new();
            let seq = id
                .rsplit_once('_')
                .and_then(|(_, s)| s.parse::<u64>().ok())
                .filter(|s| *s <= self.seen);
            let found = match seq {
                Some(seq) => outbox::find_event(&*self.store, seq)?.filter(|e| e.id == id),
                None => None,
            };
            if let Some(ev) = found {
                let ev = Arc::new(ev);
                let dead: Vec<String> = outbox::dead_letters_of(&*self.store, ev.seq)?
                    .into_iter()
                    .map(|d| d.sink)
                    .collect();
                for i in 0..self.sinks.len() {
                    let run = &mut self.sinks[i];
                    let take = if dead.is_empty() {
                        run.sink.matches(&ev)
                    } else {
                        dead.contains(&run.sink.name)
                    };
                    // Already held, or still pending in the outbox: delivered anyway.
                    if !take || !run.queue.replay(ev.clone(), Instant::now()) {
                        continue;
                    }
                    run.gauge();
                    let name = run.sink.name.clone();
                    self.write(outbox::replay_writes(&name, ev.seq), None);
                    queued.push(name);
                }
            }
            out.push(Replayed { id, sinks: queued });
        }
        for i in 0..self.sinks.len() {
            self.pump(i, ctx);
        }
        Ok(out)
    }
}
