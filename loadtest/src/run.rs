//! `run`: real OT clients over WebSocket against a coedit server, measuring op → ack and
//! op → visible latency with HDR histograms, then checking convergence.
//!
//! Each client is one tokio task with its own connection and `OtClient`. It types at `rate`
//! edits per second near its cursor (inserts, with a backspace now and then), sends presence
//! at `presence_rate`, applies every remote op, and records: op → ack (send to own op seen in
//! the stream, or `ack`) and op → visible (the author's send time travels in the op's `t` and is
//! read on receipt; all clients share one clock because they share one process). Full clients
//! keep the text in a rope; light clients (past `--full K`) keep only its length but run the
//! same state machine and send valid ops.
//!
//! After `duration`, clients stop typing, drain until synchronized and quiet, and report
//! their revision (and text); every client must be at the server's revision and every full
//! replica must equal the server's text. The run's timeline, the report and the convergence
//! check are [`crate::harness`]'s, shared with the Yjs clients of [`crate::yjs_run`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use coedit_protocol::wire::{encode_msgpack, PROTOCOL_VERSION};
use coedit_protocol::{
    transform_position, ClientMsg, Op, OpMsg, OtClient, Outgoing, ServerMsg, ServerOpOutcome,
};
use futures_util::{SinkExt, StreamExt};
use jumprope::JumpRope;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) use crate::harness::http_base;
use crate::harness::{self, ClientEnd, Latencies, Shared, CONNECT_TIMEOUT, DRAIN_TIMEOUT, QUIET};
pub use crate::harness::{plot_svg, Percentiles, Report};

type Stop = watch::Receiver<bool>;

/// Characters typed (all in the Basic Multilingual Plane: one UTF-16 unit each).
pub(crate) const ALPHABET: &[char] = &['a', 'e', 'o', 't', ' ', 'n', 'é', '中', '\n'];
/// Share of edits that are backspaces.
pub(crate) const BACKSPACE_SHARE: f64 = 0.15;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// `ws://host:port/ws` of each server (a cluster's nodes): client `i` connects to
    /// `urls[i % n]` and, after a disconnection, to the next one.
    pub urls: Vec<String>,
    /// Number of clients.
    pub clients: usize,
    /// Number of documents (ignored with `hot`).
    pub docs: usize,
    /// All clients on one document.
    pub hot: bool,
    /// Edits per second per client.
    pub rate: f64,
    /// Presence updates per second per client (0: none).
    pub presence_rate: f64,
    /// Time over which clients start.
    pub ramp: Duration,
    /// Time of typing after the ramp.
    pub duration: Duration,
    /// Only this many clients keep full replicas.
    pub full: Option<usize>,
    /// The server's process id (found from the port when local and absent).
    pub server_pid: Option<i32>,
    /// Prefix of document ids (so runs do not mix).
    pub doc_prefix: String,
    /// Seed of the clients' random choices.
    pub seed: u64,
    /// Against `baseline-server`: remote ops are counted and timed, not applied, and
    /// convergence is not checked (the baseline does no OT).
    pub baseline: bool,
    /// Access token sent in `hello` and on REST reads (servers with authentication on).
    pub token: Option<String>,
}

impl RunConfig {
    /// The URL client `idx` uses for its `attempt`-th connection (0 first): clients are spread
    /// over the servers, and a reconnection goes to the next one (a node that died is left).
    pub fn url_for(&self, idx: usize, attempt: usize) -> &str {
        &self.urls[(idx + attempt) % self.urls.len().max(1)]
    }

    /// The first server's URL (REST checks, the server process found from its port).
    pub fn first_url(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }
}

/// A client's replica: the text, or only its length.
enum Replica {
    Full(Box<JumpRope>),
    Light(usize),
}

impl Replica {
    fn len(&self) -> usize {
        match self {
            Replica::Full(r) => r.len_chars(),
            Replica::Light(n) => *n,
        }
    }

    fn apply(&mut self, op: &Op) -> Result<()> {
        match self {
            Replica::Full(r) => op.apply_rope(r.as_mut())?,
            Replica::Light(n) => *n = op.fit_len(*n)?,
        }
        Ok(())
    }

    fn reset(&mut self, text: &str) {
        match self {
            Replica::Full(r) => **r = JumpRope::from(text),
            Replica::Light(n) => *n = text.chars().count(),
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One client. See the module documentation.
struct Client {
    idx: usize,
    doc: String,
    ot: OtClient,
    replica: Replica,
    cursor: usize,
    /// When the op in flight was sent.
    sent_at: Option<Instant>,
    lat: Latencies,
    /// Running against the baseline server (remote ops are not applied).
    baseline: bool,
    /// Access token for `hello`.
    token: Option<Arc<str>>,
    shared: Arc<Shared>,
}

impl Client {
    async fn send(ws: &mut Ws, msg: &ClientMsg) -> Result<()> {
        ws.send(Message::Binary(encode_msgpack(msg).into())).await?;
        Ok(())
    }

    async fn recv(ws: &mut Ws) -> Result<ServerMsg> {
        loop {
            let m = tokio::time::timeout(CONNECT_TIMEOUT, ws.next())
                .await
                .context("no answer from the server")?
                .ok_or_else(|| anyhow!("connection closed"))??;
            match m {
                Message::Binary(b) => return Ok(ServerMsg::from_msgpack(&b)?),
                Message::Text(t) => return Ok(ServerMsg::from_json(&t)?),
                Message::Close(c) => bail!("connection closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// [`Self::connect`] to the server `attempt` names for this client, else to the next ones
    /// in turn (each server once); `attempt` is left at the one that answered.
    async fn connect_any(
        &mut self,
        cfg: &RunConfig,
        attempt: &mut usize,
        first: bool,
    ) -> Result<Ws> {
        let mut last = None;
        for _ in 0..cfg.urls.len() {
            match self.connect(cfg.url_for(self.idx, *attempt), first).await {
                Ok(ws) => return Ok(ws),
                Err(e) => last = Some(e),
            }
            *attempt += 1;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no --url to connect to")))
    }

    /// Connects (again), joins with the known revision and resends what was in flight.
    async fn connect(&mut self, url: &str, first: bool) -> Result<Ws> {
        let connect = tokio_tungstenite::connect_async_with_config(url, None, true);
        let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .context("connect timed out")??;
        let id = (!first).then(|| self.ot.client_id().to_string());
        Self::send(
            &mut ws,
            &ClientMsg::Hello {
                v: PROTOCOL_VERSION,
                client: id,
                token: self.token.as_deref().map(str::to_string),
                user: None,
            },
        )
        .await?;
        match Self::recv(&mut ws).await? {
            ServerMsg::Welcome { client, .. } => self.ot.set_client_id(client),
            other => bail!("expected welcome, got {other:?}"),
        }
        let rev = (!first).then(|| self.ot.rev());
        Self::send(
            &mut ws,
            &ClientMsg::Join {
                doc: self.doc.clone(),
                rev,
            },
        )
        .await?;
        loop {
            match Self::recv(&mut ws).await? {
                ServerMsg::Snapshot { rev, text, .. } => {
                    if self.ot.reset(rev).is_some() {
                        // Local edits that cannot be placed on the snapshot are lost.
                        self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    self.replica.reset(&text);
                    self.cursor = self.cursor.min(self.replica.len());
                    break;
                }
                m @ ServerMsg::Ops { .. } => {
                    self.handle(&mut ws, m).await?;
                    break;
                }
                m => self.handle(&mut ws, m).await?,
            }
        }
        if let Some(out) = self.ot.resend() {
            self.send_op(&mut ws, out).await?;
        }
        Ok(ws)
    }

    async fn send_op(&mut self, ws: &mut Ws, out: Outgoing) -> Result<()> {
        let mut msg = OpMsg::new(self.doc.clone(), out.base_rev, out.seq, &out.op);
        msg.t = Some(self.shared.now_us());
        self.sent_at = Some(Instant::now());
        self.shared.ops_sent.fetch_add(1, Ordering::Relaxed);
        Self::send(ws, &ClientMsg::Op(msg)).await
    }

    fn acked(&mut self) {
        self.lat.acked(&self.shared, self.sent_at.take());
    }

    /// Handles one server message, sending the next op if one is released.
    async fn handle(&mut self, ws: &mut Ws, msg: ServerMsg) -> Result<()> {
        let mut next = None;
        match msg {
            ServerMsg::Ops { ops, .. } => {
                for r in ops {
                    match self.ot.on_server_op(r.rev, &r.client, r.seq, &r.op)? {
                        ServerOpOutcome::Apply(op) => {
                            if !self.baseline {
                                self.replica.apply(&op)?;
                            }
                            self.cursor =
                                transform_position(self.cursor, &op).min(self.replica.len());
                            if let Some(t) = r.t {
                                self.lat.visible(&self.shared, t);
                            }
                        }
                        ServerOpOutcome::OwnAck(n) => {
                            self.acked();
                            next = n.or(next);
                        }
                        ServerOpOutcome::Stale => {}
                    }
                }
            }
            ServerMsg::Ack { seq, rev, .. } => {
                let mine = self.ot.inflight_seq() == Some(seq);
                next = self.ot.on_ack(seq, rev)?;
                if mine {
                    self.acked();
                }
            }
            ServerMsg::Error { code, .. } => {
                self.shared.error_code(code.as_u16());
            }
            ServerMsg::Presence { .. }
            | ServerMsg::Pong { .. }
            | ServerMsg::Welcome { .. }
            | ServerMsg::Authed { .. } => {}
            ServerMsg::Snapshot { .. } => bail!("unexpected snapshot"),
        }
        if let Some(out) = next {
            self.send_op(ws, out).await?;
        }
        Ok(())
    }

    /// A local edit near the cursor.
    fn edit(&mut self, rng: &mut SmallRng) -> Op {
        let len = self.replica.len();
        self.cursor = self.cursor.min(len);
        if self.cursor > 0 && rng.random_bool(BACKSPACE_SHARE) {
            self.cursor -= 1;
            Op::delete_at(self.cursor, 1)
        } else {
            let c = ALPHABET[rng.random_range(0..ALPHABET.len())];
            let op = Op::insert_at(self.cursor, c.encode_utf8(&mut [0; 4]));
            self.cursor += 1;
            op
        }
    }

    /// Types until told to stop; reports when it has nothing unacknowledged; once every client
    /// has (`finish`), drains until quiet.
    async fn run(
        mut self,
        cfg: Arc<RunConfig>,
        mut stop: watch::Receiver<bool>,
        mut finish: watch::Receiver<bool>,
    ) -> Result<ClientEnd> {
        let mut rng =
            SmallRng::seed_from_u64(cfg.seed ^ (self.idx as u64).wrapping_mul(0x9e37_79b9));
        tokio::time::sleep(harness::ramp_delay(&cfg, self.idx)).await;
        let mut attempt = 0;
        let mut ws = self.connect_any(&cfg, &mut attempt, true).await?;
        let period = Duration::from_secs_f64(1.0 / cfg.rate.max(1e-6));
        let mut typing = tokio::time::interval_at(
            tokio::time::Instant::now() + period.mul_f64(rng.random::<f64>()),
            period,
        );
        typing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let presence_period = Duration::from_secs_f64(1.0 / cfg.presence_rate.max(1e-6));
        let mut presence = tokio::time::interval(presence_period);
        let mut stopping = *stop.borrow();
        let mut settled = false;
        let mut finishing = false;
        let mut last_msg = Instant::now();
        let drain_deadline = tokio::time::sleep(Duration::MAX.min(Duration::from_secs(86_400)));
        tokio::pin!(drain_deadline);
        loop {
            tokio::select! {
                _ = typing.tick(), if !stopping => {
                    let op = self.edit(&mut rng);
                    self.replica.apply(&op)?;
                    self.shared.edits_typed.fetch_add(1, Ordering::Relaxed);
                    if let Some(out) = self.ot.local(op) {
                        self.send_op(&mut ws, out).await?;
                    }
                }
                // Presence positions refer to `rev`, which does not include unacknowledged local
                // edits: only send it when there are none.
                _ = presence.tick(), if !stopping && cfg.presence_rate > 0.0 && self.ot.is_synchronized() => {
                    let msg = ClientMsg::Presence {
                        doc: self.doc.clone(),
                        rev: self.ot.rev(),
                        sel: vec![(self.cursor as u64, self.cursor as u64)],
                    };
                    Self::send(&mut ws, &msg).await?;
                }
                m = ws.next() => {
                    last_msg = Instant::now();
                    let msg = match m {
                        Some(Ok(Message::Binary(b))) => ServerMsg::from_msgpack(&b)?,
                        Some(Ok(Message::Text(t))) => ServerMsg::from_json(&t)?,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                            attempt += 1;
                            ws = self.connect_any(&cfg, &mut attempt, false).await?;
                            continue;
                        }
                        Some(Ok(_)) => continue,
                    };
                    self.handle(&mut ws, msg).await?;
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    drain_deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
                _ = finish.changed(), if !finishing => finishing = true,
                _ = tokio::time::sleep(QUIET), if stopping => {
                    if !settled && self.ot.is_synchronized() {
                        settled = true;
                        self.shared.settled.fetch_add(1, Ordering::Relaxed);
                    }
                    if finishing && self.ot.is_synchronized() && last_msg.elapsed() >= QUIET {
                        break;
                    }
                }
                _ = &mut drain_deadline => bail!("client {} did not drain", self.idx),
            }
        }
        self.lat.merge_into(&self.shared);
        let _ = ws.close(None).await;
        let text = match &self.replica {
            Replica::Full(r) => Some(r.to_string()),
            Replica::Light(_) => None,
        };
        Ok(ClientEnd {
            doc: self.doc,
            rev: Some(self.ot.rev()),
            text,
        })
    }
}

/// The server's revision and text of a document.
pub(crate) fn server_doc(base: &str, doc: &str, token: Option<&str>) -> Result<(u64, String)> {
    let mut req = ureq::get(&format!("{base}/api/docs/{doc}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let v: serde_json::Value = req.call()?.body_mut().read_json()?;
    Ok((
        v["rev"].as_u64().unwrap_or(0),
        v["text"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Runs the load and returns the report.
pub async fn run(cfg: RunConfig) -> Result<Report> {
    let cfg = Arc::new(cfg);
    let make = |idx: usize, shared: Arc<Shared>, stop: Stop, finish: Stop| {
        let full = cfg.full.is_none_or(|k| idx < k);
        let client = Client {
            idx,
            doc: harness::doc_of(&cfg, idx),
            ot: OtClient::new("", 0),
            replica: if full {
                Replica::Full(Box::new(JumpRope::new()))
            } else {
                Replica::Light(0)
            },
            cursor: 0,
            sent_at: None,
            lat: Latencies::new(),
            baseline: cfg.baseline,
            token: cfg.token.as_deref().map(Arc::from),
            shared,
        };
        client.run(cfg.clone(), stop, finish)
    };
    let server_text: harness::ServerText =
        |base, doc, token| server_doc(base, doc, token).map(|(rev, text)| (Some(rev), text));
    harness::drive("text", cfg.clone(), make, server_text).await
}
