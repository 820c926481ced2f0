//! `jetstream_bench`: what the cluster design's append path costs on a real NATS JetStream
//! server (`docs/CLUSTER.md`, "Scale model"): conditional appends
//! (`Nats-Expected-Last-Subject-Sequence`, one subject per document, each document's appends
//! one after the other as its owner would make them), many documents at once.
//!
//! `cargo run --release -p coedit-actors --example jetstream_bench -- --url nats://127.0.0.1:4222 \
//!   --docs 200 --seconds 10 --batch 1 --bytes 200`
//!
//! Creates (or reuses) a stream `COEDIT_BENCH` (subjects `coedit.bench.>`), deletes it at the
//! end. Prints one JSON line: appends/s, records/s, append latency p50/p99 (ms), refused
//! appends (must be 0: each document has one writer here).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use clap::Parser;

/// Stream used by the benchmark.
const STREAM: &str = "COEDIT_BENCH";

/// Flags.
#[derive(Parser)]
struct Args {
    /// NATS server URL.
    #[arg(
        long,
        default_value = "nats://127.0.0.1:4222",
        env = "COEDIT_BENCH_NATS"
    )]
    url: String,
    /// Documents appending at once (one subject and one writer each).
    #[arg(long, default_value_t = 100, env = "COEDIT_BENCH_DOCS")]
    docs: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10, env = "COEDIT_BENCH_SECONDS")]
    seconds: u64,
    /// Records per append (the owner's group commit per document).
    #[arg(long, default_value_t = 1, env = "COEDIT_BENCH_BATCH")]
    batch: usize,
    /// Bytes per record (a small op record is ~100–200 bytes).
    #[arg(long, default_value_t = 200, env = "COEDIT_BENCH_BYTES")]
    bytes: usize,
    /// Stream replicas (a cluster of at least that many servers).
    #[arg(long, default_value_t = 1, env = "COEDIT_BENCH_REPLICAS")]
    replicas: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = async_nats::connect(&args.url).await?;
    let js = jetstream::new(client);
    let _ = js.delete_stream(STREAM).await;
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["coedit.bench.>".into()],
        storage: stream::StorageType::File,
        num_replicas: args.replicas,
        ..Default::default()
    })
    .await?;
    let appends = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let payload = bytes::Bytes::from(vec![b'x'; args.bytes * args.batch]);
    let mut tasks = Vec::new();
    for d in 0..args.docs {
        let (js, appends, refused, payload) = (
            js.clone(),
            appends.clone(),
            refused.clone(),
            payload.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let subject = format!("coedit.bench.t.doc{d}");
            let mut last = 0u64;
            let mut lat = Vec::new();
            while Instant::now() < end {
                let mut h = HeaderMap::new();
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    last.to_string().as_str(),
                );
                let t = Instant::now();
                let ack = match js
                    .publish_with_headers(subject.clone(), h, payload.clone())
                    .await
                {
                    Ok(f) => f.await,
                    Err(e) => Err(e),
                };
                match ack {
                    Ok(a) => {
                        last = a.sequence;
                        appends.fetch_add(1, Ordering::Relaxed);
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let started = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let n = appends.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "docs": args.docs,
            "batch": args.batch,
            "bytes": args.bytes,
            "replicas": args.replicas,
            "appends_per_s": (n as f64 / secs).round(),
            "records_per_s": (n as f64 * args.batch as f64 / secs).round(),
            "latency_ms_p50": (pct(0.50) * 1000.0).round() / 1000.0,
            "latency_ms_p99": (pct(0.99) * 1000.0).round() / 1000.0,
            "refused": refused.load(Ordering::Relaxed),
        })
    );
    let _ = js.delete_stream(STREAM).await;
    Ok(())
}
