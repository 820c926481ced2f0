//! `open-storm`: many documents opened at once, as after a server restart when every client
//! reconnects. Each of `--docs` connections says hello and joins its own document, all at
//! once; the report gives the time until every join was answered and the spread of join
//! latencies. With `--ops N` it first writes N one-character ops into every document (so a
//! later run against a restarted server has something to load).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use coedit_protocol::{ClientMsg, Op, OpMsg, ServerMsg};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::net_replay::{hello, recv, send, Ws};

/// Connections being established at once (the rest wait), so the client's own connect burst
/// does not overflow the listen backlog.
const CONNECTS_AT_ONCE: usize = 256;

/// The report line.
#[derive(Debug, Serialize)]
pub struct StormReport {
    /// Documents joined.
    pub docs: usize,
    /// Ops written into each document first.
    pub ops_per_doc: u64,
    /// From the first connect to the last join answer, milliseconds.
    pub all_joined_ms: f64,
    /// Join latency (join sent → answer), milliseconds: median.
    pub join_p50_ms: f64,
    /// 99th percentile.
    pub join_p99_ms: f64,
    /// Slowest.
    pub join_max_ms: f64,
}

/// Opens `docs` documents named `{prefix}{i}` at once; see the module documentation.
pub async fn run(url: &str, docs: usize, prefix: &str, ops: u64) -> Result<StormReport> {
    let gate = Arc::new(Semaphore::new(CONNECTS_AT_ONCE));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(docs);
    for i in 0..docs {
        let (url, doc, gate) = (url.to_string(), format!("{prefix}{i}"), gate.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await?;
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(&url, None, true).await?;
            drop(permit);
            hello(&mut ws).await?;
            let sent = Instant::now();
            let join = ClientMsg::Join {
                doc: doc.clone(),
                rev: None,
            };
            send(&mut ws, &join).await?;
            let rev = match recv(&mut ws).await? {
                ServerMsg::Snapshot { rev, .. } => rev,
                other => bail!("{doc}: expected a snapshot, got {other:?}"),
            };
            let latency = sent.elapsed();
            write_ops(&mut ws, &doc, rev, ops).await?;
            Ok::<(Duration, Ws), anyhow::Error>((latency, ws))
        }));
    }
    let mut latencies = Vec::with_capacity(docs);
    let mut sockets = Vec::with_capacity(docs);
    for t in tasks {
        let (latency, ws) = t.await??;
        latencies.push(latency.as_secs_f64() * 1e3);
        sockets.push(ws);
    }
    let all_joined_ms = start.elapsed().as_secs_f64() * 1e3;
    drop(sockets);
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(StormReport {
        docs,
        ops_per_doc: ops,
        all_joined_ms,
        join_p50_ms: at(0.5),
        join_p99_ms: at(0.99),
        join_max_ms: at(1.0),
    })
}

/// Writes `ops` one-character inserts into `doc`, one at a time (each waits for its ack).
async fn write_ops(ws: &mut Ws, doc: &str, mut rev: u64, ops: u64) -> Result<()> {
    for seq in 1..=ops {
        let op = ClientMsg::Op(OpMsg::new(doc, rev, seq, &Op::insert_at(0, "x")));
        send(ws, &op).await?;
        loop {
            match recv(ws).await? {
                ServerMsg::Ops { ops, .. } if ops.iter().any(|r| r.seq == seq) => {
                    rev = ops.last().map_or(rev, |r| r.rev);
                    break;
                }
                ServerMsg::Error { code, msg, .. } => bail!("{doc}: error {code:?}: {msg}"),
                _ => {}
            }
        }
    }
    Ok(())
}
