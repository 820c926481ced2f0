//! The messages nodes send each other over core NATS (`docs/CLUSTER.md`, "How an op
//! travels"), MessagePack-encoded with named fields. Version 1: a node refuses a message of
//! another version (a rolling upgrade across a wire change stops routing, it never
//! misreads).
//!
//! Invariants:
//! - Messages of one session to an owner carry consecutive `seq` numbers from 1, and so do
//!   the frames an owner sends one remote session: core NATS delivers at most once, so either
//!   side treats a gap as a broken session (closed with 1012; the client resumes by revision).
//! - Ops travel as their JSON (the wire format clients use), never re-encoded by hand.

use serde::{Deserialize, Serialize};

use coedit_protocol::{Access, ErrorCode, PeerUser, Selection};

use crate::frame::Frame;

/// The version of these messages.
pub const WIRE_VERSION: u8 = 1;

/// A request to the owner of a document, on `{prefix}.doc.{hex id}.req`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToOwner {
    /// [`WIRE_VERSION`].
    pub v: u8,
    /// The sending node.
    pub node: String,
    /// What it asks.
    pub msg: OwnerMsg,
}

/// What a node asks an owner.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum OwnerMsg {
    /// Subscribe a session of the sending node (answered with a [`Reply`]).
    Join {
        /// The session's route on the sending node (one per session and document).
        session: u64,
        /// Its message number (1 for the join).
        seq: u64,
        /// Its client id.
        client: String,
        /// The revision it has.
        rev: Option<u64>,
        /// JSON (true) or MessagePack frames.
        json: bool,
        /// Its role and subject.
        access: Access,
        /// Its presence identity.
        user: Option<PeerUser>,
    },
    /// Unsubscribe it.
    Leave {
        /// The session.
        session: u64,
        /// Its message number.
        seq: u64,
    },
    /// An op of a subscribed session (its outcome comes back in the session's frames).
    Submit {
        /// The session.
        session: u64,
        /// Its message number.
        seq: u64,
        /// The author's client id.
        client: String,
        /// The author's sequence number.
        op_seq: u64,
        /// Base revision.
        base_rev: u64,
        /// The op, as JSON.
        op: String,
        /// The author's timestamp.
        t: Option<u64>,
        /// Characters of the base document the op reaches.
        reach: usize,
        /// The token subject, for the audit record.
        subject: Option<String>,
    },
    /// A session's selection.
    Presence {
        /// The session.
        session: u64,
        /// Its message number.
        seq: u64,
        /// The revision the selection refers to.
        rev: u64,
        /// The selection.
        sel: Vec<Selection>,
    },
    /// Subscribe a session of the sending node to a Yjs document (`seq` 1, answered with a
    /// [`Reply`]), or (a later `seq`) ask again for its sync step 1 and the awareness states
    /// (a resync after a transient refusal; not answered).
    YJoin {
        /// The session's route on the sending node.
        session: u64,
        /// Its message number.
        seq: u64,
        /// Hocuspocus: the document address its messages carry; y-websocket: none.
        hocuspocus: Option<String>,
        /// Whether its updates are refused (viewer).
        readonly: bool,
    },
    /// A Yjs session's sync step 1 (its state vector, v1 encoding).
    YSync {
        /// The session.
        session: u64,
        /// Its message number.
        seq: u64,
        /// The state vector.
        #[serde(with = "serde_bytes")]
        sv: Vec<u8>,
    },
    /// A Yjs session's update (answered with a [`Reply`]: `Ok`, or the refusal the owner
    /// also told the client in its frames).
    YUpdate {
        /// The session.
        session: u64,
        /// Its message number.
        seq: u64,
        /// Its client id.
        client: String,
        /// The update (Yjs v1).
        #[serde(with = "serde_bytes")]
        update: Vec<u8>,
        /// The token subject, for the audit record.
        subject: Option<String>,
    },
    /// A Yjs session's node refused one of its updates (rate limit): told to the client after
    /// the statuses of its earlier updates.
    YRefuse {
        /// The session.
        session: u64,
        /// Its message number.
        seq: u64,
        /// Why.
        code: ErrorCode,
        /// What to tell the client.
        msg: String,
    },
    /// A Yjs session's awareness update.
    YAwareness {
        /// The session.
        session: u64,
        /// Its message number.
        seq: u64,
        /// The awareness update.
        #[serde(with = "serde_bytes")]
        update: Vec<u8>,
    },
    /// A Yjs session asks for every awareness state.
    YQueryAwareness {
        /// The session.
        session: u64,
        /// Its message number.
        seq: u64,
    },
    /// The sending node still has these sessions in the document (answered with a
    /// [`Reply`]; sessions the owner has not heard of for a while are dropped).
    Ping {
        /// Its sessions subscribed through the owner.
        sessions: Vec<u64>,
    },
}

/// An owner's answer to `Join` or `Ping`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    /// Done.
    Ok,
    /// Refused.
    Err {
        /// The error code.
        code: ErrorCode,
        /// Its message.
        msg: String,
    },
    /// This node does not (or no longer) order the document.
    NotOwner,
    /// The answer to a `Ping` naming sessions this owner does not have (it dropped them: a
    /// gap, or their node was silent too long): the node closes them; they resume.
    Unknown {
        /// Their routes.
        sessions: Vec<u64>,
    },
}

/// Frames for one session of a node, on `{prefix}.node.{node}.f`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToSession {
    /// [`WIRE_VERSION`].
    pub v: u8,
    /// The route on the receiving node (a session's join of one document).
    pub session: u64,
    /// Consecutive from 1 per session and owner.
    pub seq: u64,
    /// The frames, in order.
    pub frames: Vec<WireFrame>,
}

/// One frame as it travels between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WireFrame {
    /// A binary (MessagePack) frame.
    Binary(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A text (JSON) frame.
    Text(String),
    /// Close with this code and reason.
    Close(u16, String),
}

impl From<&Frame> for WireFrame {
    fn from(f: &Frame) -> Self {
        match f {
            Frame::Binary(b) => WireFrame::Binary(b.to_vec()),
            Frame::Text(t) => WireFrame::Text(t.to_string()),
            Frame::Close(c, r) => WireFrame::Close(*c, r.clone()),
        }
    }
}

impl From<WireFrame> for Frame {
    fn from(f: WireFrame) -> Self {
        match f {
            WireFrame::Binary(b) => Frame::Binary(b.into()),
            WireFrame::Text(t) => Frame::Text(t.into()),
            WireFrame::Close(c, r) => Frame::Close(c, r),
        }
    }
}

/// Encodes a message.
pub fn encode<T: Serialize>(m: &T) -> Vec<u8> {
    // Serializing these types to a Vec cannot fail (no maps with non-string keys, no I/O).
    rmp_serde::to_vec_named(m).unwrap_or_default()
}

/// Decodes a message.
pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Option<T> {
    rmp_serde::from_slice(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = ToOwner {
            v: WIRE_VERSION,
            node: "n1".into(),
            msg: OwnerMsg::Submit {
                session: 7,
                seq: 3,
                client: "c".into(),
                op_seq: 9,
                base_rev: 4,
                op: r#"[2,"x"]"#.into(),
                t: Some(5),
                reach: 2,
                subject: None,
            },
        };
        let back: ToOwner = decode(&encode(&m)).expect("decodes");
        assert!(
            matches!(back.msg, OwnerMsg::Submit { op_seq: 9, ref op, .. } if op == r#"[2,"x"]"#)
        );
        let f = ToSession {
            v: WIRE_VERSION,
            session: 1,
            seq: 2,
            frames: vec![
                WireFrame::from(&Frame::Binary(vec![0, 1, 255].into())),
                WireFrame::from(&Frame::Close(1012, "moved".into())),
            ],
        };
        let back: ToSession = decode(&encode(&f)).expect("decodes");
        assert!(matches!(&back.frames[0], WireFrame::Binary(b) if b == &[0, 1, 255]));
        let r: Reply = decode(&encode(&Reply::Err {
            code: ErrorCode::ReadOnly,
            msg: "no".into(),
        }))
        .expect("decodes");
        assert!(matches!(
            r,
            Reply::Err {
                code: ErrorCode::ReadOnly,
                ..
            }
        ));
        let y = ToOwner {
            v: WIRE_VERSION,
            node: "n2".into(),
            msg: OwnerMsg::YUpdate {
                session: 3,
                seq: 2,
                client: "y".into(),
                update: vec![1, 0, 0],
                subject: Some("alice".into()),
            },
        };
        let back: ToOwner = decode(&encode(&y)).expect("decodes");
        assert!(matches!(back.msg, OwnerMsg::YUpdate { ref update, .. } if update == &[1, 0, 0]));
        assert!(decode::<ToOwner>(b"\xc1garbage").is_none());
    }
}
