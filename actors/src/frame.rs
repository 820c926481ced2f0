//! Outbound frames. A fan-out round is encoded once per format and the bytes are shared by
//! every recipient (`Bytes` and `ByteString` clone by reference count).

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
    /// Payload bytes (0 for a close).
    pub fn len(&self) -> usize {
        match self {
            Frame::Binary(b) => b.len(),
            Frame::Text(t) => t.len(),
            Frame::Close(..) => 0,
        }
    }

    /// True for a frame without payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes `msg` in `format`.
    pub fn encode(msg: &ServerMsg, format: Format) -> Frame {
        match format {
            Format::MsgPack => Frame::Binary(Bytes::from(encode_msgpack(msg))),
            Format::Json => Frame::Text(ByteString::from(encode_json(msg))),
        }
    }
}
