//! What `run` does the same for every kind of client (text OT clients in [`crate::run`], Yjs
//! clients in [`crate::yjs_run`]): the report and its percentiles, the counters and histograms
//! the clients share, each client's latency recording, and the run's timeline — start the
//! clients over the ramp, sample the server, tell them to stop, wait until every one has
//! nothing unacknowledged, let them drain until quiet, then check convergence against the
//! server's REST read and measure CPU.
//!
//! Invariants: a client counts itself `settled` once (when stopped with nothing in flight, or
//! when it fails), so the harness can tell "quiet" from "still waiting for acks"; CPU is
//! measured over the ramp and typing only (not the drain); a run against the baseline server
//! skips the convergence check.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

use crate::procstat;
use crate::run::RunConfig;

/// Largest latency recorded, in microseconds (larger values are clamped).
pub(crate) const MAX_LATENCY_US: u64 = 120_000_000;
/// Significant figures of the histograms (1% precision keeps 1,000 clients' histograms small).
const SIGFIGS: u8 = 2;
/// Silence after which a stopped, synchronized client is done.
pub(crate) const QUIET: Duration = Duration::from_millis(300);
/// Longest a client may take to drain after the run.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on connecting, and on each answer during connection setup.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// CPU share (of all cores) above which the machine counts as saturated.
const SATURATED_SHARE: f64 = 0.85;

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
    /// Document kind driven: `text` (OT ops on `/ws`) or `yjs` (Yjs updates on `/hocuspocus`).
    pub kind: &'static str,
    /// Clients.
    pub clients: usize,
    /// Documents.
    pub docs: usize,
    /// Typing time (after the ramp), seconds.
    pub duration_s: f64,
    /// Edits each client was asked to make per second.
    pub rate: f64,
    /// Edits typed by all clients (every one reaches the server: text: each is sent as an op,
    /// or composed into the next op while one is in flight; Yjs: each is its own update).
    pub edits_typed: u64,
    /// Ops (Yjs: updates) sent (local edits composed while one was in flight count once).
    pub ops_sent: u64,
    /// Ops acknowledged (Yjs: edits confirmed by `SyncStatus(true)`).
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
    pub errors_by_code: BTreeMap<u16, u64>,
    /// Reconnections after the server closed a connection.
    pub reconnects: u64,
    /// Every client at the server's revision (text) and every full replica equal to the
    /// server's text.
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

pub(crate) fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIGS)
        .expect("constant histogram bounds are valid")
}

/// Counters and histograms shared by the clients.
pub(crate) struct Shared {
    start: Instant,
    pub(crate) ops_sent: AtomicU64,
    pub(crate) edits_typed: AtomicU64,
    pub(crate) ops_acked: AtomicU64,
    /// Clients that stopped typing and have nothing unacknowledged, or that failed.
    pub(crate) settled: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    errors_by_code: Mutex<BTreeMap<u16, u64>>,
    ack: Mutex<Histogram<u32>>,
    visible: Mutex<Histogram<u32>>,
    /// Visible latency per second of the run.
    timeline: Mutex<Vec<Histogram<u32>>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            start: Instant::now(),
            ops_sent: AtomicU64::new(0),
            edits_typed: AtomicU64::new(0),
            ops_acked: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            errors_by_code: Mutex::new(BTreeMap::new()),
            ack: Mutex::new(histogram()),
            visible: Mutex::new(histogram()),
            timeline: Mutex::new(Vec::new()),
        }
    }

    /// Microseconds since the run started: the clock every client shares (one process).
    pub(crate) fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Counts an error the server reported with a protocol error code.
    pub(crate) fn error_code(&self, code: u16) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.note_code(code);
    }

    /// Notes the code of an error counted elsewhere (a client that fails on it).
    pub(crate) fn note_code(&self, code: u16) {
        if let Ok(mut m) = self.errors_by_code.lock() {
            *m.entry(code).or_default() += 1;
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

/// One client's latency histograms, merged into [`Shared`] when it finishes (no lock per
/// sample).
pub(crate) struct Latencies {
    ack: Histogram<u32>,
    visible: Histogram<u32>,
    second: Histogram<u32>,
    second_idx: usize,
}

impl Latencies {
    pub(crate) fn new() -> Self {
        Latencies {
            ack: histogram(),
            visible: histogram(),
            second: histogram(),
            second_idx: 0,
        }
    }

    /// Counts one acknowledged op sent at `sent`.
    pub(crate) fn acked(&mut self, shared: &Shared, sent: Option<Instant>) {
        shared.ops_acked.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = sent {
            let us = (at.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US);
            let _ = self.ack.record(us);
        }
    }

    /// Records that an edit sent at `t` (µs on the shared clock) became visible here.
    pub(crate) fn visible(&mut self, shared: &Shared, t: u64) {
        let now = shared.now_us();
        let v = now.saturating_sub(t).clamp(1, MAX_LATENCY_US);
        let _ = self.visible.record(v);
        let second = (now / 1_000_000) as usize;
        if second != self.second_idx {
            shared.merge_second(self.second_idx, &self.second);
            self.second.reset();
            self.second_idx = second;
        }
        let _ = self.second.record(v);
    }

    /// Adds this client's samples to the run's.
    pub(crate) fn merge_into(&self, shared: &Shared) {
        if let Ok(mut h) = shared.ack.lock() {
            let _ = h.add(&self.ack);
        }
        if let Ok(mut h) = shared.visible.lock() {
            let _ = h.add(&self.visible);
        }
        shared.merge_second(self.second_idx, &self.second);
    }
}

/// What a finished client reports.
pub(crate) struct ClientEnd {
    pub(crate) doc: String,
    /// The revision it reached, where the protocol has one (text).
    pub(crate) rev: Option<u64>,
    /// Its text, for a full replica.
    pub(crate) text: Option<String>,
}

/// The server's revision (where comparable) and text of a document: `(base, doc, token)`.
pub(crate) type ServerText = fn(&str, &str, Option<&str>) -> Result<(Option<u64>, String)>;

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

/// The number of documents of the run.
pub(crate) fn doc_count(cfg: &RunConfig) -> usize {
    if cfg.hot {
        1
    } else {
        cfg.docs.max(1)
    }
}

/// The document client `idx` edits.
pub(crate) fn doc_of(cfg: &RunConfig, idx: usize) -> String {
    format!("{}{}", cfg.doc_prefix, idx % doc_count(cfg))
}

/// How long client `idx` waits before connecting (clients start evenly over the ramp).
pub(crate) fn ramp_delay(cfg: &RunConfig, idx: usize) -> Duration {
    cfg.ramp.mul_f64(idx as f64 / cfg.clients.max(1) as f64)
}

/// Runs one client per index (`client(idx, shared, stop, finish)`): see the module
/// documentation. `server_text` reads a document back for the convergence check.
pub(crate) async fn drive<Fut>(
    kind: &'static str,
    cfg: Arc<RunConfig>,
    mut client: impl FnMut(usize, Arc<Shared>, watch::Receiver<bool>, watch::Receiver<bool>) -> Fut,
    server_text: ServerText,
) -> Result<Report>
where
    Fut: Future<Output = Result<ClientEnd>> + Send + 'static,
{
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        anyhow::bail!("--rate must be a positive number of edits per second");
    }
    if !(cfg.presence_rate.is_finite() && cfg.presence_rate >= 0.0) {
        anyhow::bail!("--presence-rate must be zero or a positive number per second");
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if cfg.urls.is_empty() {
        anyhow::bail!("give at least one --url");
    }
    let (base, port, host) = http_base(cfg.first_url())?;
    let local = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    let server_pid = cfg
        .server_pid
        .or_else(|| local.then(|| procstat::listener_pid(port)).flatten());
    let shared = Arc::new(Shared::new());
    let server_before = server_pid.and_then(procstat::usage);
    let own_before = procstat::usage(procstat::own_pid());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (finish_tx, finish_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(cfg.clients);
    for idx in 0..cfg.clients {
        let run = client(idx, shared.clone(), stop_rx.clone(), finish_rx.clone());
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let r = run.await;
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
    let bases: Vec<String> = std::iter::once(Ok(base.clone()))
        .chain(cfg.urls.iter().skip(1).map(|u| http_base(u).map(|b| b.0)))
        .collect::<Result<_>>()?;
    let mut converged = ends.len() == cfg.clients;
    let mut server_state = HashMap::new();
    for end in ends.iter().filter(|_| !cfg.baseline) {
        if !server_state.contains_key(&end.doc) {
            // Cluster mode: REST reads are answered by the node ordering the document (the
            // others answer 503), so each URL is asked in turn.
            let state = tokio::task::spawn_blocking({
                let (bases, doc, token) = (bases.clone(), end.doc.clone(), cfg.token.clone());
                move || {
                    let mut last = None;
                    for base in &bases {
                        match server_text(base, &doc, token.as_deref()) {
                            Ok(s) => return Ok(s),
                            Err(e) => last = Some(e),
                        }
                    }
                    Err(last.unwrap_or_else(|| anyhow::anyhow!("no URL")))
                }
            })
            .await??;
            server_state.insert(end.doc.clone(), state);
        }
        let (rev, text) = &server_state[&end.doc];
        let rev_differs = matches!((end.rev, rev), (Some(a), Some(b)) if a != *b);
        if rev_differs || end.text.as_ref().is_some_and(|t| t != text) {
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
    let pct = |h: &Mutex<Histogram<u32>>| h.lock().map(|h| Percentiles::of(&h)).unwrap_or_default();
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
        kind,
        clients: cfg.clients,
        docs: doc_count(&cfg),
        duration_s: cfg.duration.as_secs_f64(),
        rate: cfg.rate,
        edits_typed: shared.edits_typed.load(Ordering::Relaxed),
        ops_sent: shared.ops_sent.load(Ordering::Relaxed),
        ops_acked: acked,
        ops_per_s: acked as f64 / wall.as_secs_f64(),
        ack_ms: pct(&shared.ack),
        visible_ms: pct(&shared.visible),
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
<text x="{PAD}" y="20">op → visible latency ({}), {} clients, {} docs, {} edits/s each (ms per second of run)</text>
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="black"/>
<text x="4" y="{PAD}">{max:.1}</text><text x="20" y="{b}">0</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{p50}"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" points="{p99}"/>
<text x="{r}" y="{l1}" text-anchor="end" fill="#1f77b4">p50</text>
<text x="{r}" y="{l2}" text-anchor="end" fill="#d62728">p99</text>
</svg>
"##,
        report.kind,
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
