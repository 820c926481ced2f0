//! Crash safety: the real binary is killed with SIGKILL at random moments while clients type;
//! after every restart, every acknowledged op must be in the log at the revision it was acked
//! with, by its author, revisions contiguous, the text equal to a replay of the log, every acked
//! marker present exactly once; at the end `coedit check` (snapshots equal to the replay) passes.
//!
//! Clients insert unique markers `[client:n]` at marker boundaries only, so markers are never
//! split and each op's presence is visible in the text. Unacknowledged ops are resent after each
//! restart and must be applied exactly once.
//!
//! `COEDIT_CRASH_CYCLES` sets the number of kill/restart cycles (default 20); prints `SEED=…`
//! (replay with `SEED=n`) and the figure `acked=N lost=0 gaps=0 mismatches=0`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coedit_protocol::op::char_len;
use coedit_protocol::Op;
use common::{env_or, http, run_check, seed, server_doc, start_server_at, Server, TestClient};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const DEFAULT_CYCLES: usize = 20;
const CLIENTS: usize = 3;
const CONFIG: &str = "[storage]\nsnapshot_every_ops = 7\n";
const DOC: &str = "crash";

/// Counts of what went wrong (all must be zero).
#[derive(Default, Debug)]
struct Faults {
    lost: usize,
    gaps: usize,
    mismatches: usize,
    /// What each fault was.
    details: Vec<String>,
}

/// Checks the server's log and text against every ack the clients recorded.
fn verify(
    srv: &Server,
    clients: &[TestClient],
    markers: &HashMap<(String, u64), Vec<String>>,
) -> Faults {
    let mut f = Faults::default();
    let (status, v) = http(
        srv.addr,
        "GET",
        &format!("/api/docs/{DOC}/ops?from=0"),
        None,
    )
    .expect("ops");
    assert_eq!(status, 200, "{v}");
    let ops = v["ops"].as_array().cloned().unwrap_or_default();
    let mut text = String::new();
    let mut by_rev = HashMap::new();
    for (i, o) in ops.iter().enumerate() {
        let rev = o["rev"].as_u64().unwrap_or(0);
        if rev != i as u64 + 1 {
            f.gaps += 1;
            f.details.push(format!("op {i} has revision {rev}"));
        }
        let op: Op = serde_json::from_value(o["op"].clone()).expect("op");
        match op.apply_str(&text) {
            Ok(t) => text = t,
            Err(e) => {
                f.mismatches += 1;
                f.details.push(format!("op at {rev} does not replay: {e}"));
            }
        }
        by_rev.insert(
            rev,
            (
                o["client"].as_str().unwrap_or("").to_string(),
                o["seq"].as_u64().unwrap_or(0),
            ),
        );
    }
    // The text at exactly the listed revision: clients may be adding ops meanwhile.
    let n = ops.len();
    let (status, d) =
        http(srv.addr, "GET", &format!("/api/docs/{DOC}?rev={n}"), None).expect("text");
    assert_eq!(status, 200, "{d}");
    let server_text = d["text"].as_str().unwrap_or_default().to_string();
    let server_rev = d["rev"].as_u64().unwrap_or(0);
    if server_text != text || server_rev != n as u64 {
        f.mismatches += 1;
        f.details.push(format!(
            "server text at {server_rev} {server_text:?} differs from the replay of {} ops {text:?}",
            ops.len()
        ));
    }
    for c in clients {
        for &(rev, seq) in c.own_acks.iter().filter(|(rev, _)| *rev <= n as u64) {
            if by_rev.get(&rev) != Some(&(c.id(), seq)) {
                f.lost += 1;
                f.details
                    .push(format!("ack ({rev}, {seq}) of {} not in the log", c.id()));
            }
            for marker in &markers[&(c.id(), seq)] {
                if server_text.matches(marker.as_str()).count() != 1 {
                    f.lost += 1;
                    f.details.push(format!("acked marker {marker} missing"));
                }
            }
        }
    }
    for marker in markers.values().flatten() {
        if server_text.matches(marker.as_str()).count() > 1 {
            f.mismatches += 1;
            f.details.push(format!("marker {marker} applied twice"));
        }
    }
    f
}

/// Character positions where a marker may be inserted without splitting another.
fn boundaries(text: &str) -> Vec<usize> {
    let mut b: Vec<usize> = text
        .chars()
        .enumerate()
        .filter(|(_, c)| *c == '[')
        .map(|(i, _)| i)
        .collect();
    b.push(char_len(text));
    b
}

#[tokio::test]
async fn acknowledged_ops_survive_kill_9() -> anyhow::Result<()> {
    let cycles = env_or("COEDIT_CRASH_CYCLES", DEFAULT_CYCLES);
    let seed = seed();
    println!("SEED={seed} cycles={cycles}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let mut clients: Vec<TestClient> = Vec::new();
    // Markers sent under each (client, seq): buffered edits compose into one op.
    let mut markers: HashMap<(String, u64), Vec<String>> = HashMap::new();
    let mut typed = 0usize;
    for cycle in 0..=cycles {
        let mut srv = start_server_at(&data, CONFIG);
        if cycle == 0 {
            for i in 0..CLIENTS {
                clients.push(
                    TestClient::join(
                        &srv.ws_url(),
                        DOC,
                        Some(&format!("k{i}")),
                        rng.random_bool(0.5),
                    )
                    .await?,
                );
            }
        } else {
            for c in &mut clients {
                c.url = srv.ws_url();
                c.reconnect().await?;
            }
        }
        let f = verify(&srv, &clients, &markers);
        assert_eq!(
            (f.lost, f.gaps, f.mismatches),
            (0, 0, 0),
            "SEED={seed} cycle {cycle}: {f:?}"
        );
        if cycle == cycles {
            for _ in 0..3 {
                for c in &mut clients {
                    c.settle().await?;
                }
            }
            let f = verify(&srv, &clients, &markers);
            let (text, _) = server_doc(srv.addr, DOC);
            for c in &clients {
                assert_eq!(c.text, text, "SEED={seed}: a client diverged");
            }
            let acked: usize = clients.iter().map(|c| c.own_acks.len()).sum();
            println!(
                "acked={acked} lost={} gaps={} mismatches={} (typed {typed} ops, {cycles} kills)",
                f.lost, f.gaps, f.mismatches
            );
            assert_eq!((f.lost, f.gaps, f.mismatches), (0, 0, 0), "SEED={seed}");
            assert!(acked > 0);
            assert!(srv.terminate()?.success());
            let (ok, out) = run_check(&data);
            assert!(ok, "coedit check failed: {out}");
            break;
        }
        let run_for = Duration::from_millis(rng.random_range(30..250));
        let start = Instant::now();
        while start.elapsed() < run_for {
            let c = &mut clients[rng.random_range(0..CLIENTS)];
            if c.ws.is_none() {
                continue;
            }
            let b = boundaries(&c.text);
            let pos = b[rng.random_range(0..b.len())];
            typed += 1;
            let marker = format!("[{}:{typed}]", c.id());
            let op = Op::insert_at(pos, &marker);
            let failed = c.edit(op).await.is_err();
            // The marker travels under the in-flight seq or the next one (buffered edits
            // compose into the next op).
            let seq = c.ot.inflight_seq().unwrap_or(0);
            let key = if c.ot.status() == coedit_protocol::ClientStatus::AwaitingWithBuffer {
                (c.id(), seq + 1)
            } else {
                (c.id(), seq)
            };
            markers.entry(key).or_default().push(marker);
            if failed || c.pump(Duration::from_millis(1)).await.is_err() {
                c.disconnect();
            }
        }
        srv.kill();
        for c in &mut clients {
            c.disconnect();
        }
    }
    Ok(())
}
