//! The Yjs WebSocket session actor, one per connection on `GET /yjs/{doc}` (y-websocket: one
//! document, authorized from the `token` query parameter before the upgrade) or
//! `GET /hocuspocus` (Hocuspocus: many documents, each authorized by its own `Auth` message).
//! It belongs with `session.rs` (the only module using actix-web-actors); its authentication
//! and refusals are in `session/yjs/auth.rs`.
//!
//! Invariants:
//! - Each frame is decoded once, at this boundary (`coedit_protocol::yjs::frames`); a frame
//!   that does not decode closes the connection (1002) with the error code in the reason.
//! - A document channel is joined only after its token is checked and the document
//!   authorized; frames for it that arrive meanwhile wait in order (bounded by
//!   [`MAX_QUEUED_FRAMES`] per channel, [`MAX_QUEUED_BYTES`] per connection and the pre-auth
//!   byte budget) and are handled after the join.
//! - A refused update changes nothing and is answered: Hocuspocus `SyncStatus(false)` plus a
//!   stateless message with the error as JSON; y-websocket a permission-denied message with the
//!   error as JSON. After a transient refusal (rate limit, disk full, unloading) the server
//!   asks the client to sync again ([`RESYNC_DELAY`]), so its edit is not left behind.
//! - A channel's token is enforced while it is open: once expired (plus the clock skew), the
//!   Hocuspocus channel is refused (permission denied) and left; a y-websocket connection is
//!   closed with 1008.
//! - A connection that authorizes no document within `hello_timeout`, or sends more than
//!   [`PRE_AUTH_MAX_BYTES`] before, is closed with 1008.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::Bytes;
use coedit_protocol::yjs::frames::{
    address_doc, decode_hocuspocus, decode_ywebsocket, HpInbound, SyncMsg, YMessage, HP_PONG,
};
use coedit_protocol::yjs::Framing;
use coedit_protocol::{DocKind, ErrorCode};
use rand::distr::{Alphanumeric, SampleString};
use tracing::{debug, info_span};

use super::{
    CloseAll, SessionConfig, SessionShared, NEXT_SESSION, PRE_AUTH_MAX_BYTES, STATE_CONNECTED,
    STATE_READY,
};
use crate::errors::{
    yjs_close_code_for, ActorError, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_PROTOCOL, CLOSE_TOO_BIG,
};
use crate::frame::Frame;
use crate::metrics::metrics;
use crate::outbox::{Outbound, Outbox};
use crate::registry::{call_doc, DocLink, OpenDoc, Registry};
use crate::security::audit::AuditEvent;
use crate::security::auth::{now_s, Action, AuthError, Claims, Resolved};
use crate::security::guard::{Guard, Refusal};
use crate::ws_gate::{GateControl, GateVerdict, GatedPayload};
use crate::ydoc::{
    YAwareness, YDocActor, YJoin, YLeave, YQueryAwareness, YRefuse, YSyncStep1, YUpdate,
};
use crate::SessionId;

mod auth;

/// Frames kept for a channel while its token is checked and its document opens.
pub const MAX_QUEUED_FRAMES: usize = 64;
/// Bytes of such frames kept per connection, all channels together (a connection that is
/// authorized for one document could otherwise hold 64 frames for each of the others).
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Wait before asking a client whose update was refused for a transient reason to sync again.
pub const RESYNC_DELAY: Duration = Duration::from_secs(1);
/// Length of the session's client id (stored with its updates).
const CLIENT_ID_LEN: usize = 16;

/// Which protocol a connection speaks.
#[derive(Clone, Debug)]
pub enum YEndpoint {
    /// y-websocket on one document, already authorized.
    YWebsocket {
        /// The document.
        doc: Resolved,
        /// The token's claims (authentication on).
        claims: Option<Claims>,
    },
    /// Hocuspocus, documents authorized one by one.
    Hocuspocus,
    /// y-websocket refused before it could start (token, role, tenant): the connection is
    /// closed at once with [`yjs_close_code_for`] the code, so the client stops reconnecting.
    Refused {
        /// The error code.
        code: ErrorCode,
        /// What was wrong.
        msg: String,
    },
}

/// One document channel of the session.
struct Channel {
    /// The document, once joined.
    addr: Option<DocLink<YDocActor>>,
    framing: Framing,
    readonly: bool,
    claims: Option<Claims>,
    /// Frames that arrived before the join completed, in order.
    queued: Vec<Bytes>,
    /// The document reference the client used.
    doc: String,
    /// The document's storage id, once joined (for the audit log's `leave`).
    joined: Option<String>,
}

/// The Yjs session actor. See the module documentation.
pub struct YSession {
    id: SessionId,
    client: Arc<str>,
    endpoint: YEndpoint,
    channels: HashMap<Arc<str>, Channel>,
    /// Bytes of the frames waiting in channels that are not joined yet.
    queued_bytes: usize,
    authorized: bool,
    preauth_bytes: usize,
    last_seen: Instant,
    update_tokens: f64,
    refilled: Instant,
    /// Where documents send this session's frames (made in `started`).
    outbox: Option<Outbox>,
    registry: Addr<Registry>,
    config: SessionConfig,
    guard: Guard,
    gate: Arc<GateControl>,
    peer: Option<IpAddr>,
    close_all: CloseAll,
    counted: bool,
    span: tracing::Span,
}

/// Upgrades an HTTP request to a WebSocket served by a new [`YSession`] speaking `endpoint`.
pub fn start_yjs_session(
    req: &HttpRequest,
    stream: web::Payload,
    shared: SessionShared,
    peer: Option<IpAddr>,
    endpoint: YEndpoint,
) -> Result<HttpResponse, actix_web::Error> {
    let SessionShared {
        registry,
        config,
        guard,
        close_all,
    } = shared;
    if let Some(refused) = super::admit_connection(&config) {
        return Ok(refused);
    }
    let max = config.max_frame_bytes;
    let gate = GateControl::new(max);
    let stream = GatedPayload::new(stream, gate.clone());
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let session = YSession {
        id,
        client: Arc::from(Alphanumeric.sample_string(&mut rand::rng(), CLIENT_ID_LEN)),
        endpoint,
        channels: HashMap::new(),
        queued_bytes: 0,
        authorized: false,
        preauth_bytes: 0,
        last_seen: Instant::now(),
        update_tokens: config.op_burst.max(1.0),
        refilled: Instant::now(),
        outbox: None,
        registry,
        gate,
        peer,
        close_all,
        counted: false,
        span: info_span!("ysession", id),
        guard,
        config,
    };
    let res = ws::WsResponseBuilder::new(session, req, stream)
        .frame_size(max)
        .start();
    if res.is_err() {
        metrics().connections.dec();
    }
    res
}

use crate::ydoc::refusal_json as error_json;

impl YSession {
    fn close(ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: impl Into<String>) {
        let reason: String = reason.into();
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(reason.chars().take(120).collect()),
        }));
        ctx.stop();
    }

    /// Closes a y-websocket connection for a refusal, with `4000 +` the HTTP status.
    fn refuse(ctx: &mut ws::WebsocketContext<Self>, code: ErrorCode, msg: &str) {
        let reason = format!("{} {msg}", code.as_u16());
        Self::close(ctx, yjs_close_code_for(code), reason);
    }

    /// Closes for a frame that cannot be decoded: the protocol cannot go on.
    fn fail_frame(ctx: &mut ws::WebsocketContext<Self>, e: &ActorError) {
        let reason = format!("{} {}", e.code().as_u16(), e);
        Self::close(ctx, CLOSE_PROTOCOL, reason);
    }

    /// Asks the client to send what the server lacks (the document's step 1 via the actor).
    fn resync(&mut self, address: &Arc<str>) {
        let (Some(ch), Some(out)) = (self.channels.get(address), self.outbox.clone()) else {
            return;
        };
        if let Some(addr) = &ch.addr {
            addr.do_send(YJoin {
                session: self.id,
                framing: ch.framing.clone(),
                readonly: ch.readonly,
                out,
            });
        }
    }

    /// Handles one message on a joined channel.
    fn on_message(
        &mut self,
        address: &Arc<str>,
        msg: YMessage<'_>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(ch) = self.channels.get(address) else {
            return;
        };
        let Some(addr) = ch.addr.clone() else {
            return;
        };
        let subject = ch.claims.as_ref().map(|c| Arc::from(c.sub.as_str()));
        let session = self.id;
        match msg {
            YMessage::Sync(SyncMsg::Step1(sv)) => addr.do_send(YSyncStep1 { session, sv }),
            YMessage::Sync(SyncMsg::Step2(u)) | YMessage::Sync(SyncMsg::Update(u)) => {
                if !self.take_update_token() {
                    let msg = "more updates than the session's rate limit allows; not applied";
                    addr.do_send(YRefuse {
                        session,
                        code: ErrorCode::RateLimited,
                        msg: msg.into(),
                    });
                    return self.update_refused(address.clone(), ErrorCode::RateLimited, None, ctx);
                }
                let m = YUpdate {
                    session,
                    client: self.client.clone(),
                    update: Bytes::copy_from_slice(u),
                    subject,
                };
                let address = address.clone();
                ctx.spawn(addr.send(m).into_actor(self).map(move |r, act, ctx| {
                    match r {
                        Ok(Ok(())) => {}
                        // Told by the document actor, in order.
                        Ok(Err(e)) => {
                            let auth = match &e {
                                ActorError::Auth(a) => Some(a),
                                _ => None,
                            };
                            act.update_refused(address, e.code(), auth, ctx);
                        }
                        Err(e) => {
                            let e = ActorError::Mailbox(e);
                            act.tell_refusal(&address, &e, true, ctx);
                            act.update_refused(address, e.code(), None, ctx);
                        }
                    }
                }));
            }
            YMessage::Awareness(u) => {
                let m = YAwareness {
                    session,
                    update: Bytes::copy_from_slice(u),
                };
                let address = address.clone();
                ctx.spawn(addr.send(m).into_actor(self).map(move |r, act, ctx| {
                    if let Ok(Err(e)) = r {
                        act.tell_refusal(&address, &e, false, ctx);
                    }
                }));
            }
            YMessage::QueryAwareness => addr.do_send(YQueryAwareness { session }),
            YMessage::Close => {
                addr.do_send(YLeave { session });
                if let Some(doc) = self.drop_channel(address).and_then(|c| c.joined) {
                    self.guard.audit(AuditEvent::Leave { session, doc });
                }
            }
            // A token refresh is not needed (each channel keeps the token it joined with);
            // stateless messages are not relayed (documented in PROTOCOL.md).
            YMessage::Auth { .. } | YMessage::Stateless(_) => {}
        }
    }

    /// Opens and joins the document of channel `address` (authorized as `r`), then replays the
    /// frames that waited.
    fn join(&mut self, address: Arc<str>, r: Resolved, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(ch) = self.channels.get(&address) else {
            return;
        };
        let (framing, readonly) = (ch.framing.clone(), ch.readonly);
        let Some(out) = self.outbox.clone() else {
            return;
        };
        let (session, registry) = (self.id, self.registry.clone());
        let open = OpenDoc {
            kind: DocKind::Yjs,
            id: r.id.clone(),
            name: r.name.clone(),
            create: r.role.can_write(),
        };
        let make = move || YJoin {
            session,
            framing: framing.clone(),
            readonly,
            out: out.clone(),
        };
        let fut = async move { call_doc::<YDocActor, _, _>(&registry, open, make).await };
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
            let framing = match act.channels.get(&address) {
                Some(ch) => ch.framing.clone(),
                None => return,
            };
            match res {
                Ok((addr, ())) => {
                    if let YEndpoint::Hocuspocus = act.endpoint {
                        let readonly = act.channels[&address].readonly;
                        ctx.binary(Bytes::from(framing.authenticated(readonly)));
                    }
                    let claims = act.channels[&address].claims.clone();
                    if !act.authorized {
                        act.authorized = true;
                        metrics().session_state(Some(STATE_CONNECTED), Some(STATE_READY));
                        act.guard.audit(AuditEvent::SessionOpen {
                            session: act.id,
                            client: act.client.to_string(),
                            subject: claims.as_ref().map(|c| c.sub.clone()),
                            tenant: claims.as_ref().map(|c| c.tenant.clone()),
                            source: act.peer.map(|p| p.to_string()),
                        });
                    }
                    act.guard.audit(AuditEvent::Join {
                        session: act.id,
                        doc: r.id.clone(),
                        role: claims.as_ref().map(|_| r.role.to_string()),
                    });
                    let queued = act.channels.get_mut(&address).map(|c| {
                        c.addr = Some(addr);
                        c.joined = Some(r.id.clone());
                        std::mem::take(&mut c.queued)
                    });
                    let bytes: usize = queued.iter().flatten().map(Bytes::len).sum();
                    act.queued_bytes = act.queued_bytes.saturating_sub(bytes);
                    for frame in queued.unwrap_or_default() {
                        act.on_frame(&frame, ctx);
                    }
                }
                Err(e) => {
                    debug!(parent: &act.span, error = %e, "Yjs join refused");
                    act.drop_channel(&address);
                    if let ActorError::Auth(a) = &e {
                        act.audit_refusal(a, "join", &r.name);
                    }
                    match act.endpoint {
                        YEndpoint::Hocuspocus => {
                            let body = error_json(e.code(), &e.to_string());
                            ctx.binary(Bytes::from(framing.permission_denied(&body)));
                        }
                        _ => Self::refuse(ctx, e.code(), &e.to_string()),
                    }
                }
            }
        }));
    }

    /// Forgets a channel (and the bytes of the frames it kept).
    fn drop_channel(&mut self, address: &Arc<str>) -> Option<Channel> {
        let ch = self.channels.remove(address)?;
        let bytes: usize = ch.queued.iter().map(Bytes::len).sum();
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        Some(ch)
    }

    /// Keeps a frame for a channel that is not joined yet (bounded per channel in frames and
    /// per connection in bytes; beyond, the connection is closed with 1008).
    fn queue(&mut self, address: &Arc<str>, frame: &Bytes, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(ch) = self.channels.get_mut(address) else {
            return;
        };
        if ch.queued.len() >= MAX_QUEUED_FRAMES
            || self.queued_bytes + frame.len() > MAX_QUEUED_BYTES
        {
            let msg = format!(
                "more than {MAX_QUEUED_FRAMES} frames or {MAX_QUEUED_BYTES} bytes before the \
                 document opened"
            );
            return Self::close(ctx, CLOSE_POLICY, msg);
        }
        self.queued_bytes += frame.len();
        ch.queued.push(frame.clone());
    }

    /// Handles one binary frame.
    fn on_frame(&mut self, frame: &Bytes, ctx: &mut ws::WebsocketContext<Self>) {
        match self.endpoint.clone() {
            YEndpoint::YWebsocket { .. } => {
                let address: Arc<str> = Arc::from("");
                if self
                    .channels
                    .get(&address)
                    .is_some_and(|c| c.addr.is_none())
                {
                    return self.queue(&address, frame, ctx);
                }
                match decode_ywebsocket(frame) {
                    Ok(msgs) => {
                        for m in msgs {
                            self.on_message(&address, m, ctx);
                        }
                    }
                    Err(e) => Self::fail_frame(ctx, &e.into()),
                }
            }
            YEndpoint::Refused { .. } => {}
            YEndpoint::Hocuspocus => match decode_hocuspocus(frame) {
                Err(e) => Self::fail_frame(ctx, &e.into()),
                Ok(HpInbound::Ping) => ctx.binary(Bytes::from_static(&[HP_PONG])),
                Ok(HpInbound::Pong) => {}
                Ok(HpInbound::Doc { address, msg }) => {
                    let key: Arc<str> = Arc::from(address);
                    match (self.channels.get_mut(&key), msg) {
                        (None, YMessage::Auth { token }) => self.authenticate(address, token, ctx),
                        (None, _) => {
                            // Hocuspocus answers a channel that never authenticated the same.
                            let f = Framing::Hocuspocus(key);
                            let body = error_json(
                                ErrorCode::AuthRequired,
                                "send Auth for this document first",
                            );
                            ctx.binary(Bytes::from(f.permission_denied(&body)));
                        }
                        (Some(ch), _) if ch.addr.is_none() => self.queue(&key, frame, ctx),
                        (Some(_), msg) => self.on_message(&key, msg, ctx),
                    }
                }
            },
        }
    }
}

impl Actor for YSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.counted = true;
        metrics().session_state(None, Some(STATE_CONNECTED));
        ctx.set_mailbox_capacity(self.config.outbound_capacity);
        self.outbox = Some(Outbox::new(
            ctx.address().recipient(),
            self.config.max_outbound_bytes,
        ));
        if let YEndpoint::Refused { code, msg } = &self.endpoint {
            return Self::refuse(ctx, *code, msg);
        }
        if let YEndpoint::YWebsocket { doc, claims } = self.endpoint.clone() {
            let address: Arc<str> = Arc::from("");
            self.channels.insert(
                address.clone(),
                Channel {
                    addr: None,
                    framing: Framing::YWebsocket,
                    readonly: !doc.role.can_write(),
                    claims,
                    queued: Vec::new(),
                    doc: doc.name.clone(),
                    joined: None,
                },
            );
            self.join(address, doc, ctx);
        }
        let timeout = self.config.hello_timeout;
        ctx.run_later(timeout, move |act, ctx| {
            if !act.authorized {
                metrics().unauthenticated_closes.inc();
                let msg = format!("no document authorized within {} s", timeout.as_secs_f64());
                Self::close(ctx, CLOSE_POLICY, msg);
            }
        });
        ctx.spawn(
            self.close_all
                .signalled()
                .into_actor(self)
                .map(|why, _, ctx| {
                    if let Some((code, reason)) = why {
                        Self::close(ctx, code, reason);
                    }
                }),
        );
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| {
            if act.last_seen.elapsed() > act.config.client_timeout {
                Self::close(ctx, CLOSE_POLICY, "heartbeat timeout");
            } else {
                act.expire_tokens(ctx);
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if self.counted {
            let state = if self.authorized {
                STATE_READY
            } else {
                STATE_CONNECTED
            };
            metrics().session_state(Some(state), None);
            metrics().connections.dec();
            self.counted = false;
        }
        for (_, ch) in self.channels.drain() {
            if let Some(addr) = ch.addr {
                addr.do_send(YLeave { session: self.id });
            }
        }
        if self.authorized {
            self.guard
                .audit(AuditEvent::SessionClose { session: self.id });
        }
        debug!(parent: &self.span, "Yjs session closed");
    }
}

impl Handler<Outbound> for YSession {
    type Result = ();

    /// Writes the frames (or closes, for a close frame).
    fn handle(&mut self, m: Outbound, ctx: &mut Self::Context) {
        let mut m = m;
        for frame in std::mem::take(&mut m.frames) {
            match frame {
                Frame::Binary(b) => ctx.binary(b),
                Frame::Text(t) => ctx.text(t),
                Frame::Close(code, reason) => Self::close(ctx, code, reason),
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for YSession {
    /// Decodes each binary frame once; answers pings; closes on protocol errors.
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        if !self.authorized {
            self.preauth_bytes += match &item {
                Ok(ws::Message::Binary(b)) => b.len(),
                Ok(ws::Message::Text(t)) => t.len(),
                _ => 0,
            };
            if self.preauth_bytes > PRE_AUTH_MAX_BYTES {
                metrics().unauthenticated_closes.inc();
                let msg = format!("more than {PRE_AUTH_MAX_BYTES} bytes before authorization");
                return Self::close(ctx, CLOSE_POLICY, msg);
            }
        }
        match item {
            Ok(ws::Message::Binary(b)) => self.on_frame(&b, ctx),
            Ok(ws::Message::Text(_)) => Self::close(
                ctx,
                CLOSE_PROTOCOL,
                "1001 the Yjs protocols use binary frames only",
            ),
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
                    let msg = format!("frame exceeds {} bytes", self.gate.max_frame());
                    Self::close(ctx, CLOSE_TOO_BIG, msg);
                }
                GateVerdict::Open => {
                    Self::close(ctx, CLOSE_PROTOCOL, format!("invalid frame: {e}"))
                }
            },
            Err(e) => Self::close(ctx, CLOSE_PROTOCOL, e.to_string()),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        Self::close(ctx, CLOSE_NORMAL, "connection closed");
    }
}
