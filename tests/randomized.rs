//! Seeded randomized convergence over real WebSockets: 2–8 clients (mixed MessagePack and
//! JSON) make random edits with random delays and random abrupt disconnects and reconnects; at
//! quiescence every replica equals the server's text, and the server's revision equals the
//! number of ops the clients had acknowledged (none lost, none applied twice).
//!
//! Prints `SEED=…`; replay with `SEED=n cargo test --test randomized`. `COEDIT_RANDOM_ROUNDS`
//! sets how many seeds one run tries (default 3).

mod common;

use std::time::Duration;

use coedit_protocol::op::char_len;
use coedit_protocol::Op;
use common::{env_or, seed, server_doc, start_server, TestClient};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const DEFAULT_ROUNDS: u64 = 3;
const STEPS: usize = 300;
const ALPHABET: &[&str] = &["a", "b", "é", "中", "😅", " ", "\n"];

async fn round(seed: u64) -> anyhow::Result<()> {
    println!("SEED={seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let srv = start_server();
    let doc = format!("rand-{seed}");
    let n = rng.random_range(2..=8);
    let mut clients = Vec::new();
    for _ in 0..n {
        let binary = rng.random_bool(0.5);
        clients.push(TestClient::join(&srv.ws_url(), &doc, None, binary).await?);
    }
    let mut edits = 0usize;
    for _ in 0..STEPS {
        let c = &mut clients[rng.random_range(0..n)];
        match rng.random_range(0..100) {
            0..=59 => {
                let len = char_len(&c.text);
                let op = if len == 0 || rng.random_bool(0.65) {
                    let text: String = (0..rng.random_range(1..4))
                        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                        .collect();
                    Op::insert_at(rng.random_range(0..=len), &text)
                } else {
                    let pos = rng.random_range(0..len);
                    Op::delete_at(pos, rng.random_range(1..=(len - pos).min(3)))
                };
                c.edit(op).await?;
                edits += 1;
            }
            60..=89 => {
                let quiet = Duration::from_millis(rng.random_range(0..6));
                if c.ws.is_some() {
                    c.pump(quiet).await?;
                } else {
                    tokio::time::sleep(quiet).await;
                }
            }
            90..=95 => c.disconnect(),
            _ => {
                if c.ws.is_none() {
                    c.reconnect().await?;
                }
            }
        }
    }
    for c in &mut clients {
        if c.ws.is_none() {
            c.reconnect().await?;
        }
    }
    for _ in 0..5 {
        for c in &mut clients {
            c.settle().await?;
        }
    }
    let (text, rev) = server_doc(srv.addr, &doc);
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.text, text, "SEED={seed}: client {i} diverged");
        assert_eq!(c.ot.rev(), rev, "SEED={seed}: client {i} is behind");
    }
    let acked: usize = clients.iter().map(|c| c.own_acks.len()).sum();
    assert!(
        rev as usize <= edits,
        "SEED={seed}: more revisions than edits"
    );
    assert_eq!(
        acked as u64, rev,
        "SEED={seed}: every revision is acked to its author once"
    );
    println!("SEED={seed}: {n} clients, {edits} edits, {rev} revisions, converged");
    Ok(())
}

#[tokio::test]
async fn random_clients_converge() -> anyhow::Result<()> {
    // With SEED set, exactly that round is replayed.
    let rounds = if std::env::var_os("SEED").is_some() {
        1
    } else {
        env_or("COEDIT_RANDOM_ROUNDS", DEFAULT_ROUNDS)
    };
    for _ in 0..rounds {
        round(seed()).await?;
    }
    Ok(())
}
