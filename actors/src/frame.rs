//! Outbound frames. A message is encoded once per format and the bytes are shared by every
//! recipient (`Bytes` and `ByteString` clone by reference count).

use bytes::Bytes;
use bytestring::ByteString;
use coedit_protocol::wire::{encode_json, encode_msgpack};
use coedit_protocol::ServerMsg;

/// The encoding a session answers in: the frame type the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Binary frames, MessagePack.
    MsgPack,
    /// Text frames, JSON.
    Json,
}

/// One frame to write to a WebSocket.
#[derive(Clone, Debug)]
pub enum Frame {
    /// A binary frame.
    Binary(Bytes),
    /// A text frame.
    Text(ByteString),
    /// Close the connection with this code and reason.
    Close(u16, String),
}

impl Frame {
    /// Encodes `msg` in `format`.
    pub fn encode(msg: &ServerMsg, format: Format) -> Frame {
        match format {
            Format::MsgPack => Frame::Binary(Bytes::from(encode_msgpack(msg))),
            Format::Json => Frame::Text(ByteString::from(encode_json(msg))),
        }
    }
}

/// Encodes one message lazily, at most once per format, for many recipients.
pub struct SharedFrame<'a> {
    msg: &'a ServerMsg,
    bin: Option<Frame>,
    text: Option<Frame>,
}

impl<'a> SharedFrame<'a> {
    /// Wraps `msg`; nothing is encoded yet.
    pub fn new(msg: &'a ServerMsg) -> Self {
        SharedFrame {
            msg,
            bin: None,
            text: None,
        }
    }

    /// The frame in `format`, encoding it on first use.
    pub fn get(&mut self, format: Format) -> Frame {
        let msg = self.msg;
        let slot = match format {
            Format::MsgPack => &mut self.bin,
            Format::Json => &mut self.text,
        };
        slot.get_or_insert_with(|| Frame::encode(msg, format))
            .clone()
    }
}
