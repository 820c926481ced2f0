//! The load generator against the real server, as CI runs it: a short multi-document run with
//! presence, and a sequential trace typed over the network. Asserts convergence and zero
//! errors, not latency (the machine is shared).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use coedit_loadtest::net_replay::replay_sequential;
use coedit_loadtest::run::{run, RunConfig};
use coedit_loadtest::trace::Trace;
use common::{env_or, seed, start_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_converges_without_errors() -> anyhow::Result<()> {
    let srv = start_server();
    let seed = seed();
    println!("SEED={seed}");
    let report = run(RunConfig {
        url: srv.ws_url(),
        clients: env_or("COEDIT_SMOKE_CLIENTS", 50),
        docs: 5,
        hot: false,
        rate: 5.0,
        presence_rate: 1.0,
        ramp: Duration::from_secs(1),
        duration: Duration::from_secs(env_or("COEDIT_SMOKE_SECONDS", 8)),
        full: None,
        server_pid: None,
        doc_prefix: "smoke-".into(),
        seed,
        baseline: false,
    })
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    assert!(report.converged, "SEED={seed}: clients diverged");
    assert_eq!(report.errors, 0, "SEED={seed}: {:?}", report.errors_by_code);
    assert!(report.ops_acked > 100, "{}", report.ops_acked);
    assert!(report.visible_ms.p50 > 0.0 && report.ack_ms.p50 > 0.0);
    assert!(
        report.server_cpu_pct.is_some(),
        "the local server's process was not found"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_trace_typed_over_the_network() -> anyhow::Result<()> {
    let srv = start_server();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/traces/sequential/automerge-paper.json.gz");
    let trace = Trace::load(&path)?;
    let r = replay_sequential(&srv.ws_url(), "trace-ap", "automerge-paper", &trace).await?;
    println!("{}", serde_json::to_string(&r)?);
    assert!(r.matches_end, "the server's text differs from endContent");
    assert_eq!(r.patches, 259_778);
    Ok(())
}
