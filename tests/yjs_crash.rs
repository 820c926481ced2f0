//! Crash safety of Yjs documents: the real binary is killed with SIGKILL at random moments
//! while three Hocuspocus clients type, each with its own `yrs` document. Every update inserts
//! a unique marker `[kI:n]` into the `Y.Text` `text` (at a marker boundary, so markers are
//! never split) and sets the key `[kI:n]` in the `Y.Map` `map`. Right before each kill a burst
//! of updates is sent without waiting, so the kill finds updates in flight.
//!
//! An update counts as acknowledged when its `SyncStatus(1)` arrives: the server answers each
//! update and sync step 2 of a channel once it is durable, in order, so statuses are matched to
//! what was sent first-in first-out. A step 2 the client sent in answer to the server's step 1
//! covers everything the client held when it sent it, so its status acknowledges every marker
//! typed before it.
//!
//! After every restart, before any client reconnects, every acknowledged marker must be in the
//! server's content (REST) exactly once, and in its map; then each client reconnects and syncs
//! both ways (its step 2 resends what was not acknowledged). At the end every marker ever typed
//! is in the server's content exactly once, every client equals the server, and
//! `coedit check --data-dir` passes.
//!
//! `COEDIT_CRASH_CYCLES` (shared with `crash.rs`) sets the number of kill/restart cycles
//! (default 10); prints `SEED=…` (replay with `SEED=n`) and `acked=N lost=0`.

mod common;

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use coedit_protocol::yjs::Framing;
use common::{
    connect_raw, decode_yjs_server, env_or, hp_auth, http, read_raw, run_check, seed,
    start_server_at, yjs_error_code, RawIncoming, Server, Ws, YServerMsg,
};
use futures_util::SinkExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, Map, MapRef, ReadTxn, StateVector, Text, TextRef, Transact, Update};

const DEFAULT_CYCLES: usize = 10;
const CLIENTS: usize = 3;
/// Frequent snapshots (so restarts load snapshot + updates); no rate limit to speak of (a
/// refusal would be a fault here).
const CONFIG: &str = "[storage]\nsnapshot_every_ops = 7\n\
    [session]\nmax_ops_per_s = 100000.0\nop_burst = 100000.0\n";
const DOC: &str = "ycrash";
/// Most updates typed right before a kill, without waiting for anything.
const MAX_BURST: usize = 8;
const TEXT: &str = "text";
const MAP: &str = "map";
/// Bound on a reconnect's sync and on the final settling.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);

/// What a status will acknowledge.
#[derive(Debug)]
enum Sent {
    /// An update carrying this marker.
    Update(String),
    /// A sync step 2 sent when the client had typed this many markers.
    Step2(usize),
}

/// One typing client: its own `yrs` document and, while connected, one Hocuspocus channel.
struct Typist {
    name: String,
    doc: Doc,
    text: TextRef,
    map: MapRef,
    framing: Framing,
    ws: Option<Ws>,
    /// Sent on this connection, waiting for their status, in order.
    pending: VecDeque<Sent>,
    /// The server's step 1 was answered on this connection (typing may start).
    synced: bool,
    /// The server's step 2 (the answer to ours) was applied on this connection.
    caught_up: bool,
    /// Every marker typed, in order.
    typed: Vec<String>,
    /// Markers acknowledged.
    acked: HashSet<String>,
    /// What the server refused or complained about (must stay empty).
    faults: Vec<String>,
}

impl Typist {
    fn new(name: String) -> Self {
        let doc = Doc::new();
        let (text, map) = (doc.get_or_insert_text(TEXT), doc.get_or_insert_map(MAP));
        Typist {
            name,
            doc,
            text,
            map,
            framing: Framing::Hocuspocus(DOC.into()),
            ws: None,
            pending: VecDeque::new(),
            synced: false,
            caught_up: false,
            typed: Vec::new(),
            acked: HashSet::new(),
            faults: Vec::new(),
        }
    }

    /// Drops the connection; whatever was not acknowledged stays in the replica and goes in
    /// the next step 2.
    fn disconnect(&mut self) {
        self.ws = None;
        self.pending.clear();
        self.synced = false;
        self.caught_up = false;
    }

    async fn send(&mut self, frame: Vec<u8>) {
        let failed = match self.ws.as_mut() {
            Some(ws) => ws.send(Message::Binary(frame.into())).await.is_err(),
            None => false,
        };
        if failed {
            self.disconnect();
        }
    }

    /// Connects, authenticates the channel and sends sync step 1, then waits until the
    /// server's step 1 is answered and its step 2 applied.
    async fn connect(&mut self, srv: &Server) -> Result<()> {
        self.disconnect();
        self.ws = Some(connect_raw(&format!("ws://{}/hocuspocus", srv.addr)).await?);
        self.send(hp_auth(DOC, "")).await;
        let sv = self.doc.transact().state_vector().encode_v1();
        self.send(self.framing.sync_step1(&sv)).await;
        let deadline = Instant::now() + SYNC_TIMEOUT;
        while !(self.synced && self.caught_up) {
            ensure!(
                self.ws.is_some(),
                "{}: disconnected while syncing",
                self.name
            );
            ensure!(Instant::now() < deadline, "{}: sync timed out", self.name);
            self.pump(Duration::from_millis(50)).await?;
        }
        Ok(())
    }

    /// Handles what arrives until `quiet` passes without a message (or the connection ends).
    async fn pump(&mut self, quiet: Duration) -> Result<()> {
        while let Some(ws) = self.ws.as_mut() {
            match read_raw(ws, quiet).await {
                RawIncoming::Timeout => break,
                RawIncoming::Binary(b) => {
                    let (_, msg) = decode_yjs_server(&b, true)?;
                    self.handle(msg).await?;
                }
                RawIncoming::Closed(_) => self.disconnect(),
                RawIncoming::Text(t) => bail!("{}: a text frame {t:?}", self.name),
            }
        }
        Ok(())
    }

    async fn handle(&mut self, msg: YServerMsg) -> Result<()> {
        match msg {
            YServerMsg::SyncStep1(sv) => {
                let sv = StateVector::decode_v1(&sv)?;
                let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                self.pending.push_back(Sent::Step2(self.typed.len()));
                self.send(self.framing.sync_step2(&diff)).await;
                self.synced = true;
            }
            YServerMsg::SyncStep2(u) => {
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(&u)?)?;
                self.caught_up = true;
            }
            YServerMsg::Update(u) => {
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(&u)?)?;
            }
            YServerMsg::SyncStatus(status) => {
                let sent = self
                    .pending
                    .pop_front()
                    .ok_or_else(|| anyhow!("{}: status {status} for nothing sent", self.name))?;
                match (status, sent) {
                    (1, Sent::Update(m)) => {
                        self.acked.insert(m);
                    }
                    (1, Sent::Step2(n)) => self.acked.extend(self.typed[..n].iter().cloned()),
                    (s, sent) => self.faults.push(format!("status {s} for {sent:?}")),
                }
            }
            YServerMsg::Stateless(j) | YServerMsg::PermissionDenied(j) => self
                .faults
                .push(format!("error {:?}: {j}", yjs_error_code(&j))),
            YServerMsg::Close(r) => self.faults.push(format!("channel closed: {r}")),
            YServerMsg::Authenticated(_) | YServerMsg::Awareness(_) | YServerMsg::Pong => {}
        }
        Ok(())
    }

    /// Types marker number `n` at a marker boundary, as one update.
    async fn type_marker(&mut self, rng: &mut SmallRng, n: usize) {
        let marker = format!("[{}:{n}]", self.name);
        let update = {
            let mut txn = self.doc.transact_mut();
            let text = self.text.get_string(&txn);
            let mut boundaries: Vec<usize> = text.match_indices('[').map(|(i, _)| i).collect();
            boundaries.push(text.len());
            let at = boundaries[rng.random_range(0..boundaries.len())];
            self.text.insert(&mut txn, at as u32, &marker);
            self.map.insert(&mut txn, marker.clone(), n.to_string());
            txn.encode_update_v1()
        };
        self.typed.push(marker.clone());
        self.pending.push_back(Sent::Update(marker));
        self.send(self.framing.update(&update)).await;
    }

    /// The replica's `(text, map)`.
    fn content(&self) -> (String, Value) {
        let txn = self.doc.transact();
        let map = serde_json::to_value(self.map.to_json(&txn)).unwrap_or(Value::Null);
        (self.text.get_string(&txn), map)
    }
}

/// The server's `(text, map)` of the document over REST (empty before anything is stored).
fn server_content(srv: &Server) -> (String, Value) {
    let (status, v) = http(srv.addr, "GET", &format!("/api/docs/{DOC}"), None).expect("GET");
    if status == 404 {
        return (String::new(), json!({}));
    }
    assert_eq!(status, 200, "{v}");
    let c = &v["content"];
    let text = c[TEXT].as_str().unwrap_or_default().to_string();
    let map = match &c[MAP] {
        Value::Null => json!({}),
        m => m.clone(),
    };
    (text, map)
}

/// Every acknowledged marker once in the server's text and in its map; no marker twice.
/// Returns `(lost, duplicated, details)`.
fn verify(srv: &Server, clients: &[Typist]) -> (usize, usize, Vec<String>) {
    let (text, map) = server_content(srv);
    let (mut lost, mut duplicated, mut details) = (0, 0, Vec::new());
    for c in clients {
        for m in &c.typed {
            let n = text.matches(m.as_str()).count();
            if c.acked.contains(m) && (n != 1 || map.get(m).is_none()) {
                lost += 1;
                details.push(format!(
                    "acknowledged {m}: {n} in the text, in map: {}",
                    map.get(m).is_some()
                ));
            } else if n > 1 {
                duplicated += 1;
                details.push(format!("{m} {n} times in the text"));
            }
        }
    }
    (lost, duplicated, details)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_yjs_updates_survive_kill_9() -> Result<()> {
    let cycles = env_or("COEDIT_CRASH_CYCLES", DEFAULT_CYCLES);
    let seed = seed();
    println!("SEED={seed} cycles={cycles}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let mut clients: Vec<Typist> = (0..CLIENTS).map(|i| Typist::new(format!("k{i}"))).collect();
    let mut typed = 0usize;
    // Markers acknowledged when the server was last killed.
    let mut acked_at_kills = 0usize;
    // Updates and step 2s sent and not acknowledged when the server was killed, over all kills.
    let mut in_flight_at_kills = 0usize;
    for cycle in 0..=cycles {
        let mut srv = start_server_at(&data, CONFIG);
        // What the server holds after the crash, before any client can resend anything.
        let (lost, duplicated, details) = verify(&srv, &clients);
        assert_eq!(
            (lost, duplicated),
            (0, 0),
            "SEED={seed} cycle {cycle}: {details:#?}"
        );
        for c in &mut clients {
            c.connect(&srv).await?;
        }
        if cycle == cycles {
            settle(&mut clients).await?;
            let (lost, duplicated, details) = verify(&srv, &clients);
            let server = server_content(&srv);
            for c in &clients {
                assert!(c.content() == server, "SEED={seed}: {} diverged", c.name);
                assert!(
                    c.faults.is_empty(),
                    "SEED={seed}: {}: {:?}",
                    c.name,
                    c.faults
                );
                for m in &c.typed {
                    assert_eq!(server.0.matches(m.as_str()).count(), 1, "SEED={seed}: {m}");
                    assert!(server.1.get(m).is_some(), "SEED={seed}: {m} not in the map");
                }
            }
            let acked: usize = clients.iter().map(|c| c.acked.len()).sum();
            println!(
                "acked={acked} lost={lost} duplicated={duplicated} (typed {typed} updates, \
                 {acked_at_kills} acknowledged by the last kill, {in_flight_at_kills} in flight \
                 at the kills, {cycles} kills)"
            );
            assert_eq!((lost, duplicated), (0, 0), "SEED={seed}: {details:#?}");
            assert!(acked > 0);
            assert!(srv.terminate()?.success());
            let (ok, out) = run_check(&data);
            assert!(ok, "coedit check failed: {out}");
            break;
        }
        let run_for = Duration::from_millis(rng.random_range(30..250));
        let start = Instant::now();
        let mut round = 0usize;
        while start.elapsed() < run_for {
            let i = rng.random_range(0..CLIENTS);
            if clients[i].ws.is_some() && clients[i].synced {
                typed += 1;
                clients[i].type_marker(&mut rng, typed).await;
            }
            clients[i].pump(Duration::from_millis(1)).await?;
            round += 1;
            if round.is_multiple_of(8) {
                for c in &mut clients {
                    c.pump(Duration::from_millis(1)).await?;
                }
            }
        }
        // A last burst, and the kill while it is in flight (some of it may be durable, none
        // acknowledged).
        for _ in 0..rng.random_range(0..=MAX_BURST) {
            let i = rng.random_range(0..CLIENTS);
            if clients[i].ws.is_some() && clients[i].synced {
                typed += 1;
                clients[i].type_marker(&mut rng, typed).await;
            }
        }
        srv.kill();
        acked_at_kills = clients.iter().map(|c| c.acked.len()).sum();
        in_flight_at_kills += clients.iter().map(|c| c.pending.len()).sum::<usize>();
        for c in &mut clients {
            ensure!(
                c.faults.is_empty(),
                "SEED={seed}: {}: {:?}",
                c.name,
                c.faults
            );
            c.disconnect();
        }
    }
    Ok(())
}

/// Waits until every client's updates are acknowledged, then has each fetch what it lacks (a
/// last step 1) so all hold the server's document.
async fn settle(clients: &mut [Typist]) -> Result<()> {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    while clients.iter().any(|c| !c.pending.is_empty()) {
        ensure!(Instant::now() < deadline, "statuses missing");
        for c in clients.iter_mut() {
            ensure!(c.ws.is_some(), "{} disconnected", c.name);
            c.pump(Duration::from_millis(10)).await?;
        }
    }
    for c in clients.iter_mut() {
        c.caught_up = false;
        let sv = c.doc.transact().state_vector().encode_v1();
        c.send(c.framing.sync_step1(&sv)).await;
        while !c.caught_up {
            ensure!(c.ws.is_some(), "{} disconnected", c.name);
            ensure!(Instant::now() < deadline, "{}: no step 2", c.name);
            c.pump(Duration::from_millis(10)).await?;
        }
    }
    for c in clients.iter_mut() {
        c.pump(Duration::from_millis(100)).await?;
    }
    Ok(())
}
