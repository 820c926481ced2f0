//! The gate in front of the WebSocket decoder: reads frame headers as bytes arrive and stops the
//! connection the moment a header announces a frame larger than allowed, instead of buffering
//! the frame whole first (actix-http's decoder checks the size only once the frame is
//! complete, so one header announcing 2^40 bytes made the server buffer whatever followed).
//! The first data frame of a connection, which must be `hello`, is held to a much smaller
//! limit ([`FIRST_FRAME_MAX_BYTES`]), so a connection that has not authenticated cannot make
//! the server hold more than that.
//!
//! Pure parsing ([`FrameScanner`]) plus a `Stream` adapter ([`GatedPayload`]) over the request
//! payload; the session shares a [`GateControl`] with it to learn why the stream stopped.
//!
//! Invariants:
//! - A frame is refused from its header alone: at most 14 header bytes are needed, so no more
//!   than one network chunk past the header is ever held for an oversized frame.
//! - Once the gate has refused, the stream yields one error and then ends.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// Largest first data frame of a connection (the `hello`; the largest token fits easily).
pub const FIRST_FRAME_MAX_BYTES: usize = 16 * 1024;

/// Why the gate stopped a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateVerdict {
    /// Still open.
    Open,
    /// A frame header announced more than the frame limit.
    FrameTooLarge,
}

/// Shared between a session and its gate.
#[derive(Debug)]
pub struct GateControl {
    max_frame: usize,
    verdict: AtomicU8,
}

impl GateControl {
    /// A gate that allows frames of `max_frame` bytes (the first data frame: at most
    /// [`FIRST_FRAME_MAX_BYTES`]).
    pub fn new(max_frame: usize) -> Arc<Self> {
        Arc::new(GateControl {
            max_frame,
            verdict: AtomicU8::new(0),
        })
    }

    /// The frame limit.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Why the gate stopped the stream, if it did.
    pub fn verdict(&self) -> GateVerdict {
        match self.verdict.load(Ordering::Relaxed) {
            0 => GateVerdict::Open,
            _ => GateVerdict::FrameTooLarge,
        }
    }

    fn stop(&self) {
        self.verdict.store(1, Ordering::Relaxed);
    }
}

/// Longest WebSocket frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Where the scanner is in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScanState {
    /// Collecting header bytes (`have` of them so far).
    Header { have: usize },
    /// Inside a payload, `left` bytes to go.
    Payload { left: u64 },
}

/// Follows frame boundaries in a client-to-server WebSocket byte stream, reporting the payload
/// length announced by each header. Malformed headers are left for the real decoder to refuse.
#[derive(Clone, Debug)]
pub struct FrameScanner {
    state: ScanState,
    header: [u8; MAX_HEADER],
}

impl Default for FrameScanner {
    fn default() -> Self {
        FrameScanner {
            state: ScanState::Header { have: 0 },
            header: [0; MAX_HEADER],
        }
    }
}

/// Opcode of text frames.
const OP_TEXT: u8 = 1;
/// Opcode of binary frames.
const OP_BINARY: u8 = 2;

/// One frame header seen by the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The frame's opcode.
    pub opcode: u8,
    /// The payload length it announces.
    pub len: u64,
}

impl Header {
    /// A text or binary frame (a message, as opposed to control and continuation frames).
    pub fn is_data(&self) -> bool {
        self.opcode == OP_TEXT || self.opcode == OP_BINARY
    }
}

/// Header length and payload length once enough header bytes are known.
fn header_info(h: &[u8]) -> Option<(usize, u64)> {
    if h.len() < 2 {
        return None;
    }
    let masked = h[1] & 0x80 != 0;
    let mask_len = if masked { 4 } else { 0 };
    let (ext, len) = match h[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let need = 2 + ext + mask_len;
    if h.len() < need {
        return None;
    }
    let len = match (len, ext) {
        (Some(n), _) => n,
        (None, 2) => u64::from(u16::from_be_bytes([h[2], h[3]])),
        (None, _) => u64::from_be_bytes(h[2..10].try_into().ok()?),
    };
    Some((need, len))
}

impl FrameScanner {
    /// Scans `chunk`; calls `seen` with every header completed in it, in order.
    pub fn scan(&mut self, mut chunk: &[u8], mut seen: impl FnMut(Header)) {
        while !chunk.is_empty() {
            match self.state {
                ScanState::Payload { left } => {
                    let n = (chunk.len() as u64).min(left);
                    chunk = &chunk[n as usize..];
                    self.state = if left == n {
                        ScanState::Header { have: 0 }
                    } else {
                        ScanState::Payload { left: left - n }
                    };
                }
                ScanState::Header { have } => {
                    // Take one byte at a time until the header length is known, then the rest.
                    self.header[have] = chunk[0];
                    chunk = &chunk[1..];
                    let have = have + 1;
                    match header_info(&self.header[..have]) {
                        Some((need, len)) if need == have => {
                            seen(Header {
                                opcode: self.header[0] & 0x0f,
                                len,
                            });
                            self.state = if len == 0 {
                                ScanState::Header { have: 0 }
                            } else {
                                ScanState::Payload { left: len }
                            };
                        }
                        _ => self.state = ScanState::Header { have },
                    }
                }
            }
        }
    }
}

/// The request payload, gated. See the module documentation.
pub struct GatedPayload<S> {
    inner: S,
    scanner: FrameScanner,
    control: Arc<GateControl>,
    /// The first data frame's header was seen.
    first_seen: bool,
    done: bool,
}

impl<S> GatedPayload<S> {
    /// Gates `inner` under `control`.
    pub fn new(inner: S, control: Arc<GateControl>) -> Self {
        GatedPayload {
            inner,
            scanner: FrameScanner::default(),
            control,
            first_seen: false,
            done: false,
        }
    }

    /// Whether the headers in `chunk` stay within the limits.
    fn admits(&mut self, chunk: &[u8]) -> bool {
        let max = self.control.max_frame() as u64;
        let first_max = max.min(FIRST_FRAME_MAX_BYTES as u64);
        let mut ok = true;
        let first_seen = &mut self.first_seen;
        self.scanner.scan(chunk, |h| {
            let limit = if h.is_data() && !*first_seen {
                *first_seen = true;
                first_max
            } else {
                max
            };
            ok &= h.len <= limit;
        });
        ok
    }
}

impl<S> Stream for GatedPayload<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if this.admits(&chunk) {
                    return Poll::Ready(Some(Ok(chunk)));
                }
                this.control.stop();
                this.done = true;
                Poll::Ready(Some(Err(PayloadError::Overflow)))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header (binary) for a payload of `len` bytes.
    fn header(len: u64) -> Vec<u8> {
        header_op(0x2, len)
    }

    fn header_op(opcode: u8, len: u64) -> Vec<u8> {
        let mut h = vec![0x80 | opcode];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= u64::from(u16::MAX) {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = header(len as u64);
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    fn headers(s: &mut FrameScanner, chunk: &[u8]) -> Vec<u64> {
        let mut v = Vec::new();
        s.scan(chunk, |h| v.push(h.len));
        v
    }

    #[test]
    fn every_header_is_found_whatever_the_chunking() {
        let sizes = [0usize, 1, 125, 126, 127, 65535, 65536, 70000];
        let stream: Vec<u8> = sizes.iter().flat_map(|&n| frame(n)).collect();
        for chunk in [1usize, 2, 3, 7, 13, 14, 100, 4096, stream.len()] {
            let mut s = FrameScanner::default();
            let mut seen = Vec::new();
            for piece in stream.chunks(chunk) {
                seen.extend(headers(&mut s, piece));
            }
            let want: Vec<u64> = sizes.iter().map(|&n| n as u64).collect();
            assert_eq!(seen, want, "chunk {chunk}");
            assert_eq!(s.state, ScanState::Header { have: 0 }, "chunk {chunk}");
        }
    }

    #[test]
    fn a_huge_header_is_seen_before_any_payload() {
        let mut s = FrameScanner::default();
        assert_eq!(headers(&mut s, &header(1 << 40)), vec![1 << 40]);
        // Split inside the extended length.
        let h = header(1 << 40);
        let mut s = FrameScanner::default();
        assert!(headers(&mut s, &h[..5]).is_empty());
        assert_eq!(headers(&mut s, &h[5..]), vec![1 << 40]);
    }

    fn run(chunks: Vec<Vec<u8>>, control: Arc<GateControl>) -> (usize, GateVerdict) {
        let inner = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, PayloadError>(Bytes::from(c))),
        );
        let mut gated = GatedPayload::new(inner, control.clone());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut passed = 0;
        loop {
            match Pin::new(&mut gated).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(b))) => passed += b.len(),
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                    return (passed, control.verdict())
                }
                Poll::Pending => unreachable!(),
            }
        }
    }

    #[test]
    fn the_gate_stops_oversized_frames_at_their_header() {
        const MAX: usize = 1024 * 1024;
        // A first frame announcing 2^40 bytes stops the stream before its payload passes.
        let mut chunks = vec![header(1 << 40)];
        chunks.extend(std::iter::repeat_n(vec![0u8; 4096], 100));
        assert_eq!(
            run(chunks, GateControl::new(MAX)),
            (0, GateVerdict::FrameTooLarge)
        );
        // The first data frame (the hello) is held to 16 KiB...
        let big_first = vec![frame(FIRST_FRAME_MAX_BYTES + 1)];
        assert_eq!(
            run(big_first, GateControl::new(MAX)).1,
            GateVerdict::FrameTooLarge
        );
        // ... a ping before it does not count as the first data frame ...
        let mut ping_then_big = header_op(0x9, 4);
        ping_then_big.extend_from_slice(&[0; 4]);
        ping_then_big.extend(frame(FIRST_FRAME_MAX_BYTES + 1));
        assert_eq!(
            run(vec![ping_then_big], GateControl::new(MAX)).1,
            GateVerdict::FrameTooLarge
        );
        // ... and later frames to the full limit, even pipelined in one chunk with the first.
        let mut pipelined = frame(100);
        pipelined.extend(frame(MAX));
        let n = pipelined.len();
        assert_eq!(
            run(vec![pipelined], GateControl::new(MAX)),
            (n, GateVerdict::Open)
        );
        let mut over = frame(100);
        over.extend(header((MAX + 1) as u64));
        assert_eq!(
            run(vec![over], GateControl::new(MAX)).1,
            GateVerdict::FrameTooLarge
        );
    }
}
