//! The document actor's fan-out: answers to one subscriber, and the rounds that send every
//! durable op and presence change to all of them (see the invariants in `document.rs`: revision
//! order, one mailbox message per subscriber per round, each frame encoded once per format, a
//! subscriber over its queue bound cut as a slow consumer).

use super::*;

impl DocActor {
    /// Sends one frame to one subscriber; a full queue disconnects it.
    pub(super) fn send_to(&mut self, session: SessionId, frame: Frame) {
        self.send_all(session, std::iter::once(frame));
    }

    /// Sends the frames of one answer to one subscriber, all queued or none; a full queue
    /// disconnects it.
    pub(super) fn send_all(&mut self, session: SessionId, frames: impl IntoIterator<Item = Frame>) {
        let Some(sub) = self.subs.get(&session) else {
            return;
        };
        let mut count = 0;
        let mut bytes = 0;
        let frames = frames.into_iter().inspect(|f| {
            count += 1;
            bytes += f.len() as u64;
        });
        match sub.out.try_send_all(frames) {
            Ok(()) => {
                let m = metrics();
                m.fanout_frames.inc_by(count);
                m.fanout_bytes.inc_by(bytes);
            }
            Err(Refused::Full) => {
                warn!(parent: &self.span, session, "slow consumer disconnected");
                metrics().slow_consumers.inc();
                if let Some(sub) = self.subs.remove(&session) {
                    sub.out.force(Frame::Close(
                        CLOSE_TRY_AGAIN,
                        "slow consumer: rejoin with your revision".into(),
                    ));
                    self.unsubscribed(sub);
                }
            }
            Err(Refused::Closed) => {
                if let Some(sub) = self.subs.remove(&session) {
                    self.unsubscribed(sub);
                }
            }
        }
    }

    /// Schedules a fan-out if a subscriber was cut (slow consumer, gone) outside a flush and
    /// its cleared caret waits to be sent.
    pub(super) fn flush_cut_presence(&mut self, ctx: &mut Context<Self>) {
        if !self.pending_presence.is_empty() {
            self.schedule_flush(ctx);
        }
    }

    /// Sends a message to one subscriber in its format.
    pub(super) fn reply(&mut self, session: SessionId, msg: &ServerMsg) {
        if let Some(format) = self.subs.get(&session).map(|s| s.format) {
            self.send_to(session, Frame::encode(msg, format));
        }
    }

    /// Sends `msgs` to every subscriber as one mailbox message each, every message encoded at
    /// most once per format.
    pub(super) fn broadcast(&mut self, msgs: &[ServerMsg]) {
        if msgs.is_empty() {
            return;
        }
        let (mut bin, mut text): (Option<Vec<Frame>>, Option<Vec<Frame>>) = (None, None);
        let targets: Vec<(SessionId, Format)> =
            self.subs.iter().map(|(id, s)| (*id, s.format)).collect();
        for (id, format) in targets {
            let slot = match format {
                Format::MsgPack => &mut bin,
                Format::Json => &mut text,
            };
            let frames = slot
                .get_or_insert_with(|| msgs.iter().map(|m| Frame::encode(m, format)).collect())
                .clone();
            self.send_all(id, frames);
        }
    }

    /// The fan-out tick now: the configured tick, stretched by the number of subscribers
    /// (`fanout_tick_per_subscriber` each) so that a round's cost, which grows with the
    /// subscribers, is paid less often on a crowded document. Zero stays zero (no coalescing).
    pub(super) fn fanout_tick(&self) -> Duration {
        let tick = self.config.fanout_tick;
        if tick.is_zero() {
            return tick;
        }
        let crowd = self.config.fanout_tick_per_subscriber * self.subs.len() as u32;
        tick.max(crowd).min(MAX_FANOUT_TICK)
    }

    /// Sends pending ops and presence at most once per fan-out tick: at once if the last
    /// flush was a tick ago or more (no added latency under light load), else at the end of
    /// the tick (one message per subscriber per tick under heavy load).
    pub(super) fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled {
            return;
        }
        let since = self.last_flush.elapsed();
        let tick = self.fanout_tick();
        if since >= tick {
            self.flush();
        } else {
            self.flush_scheduled = true;
            ctx.run_later(tick - since, |a, _| a.flush());
        }
    }

    /// Sends every durable op and presence change not yet sent: ops first, then presence, in
    /// one message per subscriber.
    pub(super) fn flush(&mut self) {
        self.flush_scheduled = false;
        if !self.pending_ops.is_empty() || !self.pending_presence.is_empty() {
            self.last_flush = Instant::now();
        }
        let mut msgs = Vec::new();
        if !self.pending_ops.is_empty() {
            let pending = std::mem::take(&mut self.pending_ops);
            for ops in chunk_ops(pending, OPS_MESSAGE_BUDGET) {
                msgs.push(ServerMsg::Ops {
                    doc: self.name.to_string(),
                    ops,
                    access: None,
                });
            }
        }
        // A subscriber cut as a slow consumer during this broadcast queues its cleared caret:
        // send that too (each round can only cut more subscribers, so this ends).
        loop {
            if !self.pending_presence.is_empty() {
                let peers = self
                    .pending_presence
                    .drain()
                    .map(|(client, (sel, user))| PeerPresence {
                        client: client.to_string(),
                        sel,
                        user: user.as_deref().cloned(),
                    })
                    .collect();
                msgs.push(ServerMsg::Presence {
                    doc: self.name.to_string(),
                    rev: self.doc.rev(),
                    peers,
                });
            }
            if msgs.is_empty() {
                break;
            }
            self.broadcast(&std::mem::take(&mut msgs));
        }
    }
}
