//! The classic server-ordered OT client: synchronized, awaiting an ack, or awaiting an ack with a
//! buffer of local edits composed behind the op in flight.
//!
//! The state machine is pure: it never touches the text. The caller applies local edits to its
//! own replica before handing them in, sends the [`Outgoing`] ops it is given, and applies the
//! ops [`OtClient::on_server_op`] returns. A replica may hold the full text or only its length.
//!
//! Invariants:
//! - At most one op is in flight; everything typed meanwhile is composed into `buffer`.
//! - `rev` is the last server revision the client has integrated; the in-flight op (transformed
//!   through every remote op since it was sent) is based on `rev`, and `buffer` follows it.
//! - A client's own op coming back in a catch-up (same client id and in-flight sequence number)
//!   counts as its ack, so a resend after reconnect is never applied twice.
//! - Transform sides match the server: a client op is `Side::Left` against server ops.

use crate::error::ClientError;
use crate::op::{Op, Side};

/// An op to send to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Revision the op is based on.
    pub base_rev: u64,
    /// The client's sequence number for the op.
    pub seq: u64,
    /// The op.
    pub op: Op,
}

/// The op in flight: sent, not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
struct InFlight {
    seq: u64,
    op: Op,
}

/// Where the client stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientStatus {
    /// Nothing unacknowledged.
    Synchronized,
    /// One op in flight.
    AwaitingAck,
    /// One op in flight and more local edits waiting behind it.
    AwaitingWithBuffer,
}

/// What a server op means to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOpOutcome {
    /// A remote op, transformed for the local replica: apply it.
    Apply(Op),
    /// The client's own in-flight op, seen in a catch-up: it is acknowledged; send `next` if any.
    OwnAck(Option<Outgoing>),
    /// Already integrated (a revision the client has): ignore.
    Stale,
}

/// The client state machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct OtClient {
    client_id: String,
    rev: u64,
    next_seq: u64,
    inflight: Option<InFlight>,
    buffer: Option<Op>,
}

impl OtClient {
    /// A client with identity `client_id` whose replica is at revision `rev`.
    pub fn new(client_id: impl Into<String>, rev: u64) -> Self {
        OtClient {
            client_id: client_id.into(),
            rev,
            next_seq: 1,
            inflight: None,
            buffer: None,
        }
    }

    /// The client's identity.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Sets the identity the server assigned (before anything is sent).
    pub fn set_client_id(&mut self, id: impl Into<String>) {
        self.client_id = id.into();
    }

    /// Last integrated server revision.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// Current state.
    pub fn status(&self) -> ClientStatus {
        match (&self.inflight, &self.buffer) {
            (None, _) => ClientStatus::Synchronized,
            (Some(_), None) => ClientStatus::AwaitingAck,
            (Some(_), Some(_)) => ClientStatus::AwaitingWithBuffer,
        }
    }

    /// True when nothing local is unacknowledged.
    pub fn is_synchronized(&self) -> bool {
        self.inflight.is_none()
    }

    /// Sequence number of the op in flight.
    pub fn inflight_seq(&self) -> Option<u64> {
        self.inflight.as_ref().map(|f| f.seq)
    }

    /// A local edit, already applied to the replica. Returns the op to send if nothing was in
    /// flight; otherwise the edit waits in the buffer.
    pub fn local(&mut self, op: Op) -> Option<Outgoing> {
        if op.is_noop() {
            return None;
        }
        if self.inflight.is_some() {
            self.buffer = Some(match self.buffer.take() {
                Some(b) => b.compose(&op),
                None => op,
            });
            return None;
        }
        self.send(op)
    }

    fn send(&mut self, op: Op) -> Option<Outgoing> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let out = Outgoing {
            base_rev: self.rev,
            seq,
            op: op.clone(),
        };
        self.inflight = Some(InFlight { seq, op });
        Some(out)
    }

    /// The server acknowledged `seq` at revision `rev`. Returns the buffered op to send next.
    /// Acks of already-acknowledged ops (a resend answered twice) are ignored.
    pub fn on_ack(&mut self, seq: u64, rev: u64) -> Result<Option<Outgoing>, ClientError> {
        match &self.inflight {
            Some(f) if f.seq == seq => {
                if rev != self.rev + 1 {
                    return Err(ClientError::RevisionGap {
                        expected: self.rev + 1,
                        got: rev,
                    });
                }
                self.rev = rev;
                Ok(self.flush_buffer())
            }
            _ if seq < self.next_seq && self.inflight.as_ref().is_none_or(|f| seq < f.seq) => {
                Ok(None)
            }
            _ => Err(ClientError::UnexpectedAck {
                seq,
                inflight: self.inflight_seq(),
            }),
        }
    }

    fn flush_buffer(&mut self) -> Option<Outgoing> {
        self.inflight = None;
        let b = self.buffer.take()?;
        self.send(b)
    }

    /// An op from the server at revision `rev`, written by `author` under `seq`.
    pub fn on_server_op(
        &mut self,
        rev: u64,
        author: &str,
        seq: u64,
        op: &Op,
    ) -> Result<ServerOpOutcome, ClientError> {
        if rev <= self.rev {
            return Ok(ServerOpOutcome::Stale);
        }
        if rev != self.rev + 1 {
            return Err(ClientError::RevisionGap {
                expected: self.rev + 1,
                got: rev,
            });
        }
        if author == self.client_id {
            if let Some(f) = &self.inflight {
                if f.seq == seq {
                    self.rev = rev;
                    return Ok(ServerOpOutcome::OwnAck(self.flush_buffer()));
                }
            }
        }
        self.rev = rev;
        let mut remote = op.clone();
        if let Some(f) = &mut self.inflight {
            let f2 = f.op.transform(&remote, Side::Left);
            remote = remote.transform(&f.op, Side::Right);
            f.op = f2;
            if let Some(b) = &mut self.buffer {
                let b2 = b.transform(&remote, Side::Left);
                remote = remote.transform(b, Side::Right);
                *b = b2;
            }
        }
        Ok(ServerOpOutcome::Apply(remote))
    }

    /// After a reconnect (and rejoin with [`OtClient::rev`]), the op to send again: the one in
    /// flight, under its original sequence number, based on the current revision.
    pub fn resend(&self) -> Option<Outgoing> {
        self.inflight.as_ref().map(|f| Outgoing {
            base_rev: self.rev,
            seq: f.seq,
            op: f.op.clone(),
        })
    }

    /// The server sent a snapshot at `rev` (the join fell outside its history). Local
    /// unacknowledged edits cannot be placed on it and are returned, composed, so the caller can
    /// decide what to do with them; the client is synchronized at `rev`.
    pub fn reset(&mut self, rev: u64) -> Option<Op> {
        self.rev = rev;
        match (self.inflight.take(), self.buffer.take()) {
            (None, _) => None,
            (Some(f), None) => Some(f.op),
            (Some(f), Some(b)) => Some(f.op.compose(&b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_transitions() {
        let mut c = OtClient::new("a", 0);
        assert_eq!(c.status(), ClientStatus::Synchronized);
        let out = c.local(Op::insert_at(0, "x")).unwrap();
        assert_eq!((out.base_rev, out.seq), (0, 1));
        assert_eq!(c.status(), ClientStatus::AwaitingAck);
        assert!(c.local(Op::insert_at(1, "y")).is_none());
        assert!(c.local(Op::insert_at(2, "z")).is_none());
        assert_eq!(c.status(), ClientStatus::AwaitingWithBuffer);
        let next = c.on_ack(1, 1).unwrap().unwrap();
        assert_eq!(next.op, Op::insert_at(1, "yz"));
        assert_eq!((next.base_rev, next.seq), (1, 2));
        assert_eq!(c.on_ack(2, 2).unwrap(), None);
        assert!(c.is_synchronized());
        // A late duplicate ack is ignored; an ack for an unsent op is an error.
        assert_eq!(c.on_ack(1, 1).unwrap(), None);
        assert!(c.on_ack(9, 3).is_err());
    }

    #[test]
    fn remote_ops_transform_inflight_and_buffer() {
        let mut c = OtClient::new("a", 0);
        // Replica "ab" at rev 0 is assumed; client inserts X at 1.
        c.local(Op::insert_at(1, "X"));
        c.local(Op::insert_at(3, "Y"));
        // Remote inserts "r" at 0.
        match c.on_server_op(1, "b", 1, &Op::insert_at(0, "r")).unwrap() {
            ServerOpOutcome::Apply(op) => assert_eq!(op, Op::insert_at(0, "r")),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.resend().unwrap().op, Op::insert_at(2, "X"));
        assert_eq!(c.resend().unwrap().base_rev, 1);
        let next = c.on_ack(1, 2).unwrap().unwrap();
        assert_eq!(next.op, Op::insert_at(4, "Y"));
        assert!(c.on_server_op(5, "b", 2, &Op::noop()).is_err());
    }

    #[test]
    fn own_op_in_catch_up_is_an_ack() {
        let mut c = OtClient::new("me", 3);
        let out = c.local(Op::insert_at(0, "x")).unwrap();
        assert_eq!(
            c.on_server_op(4, "me", out.seq, &out.op).unwrap(),
            ServerOpOutcome::OwnAck(None)
        );
        assert!(c.is_synchronized());
        assert_eq!(c.rev(), 4);
        assert_eq!(
            c.on_server_op(4, "me", out.seq, &out.op).unwrap(),
            ServerOpOutcome::Stale
        );
    }
}
