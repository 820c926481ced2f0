//! A session's outbound queue as document actors see it: [`Outbox`] sends frames to one
//! session's mailbox and counts the bytes waiting there, so a slow consumer is detected by its
//! bytes as well as by the messages waiting.
//!
//! Invariants:
//! - Every queued frame is counted (gauges `outbound_queue_frames`/`_bytes` and the session's
//!   own count) from creation until it is written or dropped, also when the session stops
//!   with frames still queued (the count lives in [`Outbound`]'s drop guard).
//! - An answer or a fan-out round (several frames) is one mailbox message: queued whole or
//!   refused whole, and woken once (one wake-up of the session and one socket write for all
//!   its frames, not one per frame).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use crate::frame::Frame;
use crate::metrics::metrics;

/// A frame for a session from a document actor. Counted in the `outbound_queue_frames` and
/// `outbound_queue_bytes` gauges and in its session's [`Outbox`] from creation until it is
/// written or dropped (also when a session stops with frames still queued).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outbound {
    /// The frames, written in order.
    pub(crate) frames: Vec<Frame>,
    _queued: Queued,
}

/// Takes the frames' bytes off the counts when they are gone.
struct Queued {
    frames: usize,
    bytes: usize,
    session: Arc<AtomicUsize>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        let m = metrics();
        m.outbound_queue.dec_by(self.frames as i64);
        m.outbound_queue_bytes.dec_by(self.bytes as i64);
        self.session.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Why an [`Outbox`] refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is over its frame or byte bound: a slow consumer.
    Full,
    /// The session is gone.
    Closed,
}

/// Where document actors send one session's frames: its mailbox (bounded in frames) and the
/// bytes waiting in it (bounded by `max_outbound_bytes`).
#[derive(Clone)]
pub struct Outbox {
    to: Recipient<Outbound>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl Outbox {
    /// An outbox for `to`, refusing frames once `max_bytes` are waiting.
    pub fn new(to: Recipient<Outbound>, max_bytes: usize) -> Self {
        Outbox {
            to,
            queued: Arc::new(AtomicUsize::new(0)),
            max_bytes,
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn wrap(&self, frames: Vec<Frame>) -> Outbound {
        let bytes = frames.iter().map(Frame::len).sum();
        let m = metrics();
        m.outbound_queue.inc_by(frames.len() as i64);
        m.outbound_queue_bytes.inc_by(bytes as i64);
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        Outbound {
            _queued: Queued {
                frames: frames.len(),
                bytes,
                session: self.queued.clone(),
            },
            frames,
        }
    }

    /// Queues the frames of one answer together, as one message: refused when the bytes
    /// already waiting reach the bound or the mailbox is full, so an answer is never cut in the
    /// middle by its own size.
    pub fn try_send_all(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), Refused> {
        if self.queued_bytes() >= self.max_bytes {
            return Err(Refused::Full);
        }
        let frames: Vec<Frame> = frames.into_iter().collect();
        if frames.is_empty() {
            return Ok(());
        }
        self.to.try_send(self.wrap(frames)).map_err(|e| match e {
            SendError::Full(_) => Refused::Full,
            SendError::Closed(_) => Refused::Closed,
        })
    }

    /// Queues a frame whatever the bounds (the close frame after a refusal).
    pub fn force(&self, frame: Frame) {
        self.to.do_send(self.wrap(vec![frame]));
    }
}
