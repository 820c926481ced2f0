//! Wire messages between clients and the server, and their two encodings.
//!
//! Binary WebSocket frames carry MessagePack (rmp-serde, structs as maps with field names);
//! text frames carry JSON. Both encode the same structure: an externally tagged enum, i.e. a
//! one-key map `{"kind": {fields…}}`. `PROTOCOL.md` documents every message, field and code.
//!
//! Invariants:
//! - Decoding never panics: garbage, truncated, oversized or mistyped input is a
//!   [`ProtocolError`].
//! - A decoded [`ClientMsg`] has been validated ([`ClientMsg::validate`]): document and client
//!   ids are well-formed and the version is supported. Ops in client messages are carried as
//!   raw components and validated by [`OpMsg::checked_op`] so that a bad op gets its own code.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::access::{Access, DocRole, PeerUser};
use crate::error::{ErrorCode, ProtocolError};
use crate::op::{Component, Op, Selection};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest client frame the server decodes, in bytes.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Largest server frame a client decodes: a snapshot holds the whole document (at most
/// `max_chars` characters of up to 4 UTF-8 bytes each).
pub const MAX_SERVER_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Approximate encoded size one `ops` message carries: the server splits a longer run of ops
/// into consecutive messages (an op larger than this goes alone).
pub const OPS_MESSAGE_BUDGET: usize = 256 * 1024;
/// Longest document id, in bytes.
pub const MAX_DOC_ID_LEN: usize = 128;
/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Most components in one op.
pub const MAX_OP_COMPONENTS: usize = 16 * 1024;
/// Most selection ranges in one presence message.
pub const MAX_SELECTIONS: usize = 64;

/// Checks a document id: 1 to [`MAX_DOC_ID_LEN`] bytes of `[A-Za-z0-9._~-]`, not `.` or `..`.
/// The one place document ids are validated, for WebSocket and HTTP alike.
pub fn validate_doc_id(id: &str) -> Result<(), ProtocolError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-');
    if id.is_empty() || id.len() > MAX_DOC_ID_LEN {
        return Err(ProtocolError::InvalidDocId(format!(
            "must be 1 to {MAX_DOC_ID_LEN} bytes, got {}",
            id.len()
        )));
    }
    if !id.bytes().all(ok_char) || id == "." || id == ".." {
        return Err(ProtocolError::InvalidDocId(format!(
            "{id:?} has characters outside [A-Za-z0-9._~-]"
        )));
    }
    Ok(())
}

/// Separates an optional tenant from a document name in a reference: `name` or
/// `tenant:name`, each part a valid document id ([`validate_doc_id`]).
pub fn split_doc_ref(r: &str) -> Result<(Option<&str>, &str), ProtocolError> {
    match r.split_once(':') {
        Some((tenant, name)) => {
            validate_doc_id(tenant)?;
            validate_doc_id(name)?;
            Ok((Some(tenant), name))
        }
        None => {
            validate_doc_id(r)?;
            Ok((None, r))
        }
    }
}

/// Checks a document reference: a document id, optionally qualified by a tenant
/// (`tenant:name`, see [`split_doc_ref`]).
pub fn validate_doc_ref(r: &str) -> Result<(), ProtocolError> {
    split_doc_ref(r).map(|_| ())
}

/// Checks a client id: 1 to [`MAX_CLIENT_ID_LEN`] bytes of `[A-Za-z0-9_-]`.
pub fn validate_client_id(id: &str) -> Result<(), ProtocolError> {
    if id.is_empty()
        || id.len() > MAX_CLIENT_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ProtocolError::InvalidClientId(format!(
            "{:?} must be 1 to {MAX_CLIENT_ID_LEN} bytes of [A-Za-z0-9_-]",
            id.chars().take(MAX_CLIENT_ID_LEN + 8).collect::<String>()
        )));
    }
    Ok(())
}

/// An op submitted by a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpMsg {
    /// Document id.
    pub doc: String,
    /// Revision the op is based on.
    pub rev: u64,
    /// The client's sequence number for this op (starts at 1, increases by one per op).
    pub seq: u64,
    /// The op's components, validated by [`OpMsg::checked_op`].
    pub op: Vec<Component>,
    /// Opaque client timestamp, echoed to the other clients with the op (latency measurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<u64>,
}

impl OpMsg {
    /// Builds the message from a validated op.
    pub fn new(doc: impl Into<String>, rev: u64, seq: u64, op: &Op) -> Self {
        OpMsg {
            doc: doc.into(),
            rev,
            seq,
            op: op.components().to_vec(),
            t: None,
        }
    }

    /// The op, validated.
    pub fn checked_op(&self) -> Result<Op, ProtocolError> {
        checked_op(&self.op)
    }

    /// The characters of the base document the op reaches (see [`op_reach`]).
    pub fn reach(&self) -> usize {
        op_reach(&self.op)
    }
}

/// How many characters of its base document an op as received reaches: its retains and
/// deletes added up, a trailing retain included (which the canonical [`Op`] drops). A document
/// shorter than this does not fit the op, even if the canonical op fits it: `[99999]` on an
/// empty document is refused, not accepted as an empty revision.
pub fn op_reach(components: &[Component]) -> usize {
    components.iter().fold(0usize, |acc, c| match c {
        Component::Retain(n) | Component::Delete(n) => acc.saturating_add(*n),
        Component::Insert(_) => acc,
    })
}

/// An op as received (WebSocket or REST): at most [`MAX_OP_COMPONENTS`] components, then
/// [`Op::from_components`].
pub fn checked_op(components: &[Component]) -> Result<Op, ProtocolError> {
    if components.len() > MAX_OP_COMPONENTS {
        return Err(ProtocolError::OpTooLarge {
            components: components.len(),
            max: MAX_OP_COMPONENTS,
        });
    }
    Ok(Op::from_components(components.iter().cloned())?)
}

/// Messages a client sends. Unknown fields are refused (`1001`, naming the field), as over
/// REST: a misspelt field is never silently ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// First message of a session.
    Hello {
        /// Protocol version the client speaks.
        v: u32,
        /// The client's id from an earlier session (for exactly-once resends); the server
        /// assigns one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// Access token, when the server requires one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Display name and colour shown with the client's caret (the token's `name` and
        /// `color` claims take precedence).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<PeerUser>,
    },
    /// Presents a new access token on a live session (before the current one expires): the
    /// server checks it (same subject and tenant), answers `authed` and goes on with it.
    Auth {
        /// The new token.
        token: String,
    },
    /// Subscribe to a document. With `rev`, the server sends the ops after it (or a snapshot if
    /// they are no longer retained); without, a snapshot.
    Join {
        /// Document id.
        doc: String,
        /// Revision the client already has.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rev: Option<u64>,
    },
    /// Submit an op.
    Op(OpMsg),
    /// The client's selections in a document (empty: no caret shown).
    Presence {
        /// Document id.
        doc: String,
        /// Revision the selections refer to.
        rev: u64,
        /// `[anchor, head]` pairs in characters.
        sel: Vec<Selection>,
    },
    /// Unsubscribe from a document.
    Leave {
        /// Document id.
        doc: String,
    },
    /// Liveness check; the server answers `pong` with the same `t`.
    Ping {
        /// Opaque value echoed back.
        #[serde(default)]
        t: u64,
    },
}

impl ClientMsg {
    /// The document a message is about, if any.
    pub fn doc(&self) -> Option<&str> {
        match self {
            ClientMsg::Join { doc, .. }
            | ClientMsg::Presence { doc, .. }
            | ClientMsg::Leave { doc }
            | ClientMsg::Op(OpMsg { doc, .. }) => Some(doc),
            ClientMsg::Hello { .. } | ClientMsg::Auth { .. } | ClientMsg::Ping { .. } => None,
        }
    }

    /// Checks what decoding alone cannot: ids, version, sizes.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if let Some(doc) = self.doc() {
            validate_doc_ref(doc)?;
        }
        match self {
            ClientMsg::Hello {
                v, client, user, ..
            } => {
                if let Some(u) = user {
                    u.validate()?;
                }
                if *v != PROTOCOL_VERSION {
                    return Err(ProtocolError::UnsupportedVersion {
                        got: *v,
                        supported: PROTOCOL_VERSION,
                    });
                }
                if let Some(c) = client {
                    validate_client_id(c)?;
                }
            }
            ClientMsg::Presence { sel, .. } if sel.len() > MAX_SELECTIONS => {
                return Err(ProtocolError::Decode(format!(
                    "presence has {} selections, above the limit of {MAX_SELECTIONS}",
                    sel.len()
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Decodes and validates a binary (MessagePack) frame.
    pub fn from_msgpack(bytes: &[u8]) -> Result<ClientMsg, ProtocolError> {
        let msg: ClientMsg = decode_msgpack(bytes)?;
        msg.validate()?;
        Ok(msg)
    }

    /// Decodes and validates a text (JSON) frame.
    pub fn from_json(text: &str) -> Result<ClientMsg, ProtocolError> {
        let msg: ClientMsg = decode_json(text)?;
        msg.validate()?;
        Ok(msg)
    }
}

/// An op applied by the server, as sent to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteOp {
    /// The revision this op produced.
    pub rev: u64,
    /// Author's client id.
    pub client: String,
    /// Author's sequence number.
    pub seq: u64,
    /// The op as applied.
    pub op: Op,
    /// The author's opaque timestamp, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<u64>,
}

/// One participant's presence in a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPresence {
    /// The participant's client id.
    pub client: String,
    /// Selections, transformed to the document's current revision; empty when it left.
    pub sel: Vec<Selection>,
    /// The participant's display name and colour, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<PeerUser>,
}

/// Messages the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMsg {
    /// Answer to `hello`.
    Welcome {
        /// Protocol version of the server.
        v: u32,
        /// The client id to use (the one sent, or a new one).
        client: String,
        /// The token's subject (with authentication).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
        /// The token's expiry, Unix seconds (with authentication): present a new token with
        /// `auth` before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exp: Option<u64>,
        /// The server's clock, Unix seconds, when it sent this (with `exp`): the token's
        /// lifetime left is `exp - now`, whatever the client's own clock says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now: Option<u64>,
    },
    /// Answer to `auth`: the new token is in force.
    Authed {
        /// The token's subject.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
        /// The new expiry, Unix seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exp: Option<u64>,
        /// The server's clock, Unix seconds, when it sent this (see `welcome`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now: Option<u64>,
        /// The role the new token gives on each joined document (a document it no longer
        /// grants was left, with an `error` 5005 naming it).
        #[serde(default)]
        roles: Vec<DocRole>,
    },
    /// The whole document at a revision (answer to a join without a usable revision).
    Snapshot {
        /// Document id.
        doc: String,
        /// Revision of `text`.
        rev: u64,
        /// The full text.
        text: String,
        /// The session's role (and the token's subject): present when this snapshot answers
        /// a join.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access: Option<Access>,
    },
    /// Ops in revision order: a join's catch-up (possibly empty) or remote ops.
    Ops {
        /// Document id.
        doc: String,
        /// The ops, consecutive revisions.
        ops: Vec<RemoteOp>,
        /// The session's role (and the token's subject): present on the first `ops` of a
        /// join's answer, absent on fan-out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access: Option<Access>,
    },
    /// The client's op `seq` was applied (durably) as revision `rev`.
    Ack {
        /// Document id.
        doc: String,
        /// The client's sequence number.
        seq: u64,
        /// Revision the op produced.
        rev: u64,
    },
    /// Presence changes in a document.
    Presence {
        /// Document id.
        doc: String,
        /// Revision the selections refer to.
        rev: u64,
        /// Changed participants.
        peers: Vec<PeerPresence>,
    },
    /// A request was refused; nothing was changed.
    Error {
        /// Stable error code (see `PROTOCOL.md`).
        code: ErrorCode,
        /// Human-readable explanation.
        msg: String,
        /// The document concerned, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doc: Option<String>,
        /// The refused op's sequence number, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// Answer to `ping`.
    Pong {
        /// The value from the ping.
        t: u64,
    },
}

impl ServerMsg {
    /// Decodes a binary (MessagePack) frame (client side, up to [`MAX_SERVER_FRAME_BYTES`]).
    pub fn from_msgpack(bytes: &[u8]) -> Result<ServerMsg, ProtocolError> {
        decode_msgpack_within(bytes, MAX_SERVER_FRAME_BYTES)
    }

    /// Decodes a text (JSON) frame (client side, up to [`MAX_SERVER_FRAME_BYTES`]).
    pub fn from_json(text: &str) -> Result<ServerMsg, ProtocolError> {
        check_size(text.len(), MAX_SERVER_FRAME_BYTES)?;
        serde_json::from_str(text).map_err(|e| ProtocolError::Decode(e.to_string()))
    }

    /// An error message for `code`.
    pub fn error(code: ErrorCode, msg: impl Into<String>) -> ServerMsg {
        ServerMsg::Error {
            code,
            msg: msg.into(),
            doc: None,
            seq: None,
        }
    }
}

/// Encodes a message as MessagePack (structs as maps).
pub fn encode_msgpack<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these types to a Vec cannot fail: every field is a plain value.
    rmp_serde::to_vec_named(msg).unwrap_or_default()
}

/// Encodes a message as JSON.
pub fn encode_json<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).unwrap_or_default()
}

/// Decodes MessagePack, enforcing [`MAX_FRAME_BYTES`] and consuming the whole input.
pub fn decode_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    decode_msgpack_within(bytes, MAX_FRAME_BYTES)
}

fn decode_msgpack_within<T: DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<T, ProtocolError> {
    check_size(bytes.len(), max)?;
    let mut de = rmp_serde::Deserializer::new(bytes);
    let msg = T::deserialize(&mut de).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let rest = de.into_inner().len();
    if rest != 0 {
        return Err(ProtocolError::Decode(format!(
            "{rest} trailing bytes after the message"
        )));
    }
    Ok(msg)
}

/// Decodes JSON, enforcing [`MAX_FRAME_BYTES`].
pub fn decode_json<T: DeserializeOwned>(text: &str) -> Result<T, ProtocolError> {
    check_size(text.len(), MAX_FRAME_BYTES)?;
    serde_json::from_str(text).map_err(|e| ProtocolError::Decode(e.to_string()))
}

fn check_size(len: usize, max: usize) -> Result<(), ProtocolError> {
    if len > max {
        return Err(ProtocolError::FrameTooLarge { len, max });
    }
    Ok(())
}

/// An upper estimate of a remote op's encoded size.
fn approx_size(r: &RemoteOp) -> usize {
    let comps: usize =
        r.op.components()
            .iter()
            .map(|c| match c {
                Component::Insert(s) => s.len() + 5,
                Component::Retain(_) | Component::Delete(_) => 12,
            })
            .sum();
    64 + r.client.len() + comps
}

/// Splits a run of ops into consecutive `ops` messages of about `budget` encoded bytes each
/// (an op larger than the budget goes alone). Always returns at least one (maybe empty) run,
/// so a join's answer is always sent.
pub fn chunk_ops(ops: Vec<RemoteOp>, budget: usize) -> Vec<Vec<RemoteOp>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for r in ops {
        let s = approx_size(&r);
        if !current.is_empty() && size + s > budget {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += s;
        current.push(r);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Access, DocRole, PeerUser};

    fn hello() -> ClientMsg {
        ClientMsg::Hello {
            v: PROTOCOL_VERSION,
            client: None,
            token: None,
            user: None,
        }
    }

    #[test]
    fn json_shape_is_documented_shape() {
        let m = ClientMsg::Op(OpMsg::new("notes", 4, 1, &Op::insert_at(3, "hi")));
        assert_eq!(
            encode_json(&m),
            r#"{"op":{"doc":"notes","rev":4,"seq":1,"op":[3,"hi"]}}"#
        );
        let e = ServerMsg::error(ErrorCode::OpDoesNotFit, "x");
        assert_eq!(encode_json(&e), r#"{"error":{"code":2002,"msg":"x"}}"#);
        assert_eq!(
            ClientMsg::from_json(r#"{"join":{"doc":"notes"}}"#).unwrap(),
            ClientMsg::Join {
                doc: "notes".into(),
                rev: None
            }
        );
    }

    #[test]
    fn msgpack_round_trip_all_messages() {
        let client_msgs = vec![
            hello(),
            ClientMsg::Join {
                doc: "d".into(),
                rev: Some(7),
            },
            ClientMsg::Op(OpMsg::new("d", 1, 2, &Op::splice(1, 2, "😅"))),
            ClientMsg::Presence {
                doc: "d".into(),
                rev: 3,
                sel: vec![(1, 4)],
            },
            ClientMsg::Leave { doc: "d".into() },
            ClientMsg::Ping { t: 9 },
            ClientMsg::Auth {
                token: "h.c.s".into(),
            },
            ClientMsg::Hello {
                v: PROTOCOL_VERSION,
                client: None,
                token: None,
                user: Some(PeerUser {
                    name: Some("Ann".into()),
                    color: None,
                }),
            },
        ];
        for m in client_msgs {
            let bytes = encode_msgpack(&m);
            assert_eq!(ClientMsg::from_msgpack(&bytes).unwrap(), m);
            assert_eq!(ClientMsg::from_json(&encode_json(&m)).unwrap(), m);
        }
        let server_msgs = vec![
            ServerMsg::Welcome {
                v: 1,
                client: "c1".into(),
                sub: None,
                exp: None,
                now: None,
            },
            ServerMsg::Welcome {
                v: 1,
                client: "c1".into(),
                sub: Some("alice".into()),
                exp: Some(1_900_000_000),
                now: Some(1_899_999_000),
            },
            ServerMsg::Snapshot {
                doc: "d".into(),
                rev: 3,
                text: "héllo".into(),
                access: None,
            },
            ServerMsg::Snapshot {
                doc: "d".into(),
                rev: 3,
                text: "héllo".into(),
                access: Some(Access {
                    role: crate::Role::Viewer,
                    sub: Some("alice".into()),
                }),
            },
            ServerMsg::Authed {
                sub: Some("alice".into()),
                exp: Some(1_900_000_600),
                now: Some(1_900_000_000),
                roles: vec![DocRole {
                    doc: "d".into(),
                    role: crate::Role::Owner,
                }],
            },
            ServerMsg::Ops {
                doc: "d".into(),
                ops: vec![RemoteOp {
                    rev: 4,
                    client: "c2".into(),
                    seq: 1,
                    op: Op::delete_at(2, 1),
                    t: Some(5),
                }],
                access: None,
            },
            ServerMsg::Ack {
                doc: "d".into(),
                seq: 1,
                rev: 5,
            },
            ServerMsg::Presence {
                doc: "d".into(),
                rev: 5,
                peers: vec![
                    PeerPresence {
                        client: "c2".into(),
                        sel: vec![(0, 0)],
                        user: None,
                    },
                    PeerPresence {
                        client: "c3".into(),
                        sel: vec![(1, 2)],
                        user: Some(PeerUser {
                            name: Some("Ann".into()),
                            color: Some("#336699".into()),
                        }),
                    },
                ],
            },
            ServerMsg::error(ErrorCode::RateLimited, "slow down"),
            ServerMsg::Pong { t: 1 },
        ];
        for m in server_msgs {
            assert_eq!(ServerMsg::from_msgpack(&encode_msgpack(&m)).unwrap(), m);
            assert_eq!(ServerMsg::from_json(&encode_json(&m)).unwrap(), m);
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let cases: Vec<&[u8]> = vec![
            b"",
            b"\xc1",
            b"\x81\xa2op",
            b"\x81\xa5hello\x81\xa1v\xcb",
            b"\x92\x01\x02",
            b"\x81\xa7unknown\x80",
        ];
        for c in cases {
            assert!(
                matches!(ClientMsg::from_msgpack(c), Err(ProtocolError::Decode(_))),
                "{c:?}"
            );
        }
        let mut ok = encode_msgpack(&hello());
        ok.push(0);
        assert!(ClientMsg::from_msgpack(&ok).is_err());
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            ClientMsg::from_msgpack(&big),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        for j in [
            r#"{"op":{"doc":"d","rev":"1","seq":1,"op":[]}}"#,
            r#"{"op":{"doc":"d","rev":-1,"seq":1,"op":[]}}"#,
            r#"{"op":{"doc":"d","rev":1,"seq":1,"op":[-2]}}"#,
            r#"{"hello":{"v":1},"ping":{}}"#,
            r#"{"nope":{}}"#,
            r#"[1,2]"#,
        ] {
            assert!(ClientMsg::from_json(j).is_err(), "{j}");
        }
    }

    #[test]
    fn validation_codes() {
        let bad_doc = ClientMsg::from_json(r#"{"join":{"doc":"../etc"}}"#).unwrap_err();
        assert_eq!(bad_doc.code(), ErrorCode::InvalidDocId);
        let long = format!(
            r#"{{"join":{{"doc":"{}"}}}}"#,
            "a".repeat(MAX_DOC_ID_LEN + 1)
        );
        assert_eq!(
            ClientMsg::from_json(&long).unwrap_err().code(),
            ErrorCode::InvalidDocId
        );
        let v2 = ClientMsg::from_json(r#"{"hello":{"v":2}}"#).unwrap_err();
        assert_eq!(v2.code(), ErrorCode::UnsupportedVersion);
        let cid = ClientMsg::from_json(r#"{"hello":{"v":1,"client":"a b"}}"#).unwrap_err();
        assert_eq!(cid.code(), ErrorCode::InvalidClientId);
        let m = ClientMsg::from_json(r#"{"op":{"doc":"d","rev":1,"seq":1,"op":[0,"x"]}}"#).unwrap();
        let ClientMsg::Op(o) = m else { panic!() };
        assert_eq!(o.checked_op().unwrap_err().code(), ErrorCode::InvalidOp);
        let mut big = o.clone();
        big.op = vec![Component::Insert("x".into()); MAX_OP_COMPONENTS + 1];
        assert_eq!(big.checked_op().unwrap_err().code(), ErrorCode::OpTooLarge);
    }

    #[test]
    fn error_codes_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::try_from(c.as_u16()), Ok(c));
        }
        assert!(ErrorCode::try_from(1).is_err());
    }
}

#[cfg(test)]
mod documented_examples {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The worked examples in `PROTOCOL.md`, byte for byte.
    #[test]
    fn protocol_md_examples() {
        let op = ClientMsg::Op(OpMsg::new(
            "notes",
            4,
            1,
            &Op::from_json(r#"[3,"hi",{"d":2}]"#).unwrap(),
        ));
        assert_eq!(
            hex(&encode_msgpack(&op)),
            "81 a2 6f 70 84 a3 64 6f 63 a5 6e 6f 74 65 73 a3 72 65 76 04 a3 73 65 71 01 \
             a2 6f 70 93 03 a2 68 69 81 a1 64 02"
        );
        let ack = ServerMsg::Ack {
            doc: "notes".into(),
            seq: 1,
            rev: 5,
        };
        assert_eq!(
            hex(&encode_msgpack(&ack)),
            "81 a3 61 63 6b 83 a3 64 6f 63 a5 6e 6f 74 65 73 a3 73 65 71 01 a3 72 65 76 05"
        );
        let err = ServerMsg::error(ErrorCode::OpDoesNotFit, "x");
        assert_eq!(
            hex(&encode_msgpack(&err)),
            "81 a5 65 72 72 6f 72 82 a4 63 6f 64 65 cd 07 d2 a3 6d 73 67 a1 78"
        );
    }

    #[test]
    fn ops_are_chunked_by_encoded_size() {
        let op = |rev: u64, n: usize| RemoteOp {
            rev,
            client: "c".into(),
            seq: rev,
            op: Op::insert_at(0, &"x".repeat(n)),
            t: None,
        };
        assert_eq!(chunk_ops(Vec::new(), 100), vec![Vec::<RemoteOp>::new()]);
        let runs = chunk_ops((1..=10).map(|r| op(r, 1000)).collect(), 3000);
        assert_eq!(
            runs.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 2, 2, 2]
        );
        let revs: Vec<u64> = runs.iter().flatten().map(|r| r.rev).collect();
        assert_eq!(revs, (1..=10).collect::<Vec<_>>());
        for run in &runs {
            let msg = ServerMsg::Ops {
                doc: "d".into(),
                ops: run.clone(),
                access: None,
            };
            assert!(encode_msgpack(&msg).len() <= 3000);
        }
        // An op bigger than the budget goes alone.
        let runs = chunk_ops(vec![op(1, 10), op(2, 5000), op(3, 10)], 3000);
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
    }

    /// One rule for unknown fields, over WebSocket as over REST: refused, naming the field.
    #[test]
    fn unknown_fields_in_client_messages_are_refused() {
        for text in [
            r#"{"hello":{"v":1,"tokn":"x"}}"#,
            r#"{"join":{"doc":"d","revision":3}}"#,
            r#"{"presence":{"doc":"d","rev":0,"sel":[],"color":"red"}}"#,
            r#"{"leave":{"doc":"d","now":true}}"#,
            r#"{"ping":{"t":1,"x":2}}"#,
            r#"{"auth":{"token":"a","sub":"b"}}"#,
            r#"{"hello":{"v":1,"user":{"name":"a","avatar":"b"}}}"#,
        ] {
            let e = ClientMsg::from_json(text).unwrap_err();
            assert_eq!(e.code(), ErrorCode::BadMessage, "{text}");
            assert!(e.to_string().contains("unknown field"), "{text}: {e}");
        }
        let e = ClientMsg::from_json(r#"{"hello":{"v":1,"user":{"color":"red"}}}"#).unwrap_err();
        assert!(e.to_string().contains("#rrggbb"), "{e}");
    }
}
