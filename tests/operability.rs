//! Operability against the real binary: Prometheus metrics, readiness, JSON logs, and the
//! limits that protect the server (connections, per-session op rate).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use coedit_protocol::wire::encode_msgpack;
use coedit_protocol::{ClientMsg, ErrorCode, Op, OpMsg, ServerMsg};
use common::{
    connect_and_join, connect_raw, http_raw, read_msg, sample, server_doc, start_server,
    start_server_with, Incoming, TestClient,
};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn metrics(addr: std::net::SocketAddr) -> String {
    let (status, head, body) = http_raw(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    body
}

/// Polls the metrics until `name` has the value `want`.
async fn metric_reaches(addr: std::net::SocketAddr, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(addr);
        if sample(&m, name) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {want}:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_follow_the_work() -> Result<()> {
    let srv = start_server();
    let (status, _, body) = http_raw(srv.addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        (v["ready"].as_bool(), v["store"].as_str()),
        (Some(true), Some("ok"))
    );

    let mut c = TestClient::join(&srv.ws_url(), "m", None, true).await?;
    for i in 0..5 {
        c.edit(Op::insert_at(i, "x")).await?;
        c.settle().await?;
    }
    let m = metrics(srv.addr);
    assert_eq!(
        sample(&m, "coedit_ops_total{result=\"applied\"}"),
        Some(5.0),
        "{m}"
    );
    assert_eq!(sample(&m, "coedit_connections"), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, "coedit_sessions{state=\"ready\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, "coedit_open_documents"), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, "coedit_op_apply_seconds_count"),
        Some(5.0),
        "{m}"
    );
    assert!(
        sample(&m, "coedit_store_flush_seconds_count").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        sample(&m, "coedit_fanout_frames_total").unwrap_or(0.0) >= 6.0,
        "{m}"
    );
    assert!(sample(&m, "coedit_crypto_operations_total{op=\"audit_hash\"}").unwrap_or(0.0) >= 5.0);
    // A refused op is counted as refused, not applied.
    c.send(&ClientMsg::Op(OpMsg::new(
        "m",
        99,
        6,
        &Op::insert_at(0, "y"),
    )))
    .await?;
    c.pump_until(|c| !c.errors.is_empty()).await?;
    assert_eq!(c.errors[0].0, ErrorCode::FutureRevision);
    metric_reaches(srv.addr, "coedit_ops_total{result=\"refused\"}", 1.0).await;
    drop(c);
    metric_reaches(srv.addr, "coedit_connections", 0.0).await;
    metric_reaches(srv.addr, "coedit_sessions{state=\"ready\"}", 0.0).await;
    metric_reaches(srv.addr, "coedit_outbound_queue_frames", 0.0).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_with_503() -> Result<()> {
    let srv = start_server_with("[session]\nmax_connections = 2\n");
    let a = connect_raw(&srv.ws_url()).await?;
    let _b = connect_raw(&srv.ws_url()).await?;
    match tokio_tungstenite::connect_async(srv.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(
                body.contains(&ErrorCode::Unavailable.as_u16().to_string()),
                "{body}"
            );
        }
        other => panic!("expected a 503, got {:?}", other.map(|_| "a connection")),
    }
    assert_eq!(
        sample(&metrics(srv.addr), "coedit_refused_connections_total"),
        Some(1.0)
    );
    // A freed slot can be used again.
    drop(a);
    metric_reaches(srv.addr, "coedit_connections", 1.0).await;
    let _c = connect_raw(&srv.ws_url()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_beyond_the_rate_limit_are_refused_and_not_applied() -> Result<()> {
    let srv = start_server_with("[session]\nmax_ops_per_s = 2.0\nop_burst = 5.0\n");
    let mut ws = connect_and_join(&srv.ws_url(), "r", None).await?;
    let send = |m: &ClientMsg| Message::Binary(encode_msgpack(m).into());
    // 20 ops in a burst, each a valid insert against revision 0.
    for seq in 1..=20u64 {
        ws.send(send(&ClientMsg::Op(OpMsg::new(
            "r",
            0,
            seq,
            &Op::insert_at(0, "x"),
        ))))
        .await?;
    }
    let mut limited = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match read_msg(&mut ws, Duration::from_millis(500)).await? {
            Incoming::Msg(ServerMsg::Error { code, seq, .. }) => {
                assert_eq!(code, ErrorCode::RateLimited);
                limited.push(seq.expect("the refused op's seq"));
            }
            Incoming::Msg(_) => {}
            Incoming::Timeout | Incoming::Closed(_) => break,
        }
    }
    let (text, rev) = server_doc(srv.addr, "r");
    // The burst of 5 (and at most one token refilled meanwhile) went through; the rest did not.
    assert!((5..=7).contains(&rev), "rev {rev}, limited {limited:?}");
    assert_eq!(limited.len() as u64, 20 - rev, "{limited:?}");
    assert_eq!(text, "x".repeat(rev as usize));
    assert_eq!(
        sample(&metrics(srv.addr), "coedit_rate_limited_ops_total"),
        Some((20 - rev) as f64)
    );
    Ok(())
}

#[test]
fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coedit"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(tmp.path())
        .env("COEDIT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON object per line");
            let msg = v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
            seen.push(msg.clone());
            if msg.contains("coedit listening") {
                break;
            }
        }
        assert!(seen.len() < 50, "no listening line among {seen:?}");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|m| m.contains("coedit listening")),
        "{seen:?}"
    );
}
