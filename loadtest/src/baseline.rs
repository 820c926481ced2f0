//! `baseline-server`: a bare broadcast WebSocket server on coedit's stack (actix-web +
//! actix-web-actors), with no OT, no storage and no crypto. It speaks just enough of the
//! protocol for `run --baseline`: `hello` → `welcome`, `join` → an empty `snapshot`, and every
//! `op` is numbered and sent, unchanged, to every subscriber of its document (the author
//! included), coalesced per tick like coedit's fan-out. What `run` measures against it is the
//! ceiling of the stack; coedit is reported as a ratio of it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;
use bytes::Bytes;
use coedit_protocol::wire::{encode_msgpack, PROTOCOL_VERSION};
use coedit_protocol::{ClientMsg, RemoteOp, ServerMsg};

/// Fan-out tick, as coedit's default.
const TICK: Duration = Duration::from_millis(5);

/// A frame for a session.
#[derive(Message)]
#[rtype(result = "()")]
struct Frame(Bytes);

#[derive(Default)]
struct Room {
    rev: u64,
    subs: HashMap<u64, Recipient<Frame>>,
    pending: Vec<RemoteOp>,
    scheduled: bool,
    last: Option<Instant>,
}

/// All documents' subscribers.
#[derive(Default)]
struct Hub {
    rooms: HashMap<String, Room>,
}

impl Actor for Hub {
    type Context = Context<Self>;
}

impl Hub {
    fn flush(&mut self, doc: &str) {
        let Some(room) = self.rooms.get_mut(doc) else {
            return;
        };
        room.scheduled = false;
        if room.pending.is_empty() {
            return;
        }
        room.last = Some(Instant::now());
        let msg = ServerMsg::Ops {
            doc: doc.to_string(),
            ops: std::mem::take(&mut room.pending),
            access: None,
        };
        let bytes = Bytes::from(encode_msgpack(&msg));
        for s in room.subs.values() {
            s.do_send(Frame(bytes.clone()));
        }
    }
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Join {
    doc: String,
    session: u64,
    out: Recipient<Frame>,
}

impl Handler<Join> for Hub {
    type Result = u64;

    /// Subscribes the session; answers the current revision.
    fn handle(&mut self, m: Join, _: &mut Context<Self>) -> u64 {
        let room = self.rooms.entry(m.doc).or_default();
        room.subs.insert(m.session, m.out);
        room.rev
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Leave {
    session: u64,
}

impl Handler<Leave> for Hub {
    type Result = ();

    /// Unsubscribes the session everywhere.
    fn handle(&mut self, m: Leave, _: &mut Context<Self>) {
        for room in self.rooms.values_mut() {
            room.subs.remove(&m.session);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Publish {
    doc: String,
    op: RemoteOp,
}

impl Handler<Publish> for Hub {
    type Result = ();

    /// Numbers the op and queues it for the next tick.
    fn handle(&mut self, mut m: Publish, ctx: &mut Context<Self>) {
        let room = self.rooms.entry(m.doc.clone()).or_default();
        room.rev += 1;
        m.op.rev = room.rev;
        room.pending.push(m.op);
        if room.scheduled {
            return;
        }
        let since = room.last.map_or(TICK, |l| l.elapsed());
        if since >= TICK {
            self.flush(&m.doc);
        } else {
            room.scheduled = true;
            let doc = m.doc;
            ctx.run_later(TICK - since, move |hub, _| hub.flush(&doc));
        }
    }
}

struct Session {
    id: u64,
    client: String,
    hub: Addr<Hub>,
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.hub.do_send(Leave { session: self.id });
    }
}

impl Handler<Frame> for Session {
    type Result = ();

    /// Writes the frame.
    fn handle(&mut self, m: Frame, ctx: &mut Self::Context) {
        ctx.binary(m.0);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    /// Decodes the frame and answers or publishes.
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let bytes = match item {
            Ok(ws::Message::Binary(b)) => b,
            Ok(ws::Message::Ping(p)) => return ctx.pong(&p),
            Ok(ws::Message::Close(_)) | Err(_) => return ctx.stop(),
            Ok(_) => return,
        };
        let Ok(msg) = ClientMsg::from_msgpack(&bytes) else {
            return;
        };
        match msg {
            ClientMsg::Hello { .. } => {
                self.client = format!("b{}", self.id);
                let w = ServerMsg::Welcome {
                    v: PROTOCOL_VERSION,
                    client: self.client.clone(),
                    sub: None,
                    exp: None,
                    now: None,
                };
                ctx.binary(encode_msgpack(&w));
            }
            ClientMsg::Join { doc, .. } => {
                let join = Join {
                    doc: doc.clone(),
                    session: self.id,
                    out: ctx.address().recipient(),
                };
                ctx.wait(
                    self.hub
                        .send(join)
                        .into_actor(self)
                        .map(move |rev, _, ctx| {
                            let s = ServerMsg::Snapshot {
                                doc,
                                rev: rev.unwrap_or(0),
                                text: String::new(),
                                access: None,
                            };
                            ctx.binary(encode_msgpack(&s));
                        }),
                );
            }
            ClientMsg::Op(m) => {
                let Ok(op) = m.checked_op() else { return };
                let op = RemoteOp {
                    rev: 0,
                    client: self.client.clone(),
                    seq: m.seq,
                    op,
                    t: m.t,
                };
                self.hub.do_send(Publish { doc: m.doc, op });
            }
            ClientMsg::Ping { t } => ctx.binary(encode_msgpack(&ServerMsg::Pong { t })),
            ClientMsg::Presence { .. } | ClientMsg::Leave { .. } | ClientMsg::Auth { .. } => {}
        }
    }
}

async fn websocket(
    req: HttpRequest,
    stream: web::Payload,
    hub: web::Data<Addr<Hub>>,
    next: web::Data<std::sync::atomic::AtomicU64>,
) -> Result<HttpResponse, actix_web::Error> {
    let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let session = Session {
        id,
        client: String::new(),
        hub: hub.get_ref().clone(),
    };
    ws::start(session, &req, stream)
}

/// Serves until interrupted; prints `baseline listening on ADDR`.
pub fn serve(bind: std::net::SocketAddr) -> anyhow::Result<()> {
    actix::System::new().block_on(async move {
        let hub = web::Data::new(Hub::default().start());
        let next = web::Data::new(std::sync::atomic::AtomicU64::new(1));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(hub.clone())
                .app_data(next.clone())
                .route("/ws", web::get().to(websocket))
        })
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .bind(bind)?;
        for a in server.addrs() {
            println!("baseline listening on {a}");
        }
        server.run().await?;
        Ok(())
    })
}
