//! Cluster mode end to end (`docs/CLUSTER.md`): a 3-server NATS cluster with JetStream (R3)
//! and 3 coedit nodes, all real processes on 127.0.0.1. Clients spread over the nodes type
//! into one hot document and into [`OTHER_DOCS`] others (each client on the node of its
//! index; a client whose connection drops moves to the next node, resumes by revision and
//! resends its unacknowledged op). Meanwhile:
//!
//! (a) the hot document's owner is killed with SIGKILL;
//! (b) the new owner is stopped with SIGSTOP for longer than its lease, another node takes
//!     over, then it gets SIGCONT: its late writes are refused and it steps down (it stays up,
//!     serving the others);
//! (c) one NATS server is killed with SIGKILL (and restarted before `coedit check`).
//!
//! After each phase, and at the end: every acknowledged op is in its document's log exactly
//! once, at the revision its ack named, in the author's order; the log has no gap (revisions
//! 1..=N) and replayed from nothing gives the stored text; every client converged on the
//! stored text; `coedit check` passes on the store. Printed: acked, lost (0), failover times
//! (the longest time the hot document's clients went without an acknowledgement).
//!
//! Bounded: each phase runs a fixed time, every wait has a deadline, every process is killed
//! on drop. Without a nats-server binary the test says so and passes, unless
//! `COEDIT_REQUIRE_NATS=1` (CI).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use coedit_protocol::Op;
use common::nats::{nats_binary_or_skip, start_nats_cluster, Nats};
use common::receiver::{Receiver, Reply};
use common::*;
use rand::{Rng, SeedableRng};

/// Documents besides the hot one.
const OTHER_DOCS: usize = 50;
/// Clients typing into the hot document (spread over the three nodes).
const HOT_CLIENTS: usize = 6;
/// Lease time in the test (short, so that failovers fit the time budget).
const LEASE_MS: u64 = 2_000;
/// Renewal interval in the test.
const RENEW_MS: u64 = 500;
/// Pause between two edits of a hot-document client.
const HOT_PACE: Duration = Duration::from_millis(60);
/// Pause between two edits of another document's client.
const OTHER_PACE: Duration = Duration::from_millis(400);
/// How long clients type in each phase.
const PHASE: Duration = Duration::from_secs(5);
/// Longest a client waits for a node to take its reconnection (hello, join and its answer).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Tries of `coedit check` (NATS may still be electing stream leaders after a fault).
const CHECK_TRIES: usize = 5;
/// Longest a client may take to converge at the end of a phase.
const SETTLE: Duration = Duration::from_secs(40);

/// A node's configuration: cluster mode on `urls`, change events to `hook` (a webhook).
fn node_config(urls: &[String], node: &str, hook: &Hook) -> String {
    let list = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[storage]\nbackend = \"jetstream\"\n[cluster]\nnats = [{list}]\nnode = \"{node}\"\n\
         replicas = 3\nlease_ms = {LEASE_MS}\nrenew_ms = {RENEW_MS}\n\
         [events]\nchanged_interval_ms = 200\n\
         [[events.webhook]]\nname = \"main\"\nurl = \"{}\"\nsecret = \"{}\"\n",
        hook.url, hook.secret
    )
}

/// The webhook every node sends its change events to.
struct Hook {
    url: String,
    secret: String,
}

/// Change events from every node, once delivered: every stored revision of every document is
/// told (a node killed or paused with revisions it had not told leaves them to the document's
/// next owner, which tells them as `recovered`), none past the stored log, and a revision told
/// twice only where one of the two events is such a catch-up (a paused owner's event already
/// on its way when the new owner read the cursor). Returns the `document.changed` events, the
/// revisions told, those told by a new owner's catch-up, and those told twice.
fn events_cover_the_log(
    recv: &Receiver,
    nodes: &[&Server],
    docs: &[String],
) -> Result<(usize, u64, u64, u64)> {
    // Delivered: no new delivery for 2 s (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut since) = (usize::MAX, Instant::now());
    loop {
        let n = recv.deliveries().len();
        if n != last {
            (last, since) = (n, Instant::now());
        } else if since.elapsed() > Duration::from_secs(2) {
            break;
        }
        ensure!(Instant::now() < deadline, "event deliveries never settled");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut events: HashMap<String, serde_json::Value> = HashMap::new();
    for d in recv.deliveries() {
        ensure!(
            d.sig_v1 && d.sig_sm3,
            "an event's signature did not verify: {}",
            d.id
        );
        events.insert(d.id, d.body);
    }
    let mut ranges: HashMap<String, Vec<(u64, u64, bool, String)>> = HashMap::new();
    for (id, e) in &events {
        if e["type"] != "document.changed" {
            continue;
        }
        let doc = e["data"]["document"]
            .as_str()
            .context("document")?
            .to_string();
        let from = e["data"]["revs"]["from"].as_u64().context("from")?;
        let to = e["data"]["revs"]["to"].as_u64().context("to")?;
        let recovered = e["data"]["recovered"].as_bool().unwrap_or(false);
        ensure!(
            from >= 1 && from <= to,
            "{doc}: bad range {from}..{to} in {id}"
        );
        ranges
            .entry(doc)
            .or_default()
            .push((from, to, recovered, id.clone()));
    }
    let (mut told, mut caught_up, mut twice) = (0, 0, 0);
    for doc in docs {
        let (status, v) = http(nodes[0].addr, "GET", &format!("/api/docs/{doc}"), None)?;
        ensure!(status == 200, "{doc}: {status} {v}");
        let stored = v["rev"].as_u64().context("rev")?;
        let mut r = ranges.remove(doc).unwrap_or_default();
        r.sort();
        caught_up += r.iter().filter(|x| x.2).map(|x| x.1 - x.0 + 1).sum::<u64>();
        // Walk the ranges in order: `upto` is the highest revision told so far.
        let mut upto = 0u64;
        let mut last: Option<&(u64, u64, bool, String)> = None;
        for x in &r {
            ensure!(
                x.0 <= upto + 1,
                "{doc}: revisions {}..{} never told (the next event, {}, tells {}..{})",
                upto + 1,
                x.0 - 1,
                x.3,
                x.0,
                x.1
            );
            if x.0 <= upto {
                let prev = last.context("an overlap has a previous range")?;
                ensure!(
                    x.2 || prev.2,
                    "{doc}: revisions told twice by owners' own changes: {prev:?} and {x:?}"
                );
                twice += upto.min(x.1) - x.0 + 1;
            }
            if x.1 > upto {
                upto = x.1;
                last = Some(x);
            }
        }
        ensure!(
            upto == stored,
            "{doc}: the events tell up to revision {upto}, the log ends at {stored}"
        );
        told += stored;
    }
    Ok((events.len(), told, caught_up, twice))
}

/// A document's acknowledged ops: (client, seq) → revision.
type Acks = HashMap<(String, u64), u64>;

/// What every client shares with the test.
#[derive(Default)]
struct Shared {
    /// Acknowledged ops: document → (client, seq) → revision.
    acked: Mutex<HashMap<String, Acks>>,
    /// When hot-document acks arrived.
    hot_acks: Mutex<Vec<Instant>>,
    /// Reconnections made.
    reconnects: Mutex<u64>,
}

/// One typing client and where it connects.
struct Typist {
    client: TestClient,
    urls: Vec<String>,
    node: usize,
    pace: Duration,
    rng: rand::rngs::StdRng,
    seen_acks: usize,
}

impl Typist {
    async fn new(
        urls: Vec<String>,
        node: usize,
        doc: &str,
        pace: Duration,
        seed: u64,
    ) -> Result<Self> {
        let client = TestClient::join(&urls[node], doc, None, seed.is_multiple_of(2)).await?;
        Ok(Typist {
            client,
            urls,
            node,
            pace,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            seen_acks: 0,
        })
    }

    /// Reconnects to the next node until one takes it (bounded).
    async fn reconnect(&mut self, shared: &Shared) -> Result<()> {
        let deadline = Instant::now() + SETTLE;
        loop {
            self.node = (self.node + 1) % self.urls.len();
            self.client.url = self.urls[self.node].clone();
            // A node that does not answer within RECONNECT_TIMEOUT (paused, say) is left for the
            // next one, as a real client does.
            match tokio::time::timeout(RECONNECT_TIMEOUT, self.client.reconnect()).await {
                Ok(Ok(())) => {
                    *shared.reconnects.lock().unwrap() += 1;
                    return Ok(());
                }
                _ => {
                    self.client.ws = None;
                    if Instant::now() > deadline {
                        bail!(
                            "client {} could not reconnect to any node",
                            self.client.id()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Records acks that arrived since the last call.
    fn record(&mut self, shared: &Shared, hot: bool) {
        let acks = &self.client.own_acks[self.seen_acks..];
        if acks.is_empty() {
            return;
        }
        let id = self.client.id();
        let mut all = shared.acked.lock().unwrap();
        let doc = all.entry(self.client.doc.clone()).or_default();
        for (rev, seq) in acks {
            doc.insert((id.clone(), *seq), *rev);
        }
        if hot {
            shared.hot_acks.lock().unwrap().push(Instant::now());
        }
        self.seen_acks = self.client.own_acks.len();
    }

    /// Handles what arrives for `wait`; a closed or broken connection is reconnected.
    async fn pump(&mut self, wait: Duration, shared: &Shared, hot: bool) -> Result<()> {
        if self.client.ws.is_none() {
            self.reconnect(shared).await?;
        }
        match self.client.pump(wait).await {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => self.client.ws = None,
        }
        self.record(shared, hot);
        Ok(())
    }

    /// Types for `period`.
    async fn type_for(&mut self, period: Duration, shared: &Shared, hot: bool) -> Result<()> {
        let end = Instant::now() + period;
        while Instant::now() < end {
            let len = self.client.text.chars().count();
            let at = self.rng.random_range(0..=len);
            let ch = char::from(b'a' + self.rng.random_range(0..26u8));
            // Typed whether connected or not: an edit made offline is sent on reconnect.
            if self
                .client
                .edit(Op::insert_at(at, &ch.to_string()))
                .await
                .is_err()
            {
                self.client.ws = None;
            }
            self.pump(self.pace, shared, hot).await?;
        }
        Ok(())
    }

    /// Pumps until everything typed is acknowledged and nothing more arrives.
    async fn settle(&mut self, shared: &Shared, hot: bool) -> Result<()> {
        let deadline = Instant::now() + SETTLE;
        loop {
            self.pump(Duration::from_millis(150), shared, hot).await?;
            if self.client.ot.is_synchronized() && self.client.ws.is_some() {
                // Quiet for a moment: the others' last ops have arrived too.
                self.pump(Duration::from_millis(400), shared, hot).await?;
                if self.client.ot.is_synchronized() && self.client.ws.is_some() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "client {} on {} did not settle",
                    self.client.id(),
                    self.client.doc
                );
            }
        }
    }
}

/// Runs `work` on every typist at once; returns them.
async fn each<F, Fut>(
    typists: Vec<(Typist, bool)>,
    shared: &Arc<Shared>,
    work: F,
) -> Result<Vec<(Typist, bool)>>
where
    F: Fn(Typist, Arc<Shared>, bool) -> Fut,
    Fut: std::future::Future<Output = Result<Typist>> + Send + 'static,
{
    let tasks: Vec<_> = typists
        .into_iter()
        .map(|(t, hot)| {
            let run = work(t, shared.clone(), hot);
            tokio::spawn(async move { Ok::<_, anyhow::Error>((run.await?, hot)) })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Every typist types for `period`.
async fn phase(
    typists: Vec<(Typist, bool)>,
    shared: &Arc<Shared>,
    period: Duration,
) -> Result<Vec<(Typist, bool)>> {
    each(typists, shared, move |mut t, shared, hot| async move {
        t.type_for(period, &shared, hot).await?;
        Ok(t)
    })
    .await
}

/// Every typist settles: all its ops acknowledged, nothing more arriving.
async fn settle_all(
    typists: Vec<(Typist, bool)>,
    shared: &Arc<Shared>,
) -> Result<Vec<(Typist, bool)>> {
    each(typists, shared, |mut t, shared, hot| async move {
        t.settle(&shared, hot).await?;
        Ok(t)
    })
    .await
}

/// The node that holds document `doc`'s lease, read from the lease bucket.
async fn owner_of(nats_url: &str, doc: &str) -> Result<String> {
    let client = async_nats::connect(nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let kv = js.get_key_value("COEDIT_LEASES").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = kv.get(format!("d.{}", hex_of(doc))).await? {
            let v: serde_json::Value = serde_json::from_slice(&v)?;
            return Ok(v["node"].as_str().context("node")?.to_string());
        }
        ensure!(Instant::now() < deadline, "nobody holds the lease of {doc}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Waits until JetStream answers on every server (a meta leader was elected).
async fn wait_jetstream(urls: &[String]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for u in urls {
        loop {
            let ok = async {
                let c = async_nats::connect(u.as_str()).await.ok()?;
                async_nats::jetstream::new(c).query_account().await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(3), ok)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                break;
            }
            ensure!(Instant::now() < deadline, "JetStream not ready on {u}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The stored log of `doc`, read over REST from whichever node answers for it: revision →
/// (client, seq), and the text.
/// An op in the log: its author, sequence number and the op.
type Logged = (String, u64, Op);

fn stored(nodes: &[&Server], doc: &str) -> Result<(BTreeMap<u64, Logged>, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for n in nodes {
            let (status, v) = http(n.addr, "GET", &format!("/api/docs/{doc}"), None)?;
            if status != 200 {
                continue;
            }
            let text = v["text"].as_str().context("text")?.to_string();
            let rev = v["rev"].as_u64().context("rev")?;
            let mut log = BTreeMap::new();
            let mut from = 0;
            while from < rev {
                let path = format!("/api/docs/{doc}/ops?from={from}&to={rev}");
                let (status, page) = http(n.addr, "GET", &path, None)?;
                ensure!(status == 200, "{path}: {status} {page}");
                for op in page["ops"].as_array().context("ops")? {
                    let r = op["rev"].as_u64().context("rev")?;
                    let c = op["client"].as_str().context("client")?.to_string();
                    let s = op["seq"].as_u64().context("seq")?;
                    let o: Op = serde_json::from_value(op["op"].clone())?;
                    ensure!(
                        log.insert(r, (c, s, o)).is_none(),
                        "{doc}: revision {r} twice"
                    );
                }
                match page["next"].as_u64() {
                    Some(n) => from = n,
                    None => break,
                }
            }
            ensure!(
                log.len() as u64 == rev,
                "{doc}: revision {rev} but the log read from {} holds {} ops (last {:?})",
                n.addr,
                log.len(),
                log.keys().next_back()
            );
            return Ok((log, text));
        }
        ensure!(Instant::now() < deadline, "no node answered for {doc}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// REST through every node: the owner answers, the others forward to it (and name it in
/// `x-coedit-served-by`), all alike; an op posted to a node that does not own the document is
/// applied once (its retry with the same client and seq is a duplicate), and every node shows it.
fn rest_through_every_node(nodes: &[&Server], owner: &str, doc: &str) -> Result<()> {
    let path = format!("/api/docs/{doc}");
    let mut answers = Vec::new();
    for n in nodes {
        let (status, head, body) = http_raw(n.addr, &path);
        ensure!(status == 200, "{}: GET {path}: {status} {body}", n.addr);
        let served_by = head
            .lines()
            .find_map(|l| l.strip_prefix("x-coedit-served-by:"))
            .map(|v| v.trim().to_string());
        let v: serde_json::Value = serde_json::from_str(&body)?;
        answers.push((n.addr, served_by, v["rev"].as_u64(), v["text"].clone()));
    }
    let direct = answers.iter().filter(|a| a.1.is_none()).count();
    ensure!(
        direct == 1,
        "not exactly one node answered itself: {answers:?}"
    );
    ensure!(
        answers
            .iter()
            .all(|a| a.1.as_deref().is_none_or(|o| o == owner)),
        "a forwarded answer came from another node than {owner}: {answers:?}"
    );
    ensure!(
        answers
            .iter()
            .all(|a| (a.2, &a.3) == (answers[0].2, &answers[0].3)),
        "the nodes disagree: {answers:?}"
    );
    let rev = answers[0].2.context("rev")?;
    let via = answers
        .iter()
        .find(|a| a.1.is_some())
        .context("a non-owner")?
        .0;
    let op = format!(r#"{{"base_rev": {rev}, "op": ["R"], "client": "rest-forwarded", "seq": 1}}"#);
    let (status, first) = http(via, "POST", &format!("{path}/ops"), Some(&op))?;
    ensure!(status == 200, "POST through {via}: {status} {first}");
    ensure!(
        first["rev"] == rev + 1 && first["duplicate"] == false,
        "{first}"
    );
    let (status, again) = http(via, "POST", &format!("{path}/ops"), Some(&op))?;
    ensure!(
        status == 200 && again["duplicate"] == true,
        "the retry: {status} {again}"
    );
    for n in nodes {
        let (status, v) = http(n.addr, "GET", &path, None)?;
        ensure!(
            status == 200 && v["rev"] == rev + 1,
            "{}: {status} {v}",
            n.addr
        );
        ensure!(
            v["text"].as_str().is_some_and(|t| t.starts_with('R')),
            "{}: {v}",
            n.addr
        );
    }
    println!("REST through every node: the owner {owner} answered for the others; an op posted to {via} applied once at rev {}", rev + 1);
    Ok(())
}

/// Every check after a phase; returns (acked ops, documents).
fn verify(
    label: &str,
    nodes: &[&Server],
    typists: &[(Typist, bool)],
    shared: &Shared,
) -> Result<u64> {
    let acked = shared.acked.lock().unwrap().clone();
    let mut by_doc: HashMap<String, Vec<&Typist>> = HashMap::new();
    for (t, _) in typists {
        by_doc.entry(t.client.doc.clone()).or_default().push(t);
    }
    let mut total = 0;
    for (doc, clients) in &by_doc {
        let (log, text) = stored(nodes, doc)?;
        let n = log.len() as u64;
        // No gaps: revisions 1..=n.
        ensure!(
            log.keys().copied().eq(1..=n),
            "{label}: {doc}: the log has gaps"
        );
        // The log replayed from nothing is the stored text.
        let mut replay = String::new();
        for (rev, (_, _, op)) in &log {
            replay = op
                .apply_str(&replay)
                .with_context(|| format!("{label}: {doc}: op {rev} does not apply"))?;
        }
        ensure!(
            replay == text,
            "{label}: {doc}: the log replayed is not the stored text"
        );
        // Exactly once: no (client, seq) twice.
        let mut seen = HashSet::new();
        for (rev, (c, s, _)) in &log {
            ensure!(
                seen.insert((c.clone(), *s)),
                "{label}: {doc}: ({c}, {s}) applied twice (again at {rev})"
            );
        }
        // Every acknowledged op at the revision its ack named; per author in order.
        let index: HashMap<(String, u64), u64> = log
            .iter()
            .map(|(r, (c, s, _))| ((c.clone(), *s), *r))
            .collect();
        if let Some(acks) = acked.get(doc) {
            for (key, rev) in acks {
                match index.get(key) {
                    Some(r) => ensure!(
                        r == rev,
                        "{label}: {doc}: {key:?} acknowledged at {rev}, stored at {r}"
                    ),
                    None => bail!("{label}: {doc}: acknowledged op {key:?} (rev {rev}) LOST"),
                }
                total += 1;
            }
        }
        let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
        for (rev, (c, s, _)) in &log {
            if let Some((_, prev)) = last.get(c.as_str()) {
                ensure!(
                    s > prev,
                    "{label}: {doc}: {c}'s seq {s} after {prev} (rev {rev})"
                );
            }
            last.insert(c, (*rev, *s));
        }
        // Converged.
        for t in clients {
            ensure!(
                t.client.text == text,
                "{label}: {doc}: client {} has {:?}, the server {:?}",
                t.client.id(),
                t.client.text,
                text
            );
        }
    }
    Ok(total)
}

/// `coedit check` over the whole store in JetStream (every document's records, every
/// node's audit chain), with `node`'s configuration; retried while NATS settles.
/// Runs `coedit check` on the cluster (through `node`'s configuration); the tries it took.
fn check(label: &str, node: &Server) -> Result<usize> {
    let cfg = node.data_dir.with_extension("toml");
    let mut out = String::new();
    for tries in 1..=CHECK_TRIES {
        let (ok, o) = run_coedit(&["check", "--config", cfg.to_str().context("path")?]);
        if ok {
            ensure!(o.contains("ok      hot: "), "{label}: {o}");
            ensure!(
                o.matches("ok      audit log").count() >= 3,
                "{label}: every node's audit chain is checked: {o}"
            );
            return Ok(tries);
        }
        out = o;
        std::thread::sleep(Duration::from_secs(2));
    }
    bail!("{label}: coedit check failed {CHECK_TRIES} times:\n{out}")
}

fn signal(server: &Server, sig: &str) -> Result<()> {
    let pid = server.pid().context("running")?.to_string();
    ensure!(
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()?
            .success(),
        "kill {sig} {pid}"
    );
    Ok(())
}

/// The failover time as the hot document's clients saw it: the longest time without any
/// acknowledgement in the hot document from `t` (the fault) on.
fn ack_gap_after(shared: &Shared, t: Instant) -> Option<Duration> {
    let mut times: Vec<Instant> = shared
        .hot_acks
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|a| *a > t)
        .collect();
    times.sort();
    let mut prev = t;
    let mut gap = Duration::ZERO;
    for a in &times {
        gap = gap.max(a.duration_since(prev));
        prev = *a;
    }
    times.first().map(|_| gap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_owner_kill_owner_pause_and_nats_server_kill() -> Result<()> {
    let Some(bin) = nats_binary_or_skip()? else {
        return Ok(());
    };
    let seed = seed();
    let mut nats: Vec<Nats> = start_nats_cluster(&bin, 3)?;
    let urls: Vec<String> = nats.iter().map(Nats::url).collect();
    wait_jetstream(&urls).await?;
    let secret = coedit_actors::events::sign::Secret::generate();
    let recv = Receiver::start(
        &secret,
        Arc::new(|_: &str, _: &serde_json::Value, _: u32| Reply::Status(204)),
    );
    let hook = Hook {
        url: recv.url("/events"),
        secret,
    };
    let mut nodes: Vec<Option<Server>> = (0..3)
        .map(|i| {
            Some(start_server_with(&node_config(
                &urls,
                &format!("node-{i}"),
                &hook,
            )))
        })
        .collect();
    let ws: Vec<String> = nodes.iter().map(|n| n.as_ref().unwrap().ws_url()).collect();
    let shared = Arc::new(Shared::default());
    let mut typists = Vec::new();
    for i in 0..HOT_CLIENTS {
        let t = Typist::new(ws.clone(), i % 3, "hot", HOT_PACE, seed + i as u64).await?;
        typists.push((t, true));
    }
    for d in 0..OTHER_DOCS {
        let doc = format!("doc-{d}");
        let t = Typist::new(ws.clone(), d % 3, &doc, OTHER_PACE, seed + 100 + d as u64).await?;
        typists.push((t, false));
    }
    let started = Instant::now();
    let typists = phase(typists, &shared, PHASE).await?;
    let typists = settle_all(typists, &shared).await?;
    {
        let refs: Vec<&Server> = nodes.iter().flatten().collect();
        let n = verify("warm-up", &refs, &typists, &shared)?;
        check("warm-up", refs[0])?;
        println!(
            "warm-up: acked={n} lost=0 reconnects={}",
            shared.reconnects.lock().unwrap()
        );
    }

    // (a) SIGKILL the hot document's owner while they type.
    let owner = owner_of(&urls[0], "hot").await?;
    let victim: usize = owner.trim_start_matches("node-").parse()?;
    let background = {
        let shared = shared.clone();
        tokio::spawn(async move { phase(typists, &shared, PHASE * 2).await })
    };
    tokio::time::sleep(PHASE / 2).await;
    let killed_at = Instant::now();
    nodes[victim].as_mut().unwrap().kill();
    nodes[victim] = None;
    let typists = background.await??;
    let typists = settle_all(typists, &shared).await?;
    let failover_kill = ack_gap_after(&shared, killed_at).context("no ack after the kill")?;
    let refs: Vec<&Server> = nodes.iter().flatten().collect();
    let acked_a = verify("(a) owner killed", &refs, &typists, &shared)?;
    check("(a)", refs[0])?;
    println!(
        "(a) killed owner {owner}: acked={acked_a} lost=0 failover={failover_kill:?} \
         reconnects={}",
        shared.reconnects.lock().unwrap()
    );
    // The killed node comes back (empty: nothing is local) so that three nodes serve again.
    nodes[victim] = Some(start_server_with(&node_config(&urls, &owner, &hook)));
    let ws: Vec<String> = (0..3)
        .map(|i| nodes[i].as_ref().unwrap().ws_url())
        .collect();
    let mut typists = typists;
    for (t, _) in typists.iter_mut() {
        t.urls = ws.clone();
    }

    // (b) SIGSTOP the new owner past its lease; another takes over; SIGCONT: it steps down.
    let owner_b = owner_of(&urls[0], "hot").await?;
    let paused: usize = owner_b.trim_start_matches("node-").parse()?;
    let background = {
        let shared = shared.clone();
        tokio::spawn(async move { phase(typists, &shared, PHASE * 2).await })
    };
    tokio::time::sleep(PHASE / 2).await;
    let stopped_at = Instant::now();
    signal(nodes[paused].as_ref().unwrap(), "-STOP")?;
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
    let taken_over = owner_of(&urls[0], "hot").await?;
    signal(nodes[paused].as_ref().unwrap(), "-CONT")?;
    let typists = background.await??;
    let typists = settle_all(typists, &shared).await?;
    let failover_pause = ack_gap_after(&shared, stopped_at).context("no ack after the pause")?;
    let refs: Vec<&Server> = nodes.iter().flatten().collect();
    let acked_b = verify("(b) owner paused", &refs, &typists, &shared)?;
    check("(b)", refs[0])?;
    ensure!(
        taken_over != owner_b,
        "(b): {owner_b} still held the lease after a pause of twice its lease"
    );
    // The paused node stepped down (its lease was not renewed in time; writes it had under
    // way were refused by the conditional append) and is alive and serving.
    let paused_addr = nodes[paused].as_ref().unwrap().addr;
    let (status, _) = http(paused_addr, "GET", "/healthz", None)?;
    ensure!(
        status == 200,
        "(b): the paused node is not healthy after SIGCONT"
    );
    let step_downs = metric(paused_addr, "coedit_cluster_step_downs_total");
    let fenced = metric(paused_addr, "coedit_cluster_fenced_total");
    ensure!(step_downs >= 1.0, "(b): the paused owner did not step down");
    println!(
        "(b) paused owner {owner_b} for {:?}: {taken_over} took over; it stepped down \
         {step_downs} documents, {fenced} of its writes refused; acked={acked_b} lost=0 \
         failover={failover_pause:?} reconnects={}",
        Duration::from_millis(LEASE_MS * 2),
        shared.reconnects.lock().unwrap()
    );

    // (c) SIGKILL one NATS server while they type.
    let background = {
        let shared = shared.clone();
        tokio::spawn(async move { phase(typists, &shared, PHASE * 2).await })
    };
    tokio::time::sleep(PHASE / 2).await;
    let nats_killed_at = Instant::now();
    nats[2].kill();
    let typists = background.await??;
    let typists = settle_all(typists, &shared).await?;
    let after_nats = ack_gap_after(&shared, nats_killed_at).context("no ack after NATS kill")?;
    let refs: Vec<&Server> = nodes.iter().flatten().collect();
    let acked_c = verify("(c) NATS server killed", &refs, &typists, &shared)?;
    println!(
        "(c) killed nats-server 3 of 3: acked={acked_c} lost=0 longest ack gap {after_nats:?}"
    );

    // `coedit check` with that nats-server still down (its key listings' consumers may be
    // placed on the dead server: `JsKv::kv_keys` tries again).
    let tries = check("(c)", refs[0])?;
    println!("(c) coedit check with nats-server 3 of 3 down: passed on try {tries}");
    let mut docs: Vec<String> = (0..OTHER_DOCS).map(|d| format!("doc-{d}")).collect();
    docs.push("hot".into());
    let (events, told, caught_up, twice) = events_cover_the_log(&recv, &refs, &docs)?;
    println!(
        "change events from 3 nodes: {events} events; all {told} revisions of {} documents \
         told ({caught_up} by new owners' catch-ups), none past the log, {twice} told twice",
        docs.len()
    );
    let owner = owner_of(&urls[0], "hot").await?;
    rest_through_every_node(&refs, &owner, "hot")?;
    let reconnects = *shared.reconnects.lock().unwrap();
    // A deletion sent to a node that does not order the document is forwarded too; then no
    // node has it.
    let owner0: usize = owner_of(&urls[0], "doc-0")
        .await?
        .trim_start_matches("node-")
        .parse()?;
    let via = nodes[(owner0 + 1) % nodes.len()]
        .as_ref()
        .context("every node runs")?
        .addr;
    let (status, v) = http(via, "DELETE", "/api/docs/doc-0", None)?;
    ensure!(
        status == 200 && v["deleted"] == true,
        "DELETE via {via}: {status} {v}"
    );
    for n in &refs {
        let (status, v) = http(n.addr, "GET", "/api/docs/doc-0", None)?;
        ensure!(
            status == 404,
            "{}: doc-0 after its deletion: {status} {v}",
            n.addr
        );
    }
    println!(
        "DELETE through a non-owner node: doc-0 deleted by node-{owner0}, gone from every node"
    );
    println!(
        "cluster: {} clients, 1 hot + {OTHER_DOCS} documents, {:?}; acked={acked_c} lost=0 \
         reconnects={reconnects} SEED={seed}",
        typists.len(),
        started.elapsed()
    );
    Ok(())
}
