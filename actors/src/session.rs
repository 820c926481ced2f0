//! The WebSocket session actor: one per connection. The only module that uses
//! actix-web-actors, so that moving to actix-ws touches nothing else (with `session/auth.rs`:
//! `hello`, `auth`, the expiry timer and each request's authorization, which are methods of
//! the same actor; `session/text.rs`, text-document joins and ops; and `session/yjs.rs`, the
//! session of the two Yjs protocols).
//!
//! Invariants:
//! - Each frame is decoded once, at this boundary, into a validated `ClientMsg`; everything
//!   past it is typed. The session answers in the frame type of the request (binary →
//!   MessagePack, text → JSON); a document's stream uses the frame type of the `join`.
//! - Nothing but `hello` and `ping` is served before `hello`; with authentication on, `hello`
//!   must carry a valid token, and every join, op and presence is checked against its claims
//!   (expiry, tenant, role) before it reaches a document. Refusals and sessions are audited.
//! - Bad input gets an `error` message and the session survives, except where the protocol
//!   cannot go on (unsupported version, oversized or malformed frames, bad UTF-8), which close
//!   the connection with the close code from `errors::close_code_for`.
//! - A join is completed (document opened and subscribed) before any later frame of the
//!   session is handled, so ops never overtake their join.
//! - The outbound queue is bounded in messages (`outbound_capacity`, the mailbox: each an
//!   answer or a fan-out round of a few frames) and in bytes
//!   (`max_outbound_bytes`, counted by [`Outbox`]); document actors disconnect a session whose
//!   queue is over either bound, so what the server holds for a client that stops reading is
//!   bounded whatever the size of the frames.
//! - A session that sends nothing (not even a pong) for `client_timeout` is closed.
//! - A frame header announcing more than the frame limit closes the connection at once (1009),
//!   before any of the frame is held ([`crate::ws_gate`]). Before it is authenticated, a
//!   connection gets a small budget: a first frame (the `hello`) of 16 KiB at most,
//!   [`PRE_AUTH_MAX_BYTES`] of messages handled before `hello` succeeds, and
//!   `hello_timeout` to complete it; beyond either it is closed with 1008.
//! - A session's token is enforced for as long as it is open: when it expires (plus the clock
//!   skew) the session gets `error` 5003 and is closed with 1008, whether or not it sends
//!   anything.
//! - [`CloseAll`] closes every session at once with one code (shutdown: 1012; storage failure:
//!   1011), joined to documents or not.
//! - On stop, the session leaves every document it joined.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use coedit_protocol::wire::{split_doc_ref, validate_client_id, MAX_FRAME_BYTES};
use coedit_protocol::{
    Access, ClientId, ClientMsg, DocRole, ErrorCode, OpMsg, PeerUser, ProtocolError, ServerMsg,
    PROTOCOL_VERSION,
};
use rand::distr::{Alphanumeric, SampleString};
use tracing::{debug, info_span};

use crate::document::{Join, Leave, SetPresence, Submit};
use crate::errors::{
    close_code_for, ActorError, CLOSE_INVALID_PAYLOAD, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
};
use crate::frame::{Format, Frame};
use crate::metrics::metrics;
use crate::outbox::{Outbound, Outbox};
use crate::registry::{call_doc, DocLink, OpenDoc, Registry};
use crate::security::audit::AuditEvent;
use crate::security::auth::{bind_client_id, now_s, Action, AuthError, Claims, Resolved, Role};
use crate::security::guard::{Guard, Refusal};
use crate::ws_gate::{GateControl, GateVerdict, GatedPayload};

/// Bytes of messages a connection may have handled before its `hello` succeeds.
pub const PRE_AUTH_MAX_BYTES: usize = 64 * 1024;
use crate::SessionId;

mod auth;
mod text;
pub mod yjs;

/// Default interval between server pings.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default silence after which a client is considered gone.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound of a session's outbound mailbox, in frames.
pub const DEFAULT_OUTBOUND_CAPACITY: usize = 1024;
/// Default bound of the bytes queued to one session: frames are refused (and the session
/// disconnected) once this much is waiting. A frame reaching an emptier queue is taken whatever
/// its size, so a snapshot larger than the bound still gets through.
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 16 * 1024 * 1024;
/// Default maximum number of documents one session may join.
pub const DEFAULT_MAX_DOCS_PER_SESSION: usize = 64;
/// Length of server-assigned client ids.
const CLIENT_ID_LEN: usize = 16;
/// Default most open WebSocket connections; more are refused at the upgrade with 503.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Default sustained ops per second one session may submit (token bucket rate).
pub const DEFAULT_MAX_OPS_PER_S: f64 = 100.0;
/// Default burst of ops above the rate (token bucket size).
pub const DEFAULT_OP_BURST: f64 = 200.0;
/// Default time a connection has to complete `hello` (token checked included).
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest single wait of the expiry timer (it re-arms itself for tokens that live longer).
const MAX_EXPIRY_TIMER: Duration = Duration::from_secs(3600);
/// `auth` messages a session may send at once (a token refresh is needed once per token
/// lifetime; each costs a signature check).
pub const AUTH_BURST: f64 = 5.0;
/// Time to earn one more `auth` message after the burst.
pub const AUTH_REFILL: Duration = Duration::from_secs(10);
/// Session state before `hello` (metrics label).
pub(crate) const STATE_CONNECTED: &str = "connected";
/// Session state after `hello` (metrics label).
pub(crate) const STATE_READY: &str = "ready";

pub(crate) static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Settings of every session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Interval between server pings.
    pub heartbeat_interval: Duration,
    /// Silence after which the client is considered gone.
    pub client_timeout: Duration,
    /// Bound of the outbound mailbox, in messages (an answer or a fan-out round each).
    pub outbound_capacity: usize,
    /// Bound of the bytes queued to the session.
    pub max_outbound_bytes: usize,
    /// Maximum number of documents joined at once.
    pub max_docs: usize,
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
    /// Most open connections (refused at the upgrade with 503 beyond).
    pub max_connections: usize,
    /// Sustained ops per second per session; excess ops get `RateLimited`, nothing applied.
    pub max_ops_per_s: f64,
    /// Ops a session may send in a burst above the rate.
    pub op_burst: f64,
    /// Time a connection has to complete `hello`.
    pub hello_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            outbound_capacity: DEFAULT_OUTBOUND_CAPACITY,
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            max_docs: DEFAULT_MAX_DOCS_PER_SESSION,
            max_frame_bytes: MAX_FRAME_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_ops_per_s: DEFAULT_MAX_OPS_PER_S,
            op_burst: DEFAULT_OP_BURST,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
        }
    }
}

/// Closes every session at once: `close_all(code, reason)` on the sender side, each session
/// watching its receiver.
#[derive(Clone)]
pub struct CloseAll {
    rx: tokio::sync::watch::Receiver<Option<(u16, String)>>,
}

/// The sending side of [`CloseAll`].
#[derive(Clone)]
pub struct CloseAllSender {
    tx: Arc<tokio::sync::watch::Sender<Option<(u16, String)>>>,
}

impl CloseAll {
    /// Resolves with the code and reason once every session is to close (`None` if the sender
    /// is gone without saying so).
    pub(crate) fn signalled(&self) -> impl std::future::Future<Output = Option<(u16, String)>> {
        let mut rx = self.rx.clone();
        async move {
            loop {
                if let Some(why) = rx.borrow_and_update().clone() {
                    return Some(why);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        }
    }

    /// A new signal and its sender.
    pub fn channel() -> (CloseAllSender, CloseAll) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (CloseAllSender { tx: Arc::new(tx) }, CloseAll { rx })
    }
}

impl CloseAllSender {
    /// Closes every open session (and every session that opens later) with `code`.
    pub fn close_all(&self, code: u16, reason: &str) {
        let _ = self.tx.send(Some((code, reason.to_string())));
    }
}

/// What every session shares.
#[derive(Clone)]
pub struct SessionShared {
    /// Where documents open.
    pub registry: Addr<Registry>,
    /// Settings.
    pub config: SessionConfig,
    /// Authentication, authorization, audit.
    pub guard: Guard,
    /// Closes every session at once.
    pub close_all: CloseAll,
}

/// Upgrades an HTTP request to a WebSocket served by a new [`WsSession`]. `peer` is the
/// client's address (recorded in the audit log).
pub fn start_session(
    req: &HttpRequest,
    stream: web::Payload,
    shared: SessionShared,
    peer: Option<IpAddr>,
) -> Result<HttpResponse, actix_web::Error> {
    let SessionShared {
        registry,
        config,
        guard,
        close_all,
    } = shared;
    let m = metrics();
    if let Some(refused) = admit_connection(&config) {
        return Ok(refused);
    }
    let max = config.max_frame_bytes;
    let gate = GateControl::new(max);
    let stream = GatedPayload::new(stream, gate.clone());
    let mut session = WsSession::new(registry, config, guard);
    session.gate = gate;
    session.peer = peer;
    session.close_all = Some(close_all);
    let res = ws::WsResponseBuilder::new(session, req, stream)
        .frame_size(max)
        .start();
    if res.is_err() {
        m.connections.dec();
    }
    res
}

/// Counts a new connection, or refuses it (503) at the connection limit. A connection counted
/// here is released when its session stops (or if the upgrade fails).
pub(crate) fn admit_connection(config: &SessionConfig) -> Option<HttpResponse> {
    let m = metrics();
    if m.connections.inc() < config.max_connections as i64 {
        return None;
    }
    m.connections.dec();
    m.refused_connections.inc();
    let msg = format!(
        "the server is at its limit of {} connections",
        config.max_connections
    );
    Some(
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(serde_json::json!({"error": {"code": ErrorCode::Unavailable, "msg": msg}})),
    )
}

/// One WebSocket session. See the module documentation.
pub struct WsSession {
    /// Process-unique id.
    id: SessionId,
    /// The client id, once `hello` arrived.
    client: Option<ClientId>,
    /// The token's claims (authentication on, after `hello`).
    claims: Option<Claims>,
    /// Documents joined, by the name the client uses, with their actors.
    docs: HashMap<String, DocLink>,
    /// When the client last sent anything.
    last_seen: Instant,
    /// Op tokens left (token bucket), refilled at `max_ops_per_s` up to `op_burst`.
    op_tokens: f64,
    /// When the bucket was last refilled.
    refilled: Instant,
    /// `auth` messages left (token bucket): [`AUTH_BURST`], one more per [`AUTH_REFILL`].
    auth_tokens: f64,
    /// When that bucket was last refilled.
    auth_refilled: Instant,
    /// The session reached `started` (it is counted in the metrics).
    counted: bool,
    /// Where documents send this session's frames (one byte count for all of them); made at
    /// the first join.
    outbox: Option<Outbox>,
    registry: Addr<Registry>,
    config: SessionConfig,
    guard: Guard,
    /// The gate in front of the decoder (limits raised after `hello`).
    gate: Arc<GateControl>,
    /// The client's address.
    peer: Option<IpAddr>,
    /// Closes this session with every other one.
    close_all: Option<CloseAll>,
    /// Bumped whenever the claims change; an expiry timer acts only on its own claims.
    claims_generation: u64,
    /// Bytes of messages handled before `hello` succeeded.
    preauth_bytes: usize,
    /// The token's subject (authentication on), recorded with each op in the audit log.
    subject: Option<Arc<str>>,
    /// Display name and colour for presence (the token's claims over the client's `hello`).
    user: Option<Arc<PeerUser>>,
    span: tracing::Span,
}

impl WsSession {
    /// A session that opens documents through `registry`.
    pub fn new(registry: Addr<Registry>, config: SessionConfig, guard: Guard) -> Self {
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        WsSession {
            id,
            client: None,
            claims: None,
            docs: HashMap::new(),
            last_seen: Instant::now(),
            op_tokens: config.op_burst.max(1.0),
            refilled: Instant::now(),
            auth_tokens: AUTH_BURST,
            auth_refilled: Instant::now(),
            counted: false,
            outbox: None,
            gate: GateControl::new(config.max_frame_bytes),
            registry,
            config,
            guard,
            peer: None,
            close_all: None,
            claims_generation: 0,
            preauth_bytes: 0,
            subject: None,
            user: None,
            span: info_span!("session", id),
        }
    }

    /// The name under which a reference was joined (`tenant:name` → `name` for the session's
    /// own tenant).
    fn joined_name<'a>(&self, doc: &'a str) -> &'a str {
        match (&self.claims, split_doc_ref(doc)) {
            (Some(c), Ok((Some(t), name))) if t == c.tenant => name,
            _ => doc,
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
            (
                ClientMsg::Hello {
                    client,
                    token,
                    user,
                    ..
                },
                None,
            ) => {
                let (client, token, user) = (client.clone(), token.clone(), user.clone());
                return self.on_hello(client, token, user, format, ctx);
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
            ClientMsg::Auth { token } => self.on_auth(token, format, ctx),
            ClientMsg::Presence { doc, rev, sel } => {
                let Some(name) = self.authorized_name(&doc, Action::Presence, None, format, ctx)
                else {
                    return;
                };
                match self.docs.get(name.as_ref()) {
                    Some(addr) => addr.do_send(SetPresence {
                        session: self.id,
                        rev,
                        sel,
                    }),
                    None => Self::not_joined(ctx, format, doc, None),
                }
            }
            ClientMsg::Leave { doc } => {
                let name = self.joined_name(&doc).to_string();
                match self.docs.remove(&name) {
                    Some(addr) => {
                        addr.do_send(Leave { session: self.id });
                        self.guard.audit(AuditEvent::Leave {
                            session: self.id,
                            doc: name,
                        });
                    }
                    None => Self::not_joined(ctx, format, doc, None),
                }
            }
            ClientMsg::Hello { .. } | ClientMsg::Ping { .. } => {}
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.counted = true;
        metrics().session_state(None, Some(STATE_CONNECTED));
        ctx.set_mailbox_capacity(self.config.outbound_capacity);
        let hello_timeout = self.config.hello_timeout;
        ctx.run_later(hello_timeout, move |act, ctx| {
            if act.client.is_none() {
                metrics().unauthenticated_closes.inc();
                let msg = format!("no hello within {} s", hello_timeout.as_secs_f64());
                Self::close(ctx, CLOSE_POLICY, msg);
            }
        });
        if let Some(wait) = self.close_all.as_ref().map(CloseAll::signalled) {
            ctx.spawn(wait.into_actor(self).map(|why, _, ctx| {
                if let Some((code, reason)) = why {
                    Self::close(ctx, code, reason);
                }
            }));
        }
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
        if self.counted {
            let state = if self.client.is_some() {
                STATE_READY
            } else {
                STATE_CONNECTED
            };
            metrics().session_state(Some(state), None);
            metrics().connections.dec();
            self.counted = false;
        }
        for (_, addr) in self.docs.drain() {
            addr.do_send(Leave { session: self.id });
        }
        if self.client.is_some() {
            self.guard
                .audit(AuditEvent::SessionClose { session: self.id });
        }
        debug!(parent: &self.span, "session closed");
    }
}

impl Handler<Outbound> for WsSession {
    type Result = ();

    /// Writes the frames (or closes, for a close frame).
    fn handle(&mut self, m: Outbound, ctx: &mut Self::Context) {
        let mut m = m;
        for frame in std::mem::take(&mut m.frames) {
            Self::write(ctx, frame);
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    /// Decodes each data frame once and dispatches it; answers pings; closes on protocol errors.
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        if self.client.is_none() {
            // Before hello succeeds: a small budget of handled messages.
            self.preauth_bytes += match &item {
                Ok(ws::Message::Binary(b)) => b.len(),
                Ok(ws::Message::Text(t)) => t.len(),
                Ok(ws::Message::Ping(p)) | Ok(ws::Message::Pong(p)) => p.len(),
                _ => 0,
            };
            if self.preauth_bytes > PRE_AUTH_MAX_BYTES {
                metrics().unauthenticated_closes.inc();
                let msg = format!("more than {PRE_AUTH_MAX_BYTES} bytes before hello");
                return Self::close(ctx, CLOSE_POLICY, msg);
            }
        }
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
            Err(ws::ProtocolError::Io(e)) => match self.gate.verdict() {
                GateVerdict::FrameTooLarge => {
                    metrics().oversized_frames.inc();
                    let msg = if self.client.is_none() {
                        format!(
                            "frame exceeds {} bytes (the first message, hello, at most {})",
                            self.gate.max_frame(),
                            crate::ws_gate::FIRST_FRAME_MAX_BYTES
                        )
                    } else {
                        format!("frame exceeds {} bytes", self.gate.max_frame())
                    };
                    Self::close(ctx, CLOSE_TOO_BIG, msg);
                }
                GateVerdict::Open => {
                    Self::close(ctx, CLOSE_INVALID_PAYLOAD, format!("invalid frame: {e}"))
                }
            },
            Err(e) => Self::close(ctx, CLOSE_PROTOCOL, e.to_string()),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        Self::close(ctx, CLOSE_NORMAL, "connection closed");
    }
}

/// The audit name of an action.
fn action_name(a: Action) -> &'static str {
    match a {
        Action::Read => "join",
        Action::Presence => "presence",
        Action::Write => "op",
        Action::Manage => "manage",
    }
}
