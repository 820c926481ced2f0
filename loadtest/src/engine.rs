//! `replay --engine`: replays a sequential trace through `Document::submit` as one client and
//! against the bare rope, in the same process, and reports both times and their ratio.
//!
//! Ops are built from the patches before timing starts (as a server receives them decoded), so
//! `engine_ms` is the document core's cost: validate, apply, record history and exactly-once
//! state. The baseline applies the same patches straight to a `JumpRope`. The two run back to
//! back `runs` times; the times reported are medians and `ratio` is the median of the per-pair
//! ratios, which cancels most of the drift of a shared machine.

use std::time::Instant;

use anyhow::{bail, Result};
use coedit_protocol::{ClientId, Document, DocumentConfig, Op};
use jumprope::JumpRope;
use serde::Serialize;

use crate::trace::Trace;

/// Rope seed of the first run; run `i` uses `RUN_SEED_BASE + i`.
const RUN_SEED_BASE: u64 = 0x5eed;

/// One line of the engine report.
#[derive(Debug, Serialize)]
pub struct EngineReport {
    /// Trace name.
    pub trace: String,
    /// Patches replayed.
    pub patches: usize,
    /// Characters in the final text.
    pub final_chars: usize,
    /// Whether the final text equals the trace's `endContent`.
    pub matches_end: bool,
    /// Median time through `Document::submit`.
    pub engine_ms: f64,
    /// Median time applying the patches to a bare `JumpRope`.
    pub rope_baseline_ms: f64,
    /// Median over the runs of engine time / baseline time.
    pub ratio: f64,
    /// Median time applying the patches to a bare `ropey::Rope`, for the choice of rope.
    pub ropey_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Replays `trace` `runs` times through the engine and the baselines.
pub fn replay(name: &str, trace: &Trace, runs: usize) -> Result<EngineReport> {
    if trace.is_concurrent() {
        bail!("{name}: --engine replays sequential traces; this one is concurrent");
    }
    let ops: Vec<Op> = trace
        .patches()
        .map(|p| Op::splice(p.0, p.1, &p.2))
        .collect();
    let client = ClientId::from("replay");
    let (mut engine, mut baseline, mut ropey_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut final_text = String::new();
    for run in 0..runs.max(1) {
        // Both ropes get the same skip-list layout; it changes from run to run.
        let seed = RUN_SEED_BASE + run as u64;
        let batch = ops.clone();
        let mut doc = Document::from_snapshot(
            coedit_protocol::DocumentSnapshot {
                rev: 0,
                text: trace.start_content.clone(),
                clients: Vec::new(),
            },
            DocumentConfig {
                rope_seed: Some(seed),
                ..DocumentConfig::default()
            },
        );
        let start = Instant::now();
        for (i, op) in batch.into_iter().enumerate() {
            let rev = doc.rev();
            if let Err(e) = doc.submit(&client, i as u64 + 1, rev, op) {
                bail!("{name}: patch {i} refused: {e}");
            }
        }
        engine.push(ms(start));
        final_text = doc.text();

        let mut rope = JumpRope::new_from_seed(seed);
        rope.insert(0, &trace.start_content);
        let start = Instant::now();
        for p in trace.patches() {
            if p.1 > 0 {
                rope.remove(p.0..p.0 + p.1);
            }
            if !p.2.is_empty() {
                rope.insert(p.0, &p.2);
            }
        }
        baseline.push(ms(start));
        if rope.to_string() != final_text {
            bail!("{name}: engine and bare rope disagree");
        }

        let mut rope = ropey::Rope::from_str(&trace.start_content);
        let start = Instant::now();
        for p in trace.patches() {
            if p.1 > 0 {
                rope.remove(p.0..p.0 + p.1);
            }
            if !p.2.is_empty() {
                rope.insert(p.0, &p.2);
            }
        }
        ropey_times.push(ms(start));
    }
    let ratios: Vec<f64> = engine.iter().zip(&baseline).map(|(e, b)| e / b).collect();
    let (engine_ms, rope_baseline_ms) = (median(engine), median(baseline));
    Ok(EngineReport {
        trace: name.to_string(),
        patches: ops.len(),
        final_chars: final_text.chars().count(),
        matches_end: final_text == trace.end_content,
        engine_ms,
        rope_baseline_ms,
        ratio: median(ratios),
        ropey_ms: median(ropey_times),
    })
}
