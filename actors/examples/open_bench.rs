//! `open_bench`: how long a document with a long op log takes to open (load the latest
//! snapshot and the ops after it, then replay them), on a real sled store in a temporary
//! directory. A benchmark of the storage layer, so it lives here and not in the load tool
//! (which speaks the protocol only):
//!
//! `cargo run --release -p coedit-actors --example open_bench -- --ops 100999 [--snapshot-every 0]`
//!
//! Prints one JSON line.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use coedit_actors::storage::LogRecord;
use coedit_actors::{SledStore, Store};
use coedit_protocol::{ClientId, Document, DocumentConfig, Op};
use serde::Serialize;

/// Document id used by the benchmark.
const DOC: &str = "bench";
/// Ops written per batch while building the store.
const BATCH: usize = 1000;

/// Flags.
#[derive(Parser)]
struct Args {
    /// Ops in the log.
    #[arg(long, default_value_t = 100_000, env = "COEDIT_BENCH_OPS")]
    ops: u64,
    /// Snapshot every this many ops (0: none; the whole log is replayed).
    #[arg(long, default_value_t = 1000, env = "COEDIT_BENCH_SNAPSHOT_EVERY")]
    snapshot_every: u64,
    /// Timed opens (median reported).
    #[arg(long, default_value_t = 5, env = "COEDIT_BENCH_RUNS")]
    runs: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let report = run(args.ops, args.snapshot_every, args.runs)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The benchmark's report line.
#[derive(Debug, Serialize)]
struct OpenReport {
    /// Ops in the log.
    ops: u64,
    /// Snapshot interval used (0: none, the whole log is replayed).
    snapshot_every: u64,
    /// Ops replayed on open (after the latest snapshot).
    replayed: usize,
    /// Median open time.
    open_ms: f64,
    /// Characters in the document.
    chars: usize,
}

/// Builds a store with `ops` one-character edits (snapshots every `snapshot_every`), then
/// opens the document `runs` times.
fn run(ops: u64, snapshot_every: u64, runs: usize) -> Result<OpenReport> {
    let dir = std::env::temp_dir().join(format!("coedit-open-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = (|| {
        let store = SledStore::open(&dir)?;
        let mut doc = Document::new(DocumentConfig::default());
        let client = ClientId::from("bench");
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..ops {
            // Typing with an occasional backspace, like the traces.
            let len = doc.len_chars();
            let op = if i % 7 == 6 && len > 0 {
                Op::delete_at(len - 1, 1)
            } else {
                Op::insert_at((i as usize * 31) % (len + 1), "x")
            };
            let rev = doc.rev();
            let applied = doc.submit(&client, i + 1, rev, op)?;
            batch.push(LogRecord {
                rev: applied.rev,
                client: "bench".into(),
                seq: i + 1,
                op: applied.op.cloned().unwrap_or_default(),
            });
            if batch.len() == BATCH || i + 1 == ops {
                store.append(DOC, &batch)?;
                batch.clear();
            }
            if snapshot_every > 0 && doc.rev().is_multiple_of(snapshot_every) {
                store.append(DOC, &batch)?;
                batch.clear();
                store.put_snapshot(DOC, &doc.snapshot())?;
            }
        }
        store.flush()?;
        let mut times = Vec::new();
        let mut replayed = 0;
        let mut chars = 0;
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            let stored = store.load(DOC)?;
            replayed = stored.ops.len();
            let d = stored.into_document(DOC, DocumentConfig::default())?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            chars = d.len_chars();
            anyhow::ensure!(d.text() == doc.text(), "reopened text differs");
        }
        times.sort_by(f64::total_cmp);
        Ok(OpenReport {
            ops,
            snapshot_every,
            replayed,
            open_ms: times[times.len() / 2],
            chars,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
