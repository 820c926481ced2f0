//! `[storage] backend = "jetstream"`: documents live in NATS JetStream, not on the node.
//! A real `nats-server -js` and the real binary on 127.0.0.1:
//!
//! - writers edit three text documents over REST while the node is killed
//!   with SIGKILL and another node (another node id, another data directory: nothing local
//!   carries over) takes over on the same NATS; then NATS itself is killed and restarted while
//!   they write: edits wait for it (`/readyz` answers 503 meanwhile) and go on;
//! - afterwards every acknowledged edit is there exactly once: each op inserted one character,
//!   so a document's text has exactly as many characters as its revision, and its revision is at
//!   least the last one acknowledged; `coedit check` verifies the store in JetStream.
//!
//! Without a nats-server binary the test says so and passes, unless `COEDIT_REQUIRE_NATS=1`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::nats::{free_port, nats_binary_or_skip, start_nats};
use common::*;

fn config(nats_url: &str, node: &str) -> String {
    format!(
        "[storage]\nbackend = \"jetstream\"\n[cluster]\nnats = [\"{nats_url}\"]\nnode = \"{node}\"\n\
         replicas = 1\n"
    )
}

fn post(addr: std::net::SocketAddr, doc: &str, rev: u64) -> Result<u64> {
    let body = format!(r#"{{"base_rev":{rev},"op":["x"]}}"#);
    let (status, v) = http(addr, "POST", &format!("/api/docs/{doc}/ops"), Some(&body))?;
    ensure!(status == 200, "POST {doc}: {status} {v}");
    v["rev"].as_u64().context("rev")
}

/// Writers on `docs`, each one op at a time, recording the last acknowledged revision, until
/// `stop`; a refused or failed request ends that writer (the node went away).
fn writers(
    addr: std::net::SocketAddr,
    docs: &[&str],
    acked: &Arc<Vec<AtomicU64>>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    docs.iter()
        .enumerate()
        .map(|(i, doc)| {
            let (acked, stop, doc) = (acked.clone(), stop.clone(), doc.to_string());
            std::thread::spawn(move || {
                let mut rev = acked[i].load(Ordering::SeqCst);
                while !stop.load(Ordering::SeqCst) {
                    match post(addr, &doc, rev) {
                        Ok(r) => {
                            rev = r;
                            acked[i].fetch_max(r, Ordering::SeqCst);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect()
}

#[test]
fn documents_survive_node_loss_and_a_nats_restart() -> Result<()> {
    let Some(bin) = nats_binary_or_skip()? else {
        return Ok(());
    };
    let mut nats = start_nats(&bin, free_port())?;
    let docs = ["c1", "c2", "c3"];
    let acked: Arc<Vec<AtomicU64>> = Arc::new(docs.iter().map(|_| AtomicU64::new(0)).collect());

    // Node 1 serves; writers type; node 1 is killed.
    let mut n1 = start_server_with(&config(&nats.url(), "node-1"));
    let stop = Arc::new(AtomicBool::new(false));
    let w = writers(n1.addr, &docs, &acked, &stop);
    std::thread::sleep(Duration::from_millis(800));
    n1.kill();
    for h in w {
        let _ = h.join();
    }
    let after_kill: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    ensure!(
        after_kill.iter().all(|&r| r > 0),
        "nothing was written: {after_kill:?}"
    );

    // Node 2, with nothing of node 1's, has every acknowledged edit and goes on.
    let n2 = start_server_with(&config(&nats.url(), "node-2"));
    for (i, d) in docs.iter().enumerate() {
        let (_, rev) = server_doc(n2.addr, d);
        ensure!(
            rev >= after_kill[i],
            "{d}: node 2 has {rev}, {} were acknowledged",
            after_kill[i]
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let w = writers(n2.addr, &docs, &acked, &stop);
    std::thread::sleep(Duration::from_millis(500));
    // NATS dies and comes back while they write: edits wait, readiness says so.
    nats.kill();
    let (status, _) = http(n2.addr, "GET", "/readyz", None)?;
    let down_ready = status;
    std::thread::sleep(Duration::from_millis(1500));
    let during: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    nats.restart()?;
    let back = Instant::now();
    let deadline = back + Duration::from_secs(30);
    while http(n2.addr, "GET", "/readyz", None)?.0 != 200 {
        ensure!(
            Instant::now() < deadline,
            "not ready again after NATS came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready_after = back.elapsed();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    for h in w {
        let _ = h.join();
    }
    let end: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    ensure!(
        end.iter().zip(&during).all(|(e, d)| e > d),
        "writing did not go on after NATS came back: {during:?} → {end:?}"
    );
    assert_eq!(down_ready, 503, "/readyz while NATS is down");
    // Exactly once: one character per revision, nothing acknowledged missing.
    for (i, d) in docs.iter().enumerate() {
        let (text, rev) = server_doc(n2.addr, d);
        assert!(rev >= end[i], "{d}: stored {rev}, acknowledged {}", end[i]);
        assert_eq!(
            text.chars().count() as u64,
            rev,
            "{d}: an op lost or applied twice"
        );
    }
    // `coedit check` on the JetStream store: every record of every document, this node's
    // audit chain.
    let cfg = n2.data_dir.with_extension("toml");
    let (ok, out) = run_coedit(&["check", "--config", cfg.to_str().context("path")?]);
    assert!(ok, "{out}");
    for d in docs {
        assert!(out.contains(&format!("ok      {d}: ")), "{out}");
    }
    println!(
        "acknowledged {end:?} (at node 1's kill {after_kill:?}); ready {ready_after:?} after NATS \
         came back"
    );
    Ok(())
}
