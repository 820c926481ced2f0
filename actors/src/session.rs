//! The WebSocket session actor: one per connection. The only file that uses actix-web-actors,
//! so that moving to actix-ws touches nothing else.
//!
//! Invariants:
//! - Each frame is decoded once, at this boundary, into a validated `ClientMsg`; everything
//!   past it is typed. The session answers in the frame type of the request (binary →
//!   MessagePack, text → JSON); a document's stream uses the frame type of the `join`.
//! - Nothing but `hello` and `ping` is served before `hello`.
//! - Bad input gets an `error` message and the session survives, except where the protocol
//!   cannot go on (unsupported version, oversized or malformed frames, bad UTF-8), which close
//!   the connection with the close code from `errors::close_code_for`.
//! - A join is completed (document opened and subscribed) before any later frame of the
//!   session is handled, so ops never overtake their join.
//! - The outbound mailbox is bounded (`outbound_capacity`); document actors disconnect a
//!   session whose mailbox is full.
//! - A session that sends nothing (not even a pong) for `client_timeout` is closed.
//! - On stop, the session leaves every document it joined.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use coedit_protocol::wire::{validate_client_id, MAX_FRAME_BYTES};
use coedit_protocol::{
    ClientId, ClientMsg, ErrorCode, OpMsg, ProtocolError, ServerMsg, PROTOCOL_VERSION,
};
use rand::distr::{Alphanumeric, SampleString};
use tracing::{debug, info_span};

use crate::document::{DocActor, Join, Leave, SetPresence, Submit};
use crate::errors::{
    close_code_for, ActorError, CLOSE_INVALID_PAYLOAD, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
};
use crate::frame::{Format, Frame};
use crate::registry::{OpenDoc, Registry};
use crate::SessionId;

/// Default interval between server pings.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default silence after which a client is considered gone.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound of a session's outbound mailbox, in frames.
pub const DEFAULT_OUTBOUND_CAPACITY: usize = 1024;
/// Default maximum number of documents one session may join.
pub const DEFAULT_MAX_DOCS_PER_SESSION: usize = 64;
/// Length of server-assigned client ids.
const CLIENT_ID_LEN: usize = 16;
/// Attempts to open a document whose actor is unloading at the moment of the join.
pub const JOIN_ATTEMPTS: u32 = 5;
/// Pause before the n-th retry is `n ×` this (the unloading actor is flushing).
pub const JOIN_RETRY_PAUSE: Duration = Duration::from_millis(20);

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Settings of every session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Interval between server pings.
    pub heartbeat_interval: Duration,
    /// Silence after which the client is considered gone.
    pub client_timeout: Duration,
    /// Bound of the outbound mailbox, in frames.
    pub outbound_capacity: usize,
    /// Maximum number of documents joined at once.
    pub max_docs: usize,
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            outbound_capacity: DEFAULT_OUTBOUND_CAPACITY,
            max_docs: DEFAULT_MAX_DOCS_PER_SESSION,
            max_frame_bytes: MAX_FRAME_BYTES,
        }
    }
}

/// Upgrades an HTTP request to a WebSocket served by a new [`WsSession`].
pub fn start_session(
    req: &HttpRequest,
    stream: web::Payload,
    registry: Addr<Registry>,
    config: SessionConfig,
) -> Result<HttpResponse, actix_web::Error> {
    let max = config.max_frame_bytes;
    ws::WsResponseBuilder::new(WsSession::new(registry, config), req, stream)
        .frame_size(max)
        .start()
}

/// One WebSocket session. See the module documentation.
pub struct WsSession {
    /// Process-unique id.
    id: SessionId,
    /// The client id, once `hello` arrived.
    client: Option<ClientId>,
    /// Documents joined, with their actors.
    docs: HashMap<String, Addr<DocActor>>,
    /// When the client last sent anything.
    last_seen: Instant,
    registry: Addr<Registry>,
    config: SessionConfig,
    span: tracing::Span,
}

impl WsSession {
    /// A session that opens documents through `registry`.
    pub fn new(registry: Addr<Registry>, config: SessionConfig) -> Self {
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        WsSession {
            id,
            client: None,
            docs: HashMap::new(),
            last_seen: Instant::now(),
            registry,
            config,
            span: info_span!("session", id),
        }
    }

    fn send(ctx: &mut ws::WebsocketContext<Self>, msg: &ServerMsg, format: Format) {
        Self::write(ctx, Frame::encode(msg, format));
    }

    fn write(ctx: &mut ws::WebsocketContext<Self>, frame: Frame) {
        match frame {
            Frame::Binary(b) => ctx.binary(b),
            Frame::Text(t) => ctx.text(t),
            Frame::Close(code, reason) => Self::close(ctx, code, reason),
        }
    }

    fn close(ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: impl Into<String>) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(reason.into()),
        }));
        ctx.stop();
    }

    /// Reports an error; closes the connection if the protocol cannot go on.
    fn fail(
        ctx: &mut ws::WebsocketContext<Self>,
        format: Format,
        code: ErrorCode,
        msg: String,
        doc: Option<String>,
        seq: Option<u64>,
    ) {
        let close = close_code_for(code);
        let reason = msg.chars().take(120).collect::<String>();
        Self::send(
            ctx,
            &ServerMsg::Error {
                code,
                msg,
                doc,
                seq,
            },
            format,
        );
        if let Some(close) = close {
            Self::close(ctx, close, reason);
        }
    }

    /// Handles one decoded frame.
    fn on_frame(
        &mut self,
        decoded: Result<ClientMsg, ProtocolError>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => return Self::fail(ctx, format, e.code(), e.to_string(), None, None),
        };
        let client = match (&msg, &self.client) {
            (ClientMsg::Ping { t }, _) => {
                return Self::send(ctx, &ServerMsg::Pong { t: *t }, format);
            }
            (ClientMsg::Hello { client, .. }, None) => {
                return self.on_hello(client.clone(), format, ctx);
            }
            (ClientMsg::Hello { .. }, Some(_)) => {
                let e = "hello was already received on this connection".to_string();
                return Self::fail(ctx, format, ErrorCode::BadMessage, e, None, None);
            }
            (_, None) => {
                let e = "send hello first".to_string();
                return Self::fail(ctx, format, ErrorCode::HelloRequired, e, None, None);
            }
            (_, Some(c)) => c.clone(),
        };
        match msg {
            ClientMsg::Join { doc, rev } => self.on_join(client, doc, rev, format, ctx),
            ClientMsg::Op(m) => self.on_op(client, m, format, ctx),
            ClientMsg::Presence { doc, rev, sel } => match self.docs.get(&doc) {
                Some(addr) => addr.do_send(SetPresence {
                    session: self.id,
                    rev,
                    sel,
                }),
                None => Self::not_joined(ctx, format, doc, None),
            },
            ClientMsg::Leave { doc } => match self.docs.remove(&doc) {
                Some(addr) => addr.do_send(Leave { session: self.id }),
                None => Self::not_joined(ctx, format, doc, None),
            },
            ClientMsg::Hello { .. } | ClientMsg::Ping { .. } => {}
        }
    }

    fn not_joined(
        ctx: &mut ws::WebsocketContext<Self>,
        format: Format,
        doc: String,
        seq: Option<u64>,
    ) {
        let msg = format!("document {doc:?} is not joined on this connection");
        Self::fail(ctx, format, ErrorCode::NotJoined, msg, Some(doc), seq);
    }

    fn on_hello(
        &mut self,
        client: Option<String>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let client = match client {
            Some(c) => c,
            None => Alphanumeric.sample_string(&mut rand::rng(), CLIENT_ID_LEN),
        };
        if let Err(e) = validate_client_id(&client) {
            return Self::fail(ctx, format, e.code(), e.to_string(), None, None);
        }
        debug!(parent: &self.span, client = %client, "hello");
        self.client = Some(ClientId::from(client.as_str()));
        let welcome = ServerMsg::Welcome {
            v: PROTOCOL_VERSION,
            client,
        };
        Self::send(ctx, &welcome, format);
    }

    fn on_join(
        &mut self,
        client: ClientId,
        doc: String,
        rev: Option<u64>,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.docs.contains_key(&doc) && self.docs.len() >= self.config.max_docs {
            let msg = format!(
                "a session may join at most {} documents",
                self.config.max_docs
            );
            return Self::fail(
                ctx,
                format,
                ErrorCode::TooManyDocuments,
                msg,
                Some(doc),
                None,
            );
        }
        let registry = self.registry.clone();
        let session = self.id;
        let out = ctx.address().recipient();
        let id = doc.clone();
        let join = async move {
            let mut last = None;
            for attempt in 0..JOIN_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(JOIN_RETRY_PAUSE * attempt).await;
                }
                let addr = registry.send(OpenDoc { id: id.clone() }).await??;
                let join = Join {
                    session,
                    client: client.clone(),
                    rev,
                    format,
                    out: out.clone(),
                };
                match addr.send(join).await {
                    Ok(Ok(())) => return Ok(addr),
                    Ok(Err(e @ ActorError::Closing(_))) => last = Some(e),
                    Err(e) => last = Some(ActorError::Mailbox(e)),
                    Ok(Err(e)) => return Err(e),
                }
            }
            Err(last.unwrap_or(ActorError::Closing(id)))
        };
        ctx.wait(join.into_actor(self).map(move |res, act, ctx| match res {
            Ok(addr) => {
                act.docs.insert(doc, addr);
            }
            Err(e) => Self::fail(ctx, format, e.code(), e.to_string(), Some(doc), None),
        }));
    }

    fn on_op(
        &mut self,
        client: ClientId,
        m: OpMsg,
        format: Format,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(addr) = self.docs.get(&m.doc) else {
            return Self::not_joined(ctx, format, m.doc, Some(m.seq));
        };
        match m.checked_op() {
            Ok(op) => addr.do_send(Submit {
                session: Some(self.id),
                client,
                seq: m.seq,
                base_rev: m.rev,
                op,
                t: m.t,
            }),
            Err(e) => Self::fail(
                ctx,
                format,
                e.code(),
                e.to_string(),
                Some(m.doc),
                Some(m.seq),
            ),
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.config.outbound_capacity);
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| {
            if act.last_seen.elapsed() > act.config.client_timeout {
                debug!(parent: &act.span, "heartbeat timeout");
                Self::close(ctx, CLOSE_POLICY, "heartbeat timeout");
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, addr) in self.docs.drain() {
            addr.do_send(Leave { session: self.id });
        }
        debug!(parent: &self.span, "session closed");
    }
}

/// A frame for this session from a document actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outbound(pub Frame);

impl Handler<Outbound> for WsSession {
    type Result = ();

    /// Writes the frame (or closes, for a close frame).
    fn handle(&mut self, m: Outbound, ctx: &mut Self::Context) {
        Self::write(ctx, m.0);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    /// Decodes each data frame once and dispatches it; answers pings; closes on protocol errors.
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match item {
            Ok(ws::Message::Binary(b)) => {
                self.on_frame(ClientMsg::from_msgpack(&b), Format::MsgPack, ctx)
            }
            Ok(ws::Message::Text(t)) => self.on_frame(ClientMsg::from_json(&t), Format::Json, ctx),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Continuation(_)) => {
                Self::close(ctx, CLOSE_PROTOCOL, "fragmented messages are not supported")
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => {
                let msg = format!("frame exceeds {} bytes", self.config.max_frame_bytes);
                Self::close(ctx, CLOSE_TOO_BIG, msg);
            }
            Err(ws::ProtocolError::Io(e)) => {
                Self::close(ctx, CLOSE_INVALID_PAYLOAD, format!("invalid frame: {e}"))
            }
            Err(e) => Self::close(ctx, CLOSE_PROTOCOL, e.to_string()),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        Self::close(ctx, CLOSE_NORMAL, "connection closed");
    }
}
