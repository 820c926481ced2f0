//! The two Yjs wire protocols, as binary WebSocket frames of lib0-encoded messages:
//!
//! - **y-websocket** (`GET /yjs/{doc}`): one document per connection; a frame is one or more
//!   messages `[type varuint][payload]`: `0` sync (`0` step 1 with a state vector, `1` step 2
//!   and `2` update with an update, each a varuint8array), `1` awareness (varuint8array),
//!   `2` auth (server to client: `0` permission denied + reason), `3` query awareness.
//! - **Hocuspocus** (`GET /hocuspocus`, `@hocuspocus/provider` 2.x to 4.x): many documents per
//!   connection; a frame is `[address varstring][type varuint][payload]`, the address being
//!   the document name (or `name \0 session` for session-aware providers, answered under the
//!   same address). Types: `0` sync and `4` sync reply (as above), `1` awareness, `2` auth
//!   (`0` token + varstring, then an optional provider version; answered `2` authenticated +
//!   scope or `1` permission denied + reason), `3` query awareness, `5` stateless
//!   (varstring), `7` close, `8` sync status (server to client: varint 1 applied, 0 refused),
//!   and the connection-level `9` ping / `10` pong (a frame of that one byte, no address).
//!
//! Invariants: decoding borrows from the frame and never panics; anything that does not parse
//! is a [`YjsError`]; a state vector is decoded here (so a bad one is refused at the boundary),
//! updates are checked by the document.

use std::sync::Arc;

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::updates::decoder::Decode;
use yrs::StateVector;

use super::{guarded, YjsError};

/// Message type: sync.
pub const MSG_SYNC: u64 = 0;
/// Message type: awareness.
pub const MSG_AWARENESS: u64 = 1;
/// Message type: auth.
pub const MSG_AUTH: u64 = 2;
/// Message type: query awareness.
pub const MSG_QUERY_AWARENESS: u64 = 3;
/// Hocuspocus: a sync message sent in reply (treated as sync).
pub const HP_SYNC_REPLY: u64 = 4;
/// Hocuspocus: a stateless message (an application string, not stored).
pub const HP_STATELESS: u64 = 5;
/// Hocuspocus: close this document's channel.
pub const HP_CLOSE: u64 = 7;
/// Hocuspocus: whether an update was applied (server to client).
pub const HP_SYNC_STATUS: u64 = 8;
/// Hocuspocus: connection-level ping.
pub const HP_PING: u8 = 9;
/// Hocuspocus: connection-level pong.
pub const HP_PONG: u8 = 10;
/// Sync step 1: a state vector.
pub const SYNC_STEP1: u64 = 0;
/// Sync step 2: the update the other side lacks.
pub const SYNC_STEP2: u64 = 1;
/// Sync update.
pub const SYNC_UPDATE: u64 = 2;
/// Hocuspocus auth: a token (client to server).
const HP_AUTH_TOKEN: u64 = 0;
/// Hocuspocus auth: permission denied (server to client).
const HP_AUTH_DENIED: u64 = 1;
/// Hocuspocus auth: authenticated with a scope (server to client).
const HP_AUTH_OK: u64 = 2;
/// y-protocols auth: permission denied (server to client).
const Y_AUTH_DENIED: u64 = 0;
/// Longest Hocuspocus address (document name, optionally `\0` and a session id), in bytes.
pub const MAX_ADDRESS_BYTES: usize = 256;
/// Longest token accepted in a Hocuspocus auth message, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A sync message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncMsg<'a> {
    /// Step 1: the sender's state vector; answer with step 2.
    Step1(StateVector),
    /// Step 2: what the receiver lacked (an update).
    Step2(&'a [u8]),
    /// An update.
    Update(&'a [u8]),
}

/// One message from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum YMessage<'a> {
    /// Sync protocol.
    Sync(SyncMsg<'a>),
    /// An awareness update (encoded; validated by [`super::AwarenessTable`]).
    Awareness(&'a [u8]),
    /// Asks for every awareness state.
    QueryAwareness,
    /// Hocuspocus: the token for this document's channel.
    Auth {
        /// The token (possibly empty).
        token: &'a str,
    },
    /// Hocuspocus: an application message (not stored, not relayed).
    Stateless(&'a str),
    /// Hocuspocus: the provider closes this document's channel.
    Close,
}

/// One Hocuspocus frame from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HpInbound<'a> {
    /// A message for one document channel.
    Doc {
        /// The address (document name, or `name \0 session`).
        address: &'a str,
        /// The message.
        msg: YMessage<'a>,
    },
    /// Connection-level ping: answer [`HP_PONG`].
    Ping,
    /// Connection-level pong.
    Pong,
}

/// The document name in a Hocuspocus address (`name` or `name \0 session`).
pub fn address_doc(address: &str) -> &str {
    address.split('\0').next().unwrap_or(address)
}

fn malformed(e: impl std::fmt::Display) -> YjsError {
    YjsError::Malformed(e.to_string())
}

fn read_u64(c: &mut Cursor<'_>) -> Result<u64, YjsError> {
    c.read_var::<u64>().map_err(malformed)
}

/// A varuint8array borrowed from the frame (yrs' own reader ties it to the cursor).
pub(super) fn read_buf<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8], YjsError> {
    let len = c.read_var::<u64>().map_err(malformed)?;
    let buf: &'a [u8] = c.buf;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| c.next.checked_add(l))
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| malformed(format!("a length of {len} past the end of the frame")))?;
    let out = &buf[c.next..end];
    c.next = end;
    Ok(out)
}

/// A varstring borrowed from the frame.
pub(super) fn read_str<'a>(c: &mut Cursor<'a>) -> Result<&'a str, YjsError> {
    std::str::from_utf8(read_buf(c)?).map_err(malformed)
}

fn read_sync<'a>(c: &mut Cursor<'a>) -> Result<SyncMsg<'a>, YjsError> {
    match read_u64(c)? {
        SYNC_STEP1 => {
            let buf = read_buf(c)?;
            // Each entry: client and clock, a byte each at least.
            super::check_leading_count(buf, 2)
                .map_err(|e| malformed(format!("state vector: {e}")))?;
            let sv = guarded(|| StateVector::decode_v1(buf))
                .ok_or_else(|| malformed("state vector"))?
                .map_err(|e| malformed(format!("state vector: {e}")))?;
            Ok(SyncMsg::Step1(sv))
        }
        SYNC_STEP2 => Ok(SyncMsg::Step2(read_buf(c)?)),
        SYNC_UPDATE => Ok(SyncMsg::Update(read_buf(c)?)),
        t => Err(malformed(format!("unknown sync message type {t}"))),
    }
}

/// Reads one message of type `t` (already read) shared by both protocols.
fn read_common<'a>(t: u64, c: &mut Cursor<'a>) -> Result<YMessage<'a>, YjsError> {
    match t {
        MSG_SYNC => Ok(YMessage::Sync(read_sync(c)?)),
        MSG_AWARENESS => Ok(YMessage::Awareness(read_buf(c)?)),
        MSG_QUERY_AWARENESS => Ok(YMessage::QueryAwareness),
        t => Err(YjsError::UnknownType(t)),
    }
}

/// Decodes a y-websocket frame: one or more messages.
pub fn decode_ywebsocket(frame: &[u8]) -> Result<Vec<YMessage<'_>>, YjsError> {
    let mut c = Cursor::new(frame);
    let mut out = Vec::with_capacity(1);
    while c.has_content() {
        let t = read_u64(&mut c)?;
        out.push(read_common(t, &mut c)?);
    }
    if out.is_empty() {
        return Err(malformed("empty frame"));
    }
    Ok(out)
}

/// Decodes a Hocuspocus frame.
pub fn decode_hocuspocus(frame: &[u8]) -> Result<HpInbound<'_>, YjsError> {
    match frame {
        [HP_PING] => return Ok(HpInbound::Ping),
        [HP_PONG] => return Ok(HpInbound::Pong),
        _ => {}
    }
    let mut c = Cursor::new(frame);
    let address = read_str(&mut c)?;
    if address.is_empty() || address.len() > MAX_ADDRESS_BYTES {
        return Err(malformed(format!(
            "address must be 1 to {MAX_ADDRESS_BYTES} bytes"
        )));
    }
    let msg = match read_u64(&mut c)? {
        HP_SYNC_REPLY => YMessage::Sync(read_sync(&mut c)?),
        MSG_AUTH => {
            let sub = read_u64(&mut c)?;
            if sub != HP_AUTH_TOKEN {
                return Err(malformed(format!("auth message type {sub} from a client")));
            }
            let token = read_str(&mut c)?;
            if token.len() > MAX_TOKEN_BYTES {
                return Err(malformed(format!(
                    "token longer than {MAX_TOKEN_BYTES} bytes"
                )));
            }
            // An optional provider version follows; it is not needed.
            YMessage::Auth { token }
        }
        HP_STATELESS => YMessage::Stateless(read_str(&mut c)?),
        HP_CLOSE => YMessage::Close,
        t => read_common(t, &mut c)?,
    };
    Ok(HpInbound::Doc { address, msg })
}

/// How a subscriber's messages are framed: y-websocket (one document per connection), or
/// Hocuspocus under an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// y-websocket.
    YWebsocket,
    /// Hocuspocus, messages prefixed with this address.
    Hocuspocus(Arc<str>),
}

impl Framing {
    fn start(&self, t: u64, extra: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(extra + 16);
        if let Framing::Hocuspocus(a) = self {
            v.write_string(a);
        }
        v.write_var(t);
        v
    }

    fn sync(&self, step: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = self.start(MSG_SYNC, payload.len() + 8);
        v.write_var(step);
        v.write_buf(payload);
        v
    }

    /// Sync step 1 carrying the server's state vector (encoded v1).
    pub fn sync_step1(&self, state_vector: &[u8]) -> Vec<u8> {
        self.sync(SYNC_STEP1, state_vector)
    }

    /// Sync step 2 carrying what the client lacks.
    pub fn sync_step2(&self, update: &[u8]) -> Vec<u8> {
        self.sync(SYNC_STEP2, update)
    }

    /// An update.
    pub fn update(&self, update: &[u8]) -> Vec<u8> {
        self.sync(SYNC_UPDATE, update)
    }

    /// An awareness update.
    pub fn awareness(&self, update: &[u8]) -> Vec<u8> {
        let mut v = self.start(MSG_AWARENESS, update.len() + 4);
        v.write_buf(update);
        v
    }

    /// Hocuspocus only: whether the client's update was applied (and durable). `None` for
    /// y-websocket, which has no such message.
    pub fn sync_status(&self, applied: bool) -> Option<Vec<u8>> {
        match self {
            Framing::YWebsocket => None,
            Framing::Hocuspocus(_) => {
                let mut v = self.start(HP_SYNC_STATUS, 1);
                v.write_var(u64::from(applied));
                Some(v)
            }
        }
    }

    /// Hocuspocus only: the channel is authenticated with scope `read-write` or `readonly`.
    pub fn authenticated(&self, readonly: bool) -> Vec<u8> {
        let mut v = self.start(MSG_AUTH, 12);
        v.write_var(HP_AUTH_OK);
        v.write_string(if readonly { "readonly" } else { "read-write" });
        v
    }

    /// Permission denied with a reason (Hocuspocus: the channel is refused; y-websocket: the
    /// client is told, e.g. that its updates are refused).
    pub fn permission_denied(&self, reason: &str) -> Vec<u8> {
        let mut v = self.start(MSG_AUTH, reason.len() + 4);
        v.write_var(match self {
            Framing::YWebsocket => Y_AUTH_DENIED,
            Framing::Hocuspocus(_) => HP_AUTH_DENIED,
        });
        v.write_string(reason);
        v
    }

    /// Hocuspocus only: a stateless message (type 5) carrying `payload`. `None` for
    /// y-websocket.
    pub fn stateless(&self, payload: &str) -> Option<Vec<u8>> {
        match self {
            Framing::YWebsocket => None,
            Framing::Hocuspocus(_) => {
                let mut v = self.start(HP_STATELESS, payload.len() + 4);
                v.write_string(payload);
                Some(v)
            }
        }
    }

    /// The answer to a refused update (`update`) or awareness update, `error` being the JSON
    /// error `{"error": {"code", "msg"}}`: Hocuspocus `SyncStatus(0)` (for an update only, so
    /// statuses stay one per update) then a stateless message with the error; y-websocket a
    /// permission-denied message with the error (its only message that carries a reason).
    pub fn refusal(&self, error: &str, update: bool) -> Vec<Vec<u8>> {
        match self {
            Framing::YWebsocket => vec![self.permission_denied(error)],
            Framing::Hocuspocus(_) => {
                let status = self.sync_status(false).filter(|_| update);
                status.into_iter().chain(self.stateless(error)).collect()
            }
        }
    }

    /// Hocuspocus only: the server closes this document's channel with a reason.
    pub fn close(&self, reason: &str) -> Option<Vec<u8>> {
        match self {
            Framing::YWebsocket => None,
            Framing::Hocuspocus(_) => {
                let mut v = self.start(HP_CLOSE, reason.len() + 4);
                v.write_string(reason);
                Some(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::encoder::Encode;
    use yrs::{Doc, ReadTxn, Text, Transact};

    fn hp(address: &str, t: u64, rest: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.write_string(address);
        v.write_var(t);
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn ywebsocket_round_trip() {
        let doc = Doc::new();
        let t = doc.get_or_insert_text("t");
        t.push(&mut doc.transact_mut(), "hi");
        let sv = doc.transact().state_vector().encode_v1();
        let f = Framing::YWebsocket;
        let frame = [f.sync_step1(&sv), f.update(b"\x00\x00"), f.awareness(b"x")].concat();
        let msgs = decode_ywebsocket(&frame).unwrap();
        assert_eq!(msgs.len(), 3);
        assert!(matches!(&msgs[0], YMessage::Sync(SyncMsg::Step1(s)) if s.encode_v1() == sv));
        assert_eq!(msgs[1], YMessage::Sync(SyncMsg::Update(b"\x00\x00")));
        assert_eq!(msgs[2], YMessage::Awareness(b"x"));
        assert_eq!(f.sync_status(true), None);
        assert_eq!(f.permission_denied("no"), vec![2, 0, 2, b'n', b'o']);
    }

    #[test]
    fn hocuspocus_frames() {
        let mut auth = Vec::new();
        auth.write_var(0u64);
        auth.write_string("tok");
        auth.write_string("4.8.0");
        assert_eq!(
            decode_hocuspocus(&hp("doc", MSG_AUTH, &auth)).unwrap(),
            HpInbound::Doc {
                address: "doc",
                msg: YMessage::Auth { token: "tok" }
            }
        );
        assert_eq!(decode_hocuspocus(&[HP_PONG]).unwrap(), HpInbound::Pong);
        assert_eq!(decode_hocuspocus(&[HP_PING]).unwrap(), HpInbound::Ping);
        assert_eq!(
            decode_hocuspocus(&hp("d\0s1", HP_CLOSE, &[])).unwrap(),
            HpInbound::Doc {
                address: "d\0s1",
                msg: YMessage::Close
            }
        );
        assert_eq!(address_doc("d\0s1"), "d");
        let f = Framing::Hocuspocus("d".into());
        assert_eq!(f.sync_status(true).unwrap(), vec![1, b'd', 8, 1]);
        assert_eq!(
            f.refusal("e", true),
            vec![vec![1, b'd', 8, 0], vec![1, b'd', 5, 1, b'e']]
        );
        assert_eq!(f.refusal("e", false), vec![vec![1, b'd', 5, 1, b'e']]);
        assert_eq!(
            Framing::YWebsocket.refusal("e", true),
            vec![vec![2, 0, 1, b'e']]
        );
        assert_eq!(f.authenticated(true)[..4], [1, b'd', 2, 2]);
        // What the server sends decodes as what a client would send (same shapes).
        let frame = f.update(b"u");
        let Ok(HpInbound::Doc { msg, .. }) = decode_hocuspocus(&frame) else {
            panic!()
        };
        assert_eq!(msg, YMessage::Sync(SyncMsg::Update(b"u")));
    }

    #[test]
    fn refusals_are_typed() {
        assert!(matches!(
            decode_ywebsocket(&[]),
            Err(YjsError::Malformed(_))
        ));
        assert_eq!(decode_ywebsocket(&[42]), Err(YjsError::UnknownType(42)));
        assert!(matches!(
            decode_ywebsocket(&[0, 9]),
            Err(YjsError::Malformed(_))
        ));
        // A truncated buffer, a bad state vector.
        assert!(decode_ywebsocket(&[0, 2, 200]).is_err());
        assert!(decode_ywebsocket(&[0, 0, 3, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_hocuspocus(&hp("d", 6, b"\x01x")).is_err());
        assert!(decode_hocuspocus(&hp("", 0, &[0, 0])).is_err());
        assert!(decode_hocuspocus(&hp(&"x".repeat(300), 3, &[])).is_err());
        let mut bad_auth = Vec::new();
        bad_auth.write_var(2u64);
        bad_auth.write_string("read-write");
        assert!(decode_hocuspocus(&hp("d", MSG_AUTH, &bad_auth)).is_err());
        // Every prefix of a valid frame is refused or decodes, never panics.
        let f = Framing::Hocuspocus("doc".into());
        let frame = f.sync_step2(&[1, 2, 3, 4, 5]);
        for n in 0..frame.len() {
            let _ = decode_hocuspocus(&frame[..n]);
            let _ = decode_ywebsocket(&frame[..n]);
        }
    }
}
