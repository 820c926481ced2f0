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
//! replica must equal the server's text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use coedit_protocol::wire::{encode_msgpack, PROTOCOL_VERSION};
use coedit_protocol::{
    transform_position, ClientMsg, Op, OpMsg, OtClient, Outgoing, ServerMsg, ServerOpOutcome,
};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use jumprope::JumpRope;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::procstat;

/// Largest latency recorded, in microseconds (larger values are clamped).
const MAX_LATENCY_US: u64 = 120_000_000;
/// Significant figures of the histograms (1% precision keeps 1,000 clients' histograms small).
const SIGFIGS: u8 = 2;
/// Silence after which a stopped, synchronized client is done.
const QUIET: Duration = Duration::from_millis(300);
/// Longest a client may take to drain after the run.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on connecting, and on each answer during connection setup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Characters typed.
const ALPHABET: &[char] = &['a', 'e', 'o', 't', ' ', 'n', 'é', '中', '\n'];
/// Share of edits that are backspaces.
const BACKSPACE_SHARE: f64 = 0.15;
/// CPU share (of all cores) above which the machine counts as saturated.
const SATURATED_SHARE: f64 = 0.85;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// `ws://host:port/ws`.
    pub url: String,
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

/// p50/p90/p99/p99.9/max in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u32>) -> Self {
        let ms = |us: u64| us as f64 / 1e3;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Clients.
    pub clients: usize,
    /// Documents.
    pub docs: usize,
    /// Typing time (after the ramp), seconds.
    pub duration_s: f64,
    /// Edits each client was asked to make per second.
    pub rate: f64,
    /// Edits typed by all clients (every one reaches the server: each is sent as an op, or
    /// composed into the next op while one is in flight).
    pub edits_typed: u64,
    /// Ops sent (local edits composed while one was in flight count once).
    pub ops_sent: u64,
    /// Ops acknowledged.
    pub ops_acked: u64,
    /// Acknowledged ops per second over the whole run.
    pub ops_per_s: f64,
    /// Op → ack latency.
    pub ack_ms: Percentiles,
    /// Op → visible-to-another-client latency.
    pub visible_ms: Percentiles,
    /// Error messages received, failed connections and lost local edits.
    pub errors: u64,
    /// Error messages received, by protocol error code.
    pub errors_by_code: std::collections::BTreeMap<u16, u64>,
    /// Reconnections after the server closed a connection.
    pub reconnects: u64,
    /// Every client at the server's revision and every full replica equal to its text.
    pub converged: bool,
    /// Whether convergence was checked (not against the baseline server).
    pub convergence_checked: bool,
    /// Server resident memory at the end (MB), when the server runs locally.
    pub server_rss_mb: Option<f64>,
    /// Server CPU use during the run, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU time per acknowledged op, milliseconds.
    pub server_cpu_ms_per_edit: Option<f64>,
    /// Load generator CPU use, percent of one core.
    pub loadgen_cpu_pct: Option<f64>,
    /// Load generator resident memory at the end (MB).
    pub loadgen_rss_mb: Option<f64>,
    /// The machine was saturated and the load generator used more CPU than the server: the
    /// figures measure the generator as much as the server.
    pub loadgen_bound: Option<bool>,
    /// Visible latency p50 and p99 (ms) per second of the run, for the plot.
    pub timeline: Vec<(f64, f64)>,
}

fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIGS)
        .expect("constant histogram bounds are valid")
}

/// Counters and histograms shared by the clients.
struct Shared {
    start: Instant,
    ops_sent: AtomicU64,
    edits_typed: AtomicU64,
    ops_acked: AtomicU64,
    /// Clients that stopped typing and have nothing unacknowledged, or that failed.
    settled: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    errors_by_code: Mutex<std::collections::BTreeMap<u16, u64>>,
    ack: Mutex<Histogram<u32>>,
    visible: Mutex<Histogram<u32>>,
    /// Visible latency per second of the run.
    timeline: Mutex<Vec<Histogram<u32>>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn merge(&self, ack: &Histogram<u32>, visible: &Histogram<u32>) {
        if let Ok(mut h) = self.ack.lock() {
            let _ = h.add(ack);
        }
        if let Ok(mut h) = self.visible.lock() {
            let _ = h.add(visible);
        }
    }

    fn merge_second(&self, second: usize, h: &Histogram<u32>) {
        if let Ok(mut t) = self.timeline.lock() {
            while t.len() <= second {
                t.push(histogram());
            }
            let _ = t[second].add(h);
        }
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

/// What a finished client reports.
struct ClientEnd {
    doc: String,
    rev: u64,
    text: Option<String>,
}

/// One client. See the module documentation.
struct Client {
    idx: usize,
    doc: String,
    ot: OtClient,
    replica: Replica,
    cursor: usize,
    /// When the op in flight was sent.
    sent_at: Option<Instant>,
    ack: Histogram<u32>,
    visible: Histogram<u32>,
    second: Histogram<u32>,
    second_idx: usize,
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

    fn record_visible(&mut self, t: u64) {
        let now = self.shared.now_us();
        let v = now.saturating_sub(t).clamp(1, MAX_LATENCY_US);
        let _ = self.visible.record(v);
        let second = (now / 1_000_000) as usize;
        if second != self.second_idx {
            self.shared.merge_second(self.second_idx, &self.second);
            self.second.reset();
            self.second_idx = second;
        }
        let _ = self.second.record(v);
    }

    fn acked(&mut self) {
        self.shared.ops_acked.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = self.sent_at.take() {
            let us = (at.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US);
            let _ = self.ack.record(us);
        }
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
                                self.record_visible(t);
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
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut m) = self.shared.errors_by_code.lock() {
                    *m.entry(code.as_u16()).or_default() += 1;
                }
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
        let ramp = cfg
            .ramp
            .mul_f64(self.idx as f64 / cfg.clients.max(1) as f64);
        tokio::time::sleep(ramp).await;
        let mut ws = self.connect(&cfg.url, true).await?;
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
                            ws = self.connect(&cfg.url, false).await?;
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
        self.shared.merge(&self.ack, &self.visible);
        self.shared.merge_second(self.second_idx, &self.second);
        let _ = ws.close(None).await;
        let text = match &self.replica {
            Replica::Full(r) => Some(r.to_string()),
            Replica::Light(_) => None,
        };
        Ok(ClientEnd {
            doc: self.doc,
            rev: self.ot.rev(),
            text,
        })
    }
}

/// `http://host:port`, the port and the host, from `ws://host:port/…`.
pub(crate) fn http_base(url: &str) -> Result<(String, u16, String)> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("--url must start with ws:// (got {url})"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let port = hostport
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(80);
    let host = hostport
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .to_string();
    Ok((format!("http://{hostport}"), port, host))
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
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        bail!("--rate must be a positive number of edits per second");
    }
    if !(cfg.presence_rate.is_finite() && cfg.presence_rate >= 0.0) {
        bail!("--presence-rate must be zero or a positive number per second");
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (base, port, host) = http_base(&cfg.url)?;
    let local = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    let server_pid = cfg
        .server_pid
        .or_else(|| local.then(|| procstat::listener_pid(port)).flatten());
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        start: Instant::now(),
        ops_sent: AtomicU64::new(0),
        edits_typed: AtomicU64::new(0),
        ops_acked: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        errors_by_code: Mutex::new(Default::default()),
        ack: Mutex::new(histogram()),
        visible: Mutex::new(histogram()),
        timeline: Mutex::new(Vec::new()),
    });
    let docs = if cfg.hot { 1 } else { cfg.docs.max(1) };
    let server_before = server_pid.and_then(procstat::usage);
    let own_before = procstat::usage(procstat::own_pid());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (finish_tx, finish_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(cfg.clients);
    for idx in 0..cfg.clients {
        let full = cfg.full.is_none_or(|k| idx < k);
        let client = Client {
            idx,
            doc: format!("{}{}", cfg.doc_prefix, idx % docs),
            ot: OtClient::new("", 0),
            replica: if full {
                Replica::Full(Box::new(JumpRope::new()))
            } else {
                Replica::Light(0)
            },
            cursor: 0,
            sent_at: None,
            ack: histogram(),
            visible: histogram(),
            second: histogram(),
            second_idx: 0,
            baseline: cfg.baseline,
            token: cfg.token.as_deref().map(Arc::from),
            shared: shared.clone(),
        };
        let (cfg, stop, finish, shared) = (
            cfg.clone(),
            stop_rx.clone(),
            finish_rx.clone(),
            shared.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client.run(cfg, stop, finish).await;
            if r.is_err() {
                shared.settled.fetch_add(1, Ordering::Relaxed);
            }
            r
        }));
    }
    let typing_start = Instant::now();
    let mut peak_rss = 0u64;
    let total = cfg.ramp + cfg.duration;
    while typing_start.elapsed() < total {
        tokio::time::sleep(
            Duration::from_secs(1).min(total.saturating_sub(typing_start.elapsed())),
        )
        .await;
        if let Some(u) = server_pid.and_then(procstat::usage) {
            peak_rss = peak_rss.max(u.rss);
        }
    }
    let wall = typing_start.elapsed();
    let server_after = server_pid.and_then(procstat::usage);
    let own_after = procstat::usage(procstat::own_pid());
    let _ = stop_tx.send(true);
    // Only when no client has anything in flight can "quiet" mean "done".
    let settle_deadline = Instant::now() + DRAIN_TIMEOUT;
    while shared.settled.load(Ordering::Relaxed) < cfg.clients as u64
        && Instant::now() < settle_deadline
    {
        tokio::time::sleep(QUIET).await;
    }
    let _ = finish_tx.send(true);
    let mut ends = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(end)) => ends.push(end),
            Ok(Err(e)) => {
                eprintln!("client failed: {e:#}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("client task failed: {e}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let mut converged = ends.len() == cfg.clients;
    let mut server_state = std::collections::HashMap::new();
    for end in ends.iter().filter(|_| !cfg.baseline) {
        if !server_state.contains_key(&end.doc) {
            let state = tokio::task::spawn_blocking({
                let (base, doc, token) = (base.clone(), end.doc.clone(), cfg.token.clone());
                move || server_doc(&base, &doc, token.as_deref())
            })
            .await??;
            server_state.insert(end.doc.clone(), state);
        }
        let (rev, text) = &server_state[&end.doc];
        if end.rev != *rev || end.text.as_ref().is_some_and(|t| t != text) {
            converged = false;
        }
    }
    let cpu_pct = |b: Option<procstat::Usage>, a: Option<procstat::Usage>| {
        Some((a?.cpu.saturating_sub(b?.cpu)).as_secs_f64() / wall.as_secs_f64() * 100.0)
    };
    let server_cpu_pct = cpu_pct(server_before, server_after);
    let loadgen_cpu_pct = cpu_pct(own_before, own_after);
    let acked = shared.ops_acked.load(Ordering::Relaxed);
    let server_cpu_ms_per_edit = match (server_before, server_after) {
        (Some(b), Some(a)) if acked > 0 => {
            Some(a.cpu.saturating_sub(b.cpu).as_secs_f64() * 1e3 / acked as f64)
        }
        _ => None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let loadgen_bound = match (loadgen_cpu_pct, server_cpu_pct) {
        (Some(l), Some(s)) => Some(l > s && (l + s) >= SATURATED_SHARE * cores * 100.0),
        (Some(l), None) => Some(l >= SATURATED_SHARE * cores * 100.0),
        _ => None,
    };
    let ack = shared
        .ack
        .lock()
        .map(|h| Percentiles::of(&h))
        .unwrap_or_default();
    let visible = shared
        .visible
        .lock()
        .map(|h| Percentiles::of(&h))
        .unwrap_or_default();
    let timeline = shared
        .timeline
        .lock()
        .map(|t| {
            t.iter()
                .map(|h| {
                    let p = Percentiles::of(h);
                    (p.p50, p.p99)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Report {
        clients: cfg.clients,
        docs,
        duration_s: cfg.duration.as_secs_f64(),
        rate: cfg.rate,
        edits_typed: shared.edits_typed.load(Ordering::Relaxed),
        ops_sent: shared.ops_sent.load(Ordering::Relaxed),
        ops_acked: acked,
        ops_per_s: acked as f64 / wall.as_secs_f64(),
        ack_ms: ack,
        visible_ms: visible,
        errors: shared.errors.load(Ordering::Relaxed),
        errors_by_code: shared
            .errors_by_code
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
        reconnects: shared.reconnects.load(Ordering::Relaxed),
        converged,
        convergence_checked: !cfg.baseline,
        server_rss_mb: server_pid.map(|_| peak_rss as f64 / (1024.0 * 1024.0)),
        server_cpu_pct,
        server_cpu_ms_per_edit,
        loadgen_cpu_pct,
        loadgen_rss_mb: own_after.map(|u| u.rss as f64 / (1024.0 * 1024.0)),
        loadgen_bound,
        timeline,
    })
}

/// An SVG plot of visible latency p50 and p99 per second.
pub fn plot_svg(report: &Report) -> String {
    const W: f64 = 640.0;
    const H: f64 = 320.0;
    const PAD: f64 = 40.0;
    let max = report.timeline.iter().map(|p| p.1).fold(1.0_f64, f64::max);
    let n = report.timeline.len().max(2) as f64 - 1.0;
    let line = |pick: fn(&(f64, f64)) -> f64| {
        report
            .timeline
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let x = PAD + (W - 2.0 * PAD) * i as f64 / n;
                let y = H - PAD - (H - 2.0 * PAD) * pick(p) / max;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{PAD}" y="20">op → visible latency, {} clients, {} docs, {} edits/s each (ms per second of run)</text>
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="black"/>
<text x="4" y="{PAD}">{max:.1}</text><text x="20" y="{b}">0</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{p50}"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" points="{p99}"/>
<text x="{r}" y="{l1}" text-anchor="end" fill="#1f77b4">p50</text>
<text x="{r}" y="{l2}" text-anchor="end" fill="#d62728">p99</text>
</svg>
"##,
        report.clients,
        report.docs,
        report.rate,
        b = H - PAD,
        r = W - PAD,
        l1 = PAD + 12.0,
        l2 = PAD + 26.0,
        p50 = line(|p| p.0),
        p99 = line(|p| p.1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        let (base, port, host) = http_base("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(
            (base.as_str(), port, host.as_str()),
            ("http://127.0.0.1:8080", 8080, "127.0.0.1")
        );
        assert!(http_base("http://x").is_err());
    }

    #[test]
    fn percentiles_in_ms() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert!((p.p50 - 500.0).abs() < 10.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 15.0, "{p:?}");
    }
}
