//! The load generator against the real server, as CI runs it: a short multi-document run with
//! presence, and a sequential trace typed over the network. Asserts convergence and zero
//! errors, not latency (the machine is shared).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use coedit_loadtest::net_replay::{replay_concurrent, replay_sequential, ConcurrentReplayError};
use coedit_loadtest::run::{run, RunConfig};
use coedit_loadtest::trace::Trace;
use common::{env_or, run_coedit, seed, start_server, start_server_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_converges_without_errors() -> anyhow::Result<()> {
    let srv = start_server();
    let seed = seed();
    println!("SEED={seed}");
    // Two URLs for one server (a cluster's nodes would be two servers): clients are spread over
    // both; the third names a closed port, so a third of the clients must move on from it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let report = run(RunConfig {
        urls: vec![
            srv.ws_url(),
            format!("ws://{}/ws?node=2", srv.addr),
            format!("ws://127.0.0.1:{closed}/ws"),
        ],
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
        token: None,
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

/// Yjs clients over Hocuspocus: every update acknowledged once durable, every client's
/// `Y.Text` equal to the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_yjs_run_converges_without_errors() -> anyhow::Result<()> {
    let srv = start_server();
    let seed = seed();
    println!("SEED={seed}");
    let report = coedit_loadtest::yjs_run::run(RunConfig {
        urls: vec![format!("ws://{}/hocuspocus", srv.addr)],
        clients: env_or("COEDIT_SMOKE_CLIENTS", 30),
        docs: 3,
        hot: false,
        rate: 5.0,
        presence_rate: 1.0,
        ramp: Duration::from_secs(1),
        duration: Duration::from_secs(env_or("COEDIT_SMOKE_SECONDS", 4)),
        full: None,
        server_pid: None,
        doc_prefix: "ysmoke-".into(),
        seed,
        baseline: false,
        token: None,
    })
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    assert!(report.converged, "SEED={seed}: clients diverged");
    assert_eq!(report.errors, 0, "SEED={seed}: {:?}", report.errors_by_code);
    assert!(report.edits_typed > 100, "{}", report.edits_typed);
    assert_eq!(report.ops_acked, report.edits_typed, "SEED={seed}");
    assert!(report.visible_ms.p50 > 0.0 && report.ack_ms.p50 > 0.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_trace_typed_over_the_network() -> anyhow::Result<()> {
    // Strict durability; one client sends an op per round trip, faster than the default
    // per-session rate limit allows for long.
    let srv = start_server_with("[session]\nmax_ops_per_s = 1000000.0\nop_burst = 1000000.0\n");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/traces/sequential/automerge-paper.json.gz");
    let trace = Trace::load(&path)?;
    let r = replay_sequential(&srv.ws_url(), "trace-ap", "automerge-paper", &trace).await?;
    println!("{}", serde_json::to_string(&r)?);
    assert!(r.matches_end, "the server's text differs from endContent");
    assert_eq!(r.patches, 259_778);
    Ok(())
}

/// A server tuned for replay speed: no fan-out tick, no fsync per op (the replay checks OT,
/// not durability), no per-session rate limit (each agent sends as fast as acks come).
const FAST: &str = "[document]\nfanout_tick_ms = 0\n[storage]\ndurability = \"relaxed\"\n\
                    [session]\nmax_ops_per_s = 1000000.0\nop_burst = 1000000.0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_traces_typed_by_their_agents() -> anyhow::Result<()> {
    let srv = common::start_server_with(FAST);
    for name in ["friendsforever", "clownschool"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../shared/data/traces/concurrent/{name}.json.gz"));
        let trace = Trace::load(&path)?;
        let r = replay_concurrent(&srv.ws_url(), &format!("c-{name}"), name, &trace).await?;
        println!("{}", serde_json::to_string(&r)?);
        assert!(
            r.matches_end,
            "{name}: the server's text differs from endContent"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causal_order_that_no_server_order_reproduces_is_reported() -> anyhow::Result<()> {
    // Agents 0 and 1 type concurrently; agent 2 has seen agent 1's "y" but not agent 0's "x",
    // which the server ordered first.
    let trace: Trace = serde_json::from_str(
        r#"{"kind": "concurrent", "numAgents": 3, "endContent": "xyz",
            "txns": [
              {"parents": [], "agent": 0, "patches": [[0, 0, "x"]]},
              {"parents": [], "agent": 1, "patches": [[0, 0, "y"]]},
              {"parents": [1], "agent": 2, "patches": [[1, 0, "z"]]}
            ]}"#,
    )?;
    let srv = common::start_server_with(FAST);
    let err = replay_concurrent(&srv.ws_url(), "unorderable", "synthetic", &trace)
        .await
        .expect_err("must be reported");
    let e = err
        .downcast_ref::<ConcurrentReplayError>()
        .unwrap_or_else(|| panic!("wrong error: {err:#}"));
    assert!(matches!(
        e,
        ConcurrentReplayError::NotServerOrderable {
            txn: 2,
            agent: 2,
            needed: 1,
            blocker: 0,
            ..
        }
    ));
    Ok(())
}

/// The load generator against a server in compliance mode: SM4-GCM at rest, SM2 tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_with_tokens_and_encryption() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let k = keys.path().to_str().unwrap();
    assert!(run_coedit(&["keygen", "--out", k]).0);
    let srv = start_server_with(&format!(
        "[crypto]\nmode = \"sm\"\nmaster_key_file = \"{k}/master.key\"\n\
         [auth]\nmode = \"sm2\"\npublic_key_file = \"{k}/sm2.pub.pem\"\n"
    ));
    let key = format!("{k}/sm2.pem");
    let args = [
        "token",
        "issue",
        "--sm2-key",
        &key,
        "--sub",
        "lt",
        "--tenant",
        "t",
        "--grant",
        "smoke-*=editor",
    ];
    let (ok, token) = run_coedit(&args);
    assert!(ok, "{token}");
    let seed = seed();
    println!("SEED={seed}");
    let report = run(RunConfig {
        urls: vec![srv.ws_url()],
        clients: 20,
        docs: 2,
        hot: false,
        rate: 5.0,
        presence_rate: 1.0,
        ramp: Duration::from_millis(500),
        duration: Duration::from_secs(3),
        full: None,
        server_pid: None,
        doc_prefix: "smoke-".into(),
        seed,
        baseline: false,
        token: Some(token.trim().to_string()),
    })
    .await?;
    assert!(report.converged, "SEED={seed}: clients diverged");
    assert_eq!(report.errors, 0, "SEED={seed}: {:?}", report.errors_by_code);
    assert!(report.ops_acked > 50, "{}", report.ops_acked);
    Ok(())
}
