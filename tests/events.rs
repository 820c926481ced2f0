//! Change events end to end: the real binary delivers to a real HTTP receiver on 127.0.0.1
//! (`common::receiver`) that checks both signatures with its own HMAC code and fails on purpose
//! (500s, 429 with `Retry-After`, answers slower than the sender's timeout, 400s, a 410).
//!
//! - `events_are_signed_ordered_retried_and_operable`: text (WebSocket and REST) and Yjs
//!   documents under authentication and SM4 at rest; every event acknowledged exactly once and
//!   never sent again after its acknowledgement, in order per document, revisions contiguous
//!   from 1, authors and actors right; session and refusal events (opt-in); dead letters listed
//!   and replayed with `coedit events`; a sink disabled by 410 and enabled again; the metrics
//!   and the audit chain's delivery records agree with the receiver.
//! - `events_survive_kill_9`: writers keep editing while coedit is killed with SIGKILL and
//!   restarted; afterwards every durable revision is covered by exactly one event id, no event
//!   names a revision that is not stored, and the order per document holds. Duplicates (only
//!   from the crashes) carry the same id and body. `COEDIT_EVENT_KILLS` sets the cycles.
//!
//! Seeded: the seed is printed; `SEED=` replays the receiver's choices and the kill times.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use coedit_protocol::Op;
use common::receiver::{Delivery, Policy, Receiver, Reply};
use common::secure::{issue, setup};
use common::*;
use serde_json::Value;

/// Bound on waiting for deliveries to settle.
const SETTLE: Duration = Duration::from_secs(30);

/// A deterministic draw in `[0, 1)` from the seed and an event id and attempt.
fn draw(seed: u64, id: &str, attempt: u32) -> f64 {
    // FNV-1a over seed, id and attempt: the same choices for the same seed.
    let mut x: u64 = 0xcbf29ce484222325 ^ seed;
    for b in id.bytes().chain(attempt.to_le_bytes()) {
        x ^= u64::from(b);
        x = x.wrapping_mul(0x100000001b3);
    }
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn doc_of(d: &Delivery) -> String {
    let data = &d.body["data"];
    format!(
        "{}:{}",
        data["tenant"].as_str().unwrap_or("-"),
        data["document"].as_str().unwrap_or("-")
    )
}

fn kind(d: &Delivery) -> &str {
    d.body["type"].as_str().unwrap_or("")
}

/// The acknowledged deliveries of `path`, first acknowledgement of each id, in order.
fn acked(all: &[Delivery], path: &str) -> Vec<Delivery> {
    let mut seen = HashSet::new();
    all.iter()
        .filter(|d| d.path == path && d.acked() && seen.insert(d.id.clone()))
        .cloned()
        .collect()
}

/// Checks the change events of one document (acknowledged, in order): `document.created`
/// first when it starts at 1, `document.changed` ranges contiguous from 1 to `last`.
fn check_ranges(doc: &str, events: &[&Delivery], last: u64) -> Result<()> {
    let mut next = 1;
    for d in events {
        match kind(d) {
            "document.created" => ensure!(next == 1, "{doc}: created after changes"),
            "document.changed" => {
                let (from, to) = (
                    d.body["data"]["revs"]["from"].as_u64().unwrap_or(0),
                    d.body["data"]["revs"]["to"].as_u64().unwrap_or(0),
                );
                ensure!(
                    from == next && to >= from,
                    "{doc}: changed {from}..={to}, expected from {next}"
                );
                next = to + 1;
            }
            _ => {}
        }
    }
    ensure!(
        next == last + 1,
        "{doc}: events cover 1..={}, stored {last}",
        next - 1
    );
    Ok(())
}

fn current_rev(addr: std::net::SocketAddr, doc: &str, token: Option<&str>) -> Result<u64> {
    let (status, v) = http_auth(addr, "GET", &format!("/api/docs/{doc}"), None, token)?;
    ensure!(status == 200, "GET {doc}: {status} {v}");
    v["rev"].as_u64().context("rev")
}

fn post_text(addr: std::net::SocketAddr, doc: &str, rev: u64, token: Option<&str>) -> Result<u64> {
    let body = format!(r#"{{"base_rev":{rev},"op":["x"]}}"#);
    let (status, v) = http_auth(
        addr,
        "POST",
        &format!("/api/docs/{doc}/ops"),
        Some(&body),
        token,
    )?;
    ensure!(status == 200, "POST {doc}: {status} {v}");
    v["rev"].as_u64().context("rev")
}

fn post_yjs(addr: std::net::SocketAddr, doc: &str, n: u64, token: &str) -> Result<()> {
    use yrs::{ReadTxn, StateVector, Text, Transact};
    let d = yrs::Doc::with_client_id(1000 + n);
    d.get_or_insert_text("text")
        .push(&mut d.transact_mut(), &format!("y{n} "));
    let update = d
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let resp = ureq::post(&format!("http://{addr}/api/docs/{doc}/updates"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/octet-stream")
        .config()
        .http_status_as_error(false)
        .build()
        .send(&update[..])?;
    ensure!(resp.status() == 200, "POST updates: {}", resp.status());
    Ok(())
}

fn coedit_events(server: &Server, token: &str, args: &[&str]) -> Result<Value> {
    let url = format!("http://{}", server.addr);
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    all.extend(["--url", &url, "--token", token]);
    let (ok, out) = run_coedit(&all);
    ensure!(ok, "coedit {all:?}: {out}");
    serde_json::from_str(&out).with_context(|| out.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_ordered_retried_and_operable() -> Result<()> {
    let seed = seed();
    println!("SEED={seed}");
    let secret = coedit_actors::events::sign::Secret::generate();
    let main_policy: Policy = Arc::new(move |path: &str, body: &Value, attempt: u32| {
        let id = body["id"].as_str().unwrap_or("");
        match path {
            "/main" if attempt == 1 => {
                let x = draw(seed, id, attempt);
                if x < 0.25 {
                    Reply::Status(500)
                } else if x < 0.35 {
                    Reply::Slow(Duration::from_millis(900), 503)
                } else if x < 0.45 {
                    Reply::RetryAfter(429, 0)
                } else {
                    Reply::Status(200)
                }
            }
            "/main" if attempt == 2 && draw(seed, id, 2) < 0.3 => Reply::Status(502),
            "/main" => Reply::Status(204),
            "/dead" => Reply::Status(400),
            "/gone" => Reply::Status(410),
            _ => Reply::Status(404),
        }
    });
    let recv = Receiver::start(&secret, main_policy);
    let s = setup();
    let config = format!(
        "{}[events]\nchanged_interval_ms = 150\nretry_base_ms = 20\nretry_max_s = 1\n\
         max_attempts = 6\n\
         [[events.webhook]]\nname = \"main\"\nurl = \"{main}\"\nsecret = \"{secret}\"\n\
         timeout_ms = 400\nevents = [\"document.created\", \"document.changed\", \
         \"document.deleted\", \"session.joined\", \"session.left\", \"access.denied\"]\n\
         [[events.webhook]]\nname = \"strict\"\nurl = \"{dead}\"\nsecret = \"{secret}\"\n\
         events = [\"document.created\"]\n\
         [[events.webhook]]\nname = \"gone\"\nurl = \"{gone}\"\nsecret = \"{secret}\"\n\
         tenants = [\"acme\"]\n",
        s.config,
        main = recv.url("/main"),
        dead = recv.url("/dead"),
        gone = recv.url("/gone"),
    );
    let server = start_server_at(&s.data, &config);
    let addr = server.addr;
    let alice = issue(&s, "alice", "acme", &["notes-*=editor"], false);
    let bob = issue(&s, "bob", "acme", &["notes-*=owner"], false);
    let viewer = issue(&s, "vera", "acme", &["notes-*=viewer"], false);
    let admin = issue(&s, "root", "acme", &["*=owner"], true);

    // alice types into notes-1 over WebSocket, bob into notes-2 over REST, a Yjs document.
    let mut ws = TestClient::join_as(&server.ws_url(), "notes-1", None, true, Some(&alice)).await?;
    let mut rev2 = 0;
    let typing = std::time::Instant::now();
    for i in 0..40u64 {
        ws.edit(Op::insert_at(0, "a")).await?;
        ws.settle().await?;
        if i % 2 == 0 {
            rev2 = post_text(addr, "notes-2", rev2, Some(&bob))?;
        }
        if i % 10 == 0 {
            post_yjs(addr, "notes-y", i, &bob)?;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    ws.settle().await?;
    let typed_ms = typing.elapsed().as_millis() as u64;
    // A viewer's write is refused: access.denied.
    let (status, _) = http_auth(
        addr,
        "POST",
        "/api/docs/notes-1/ops",
        Some(r#"{"base_rev":0,"op":["v"]}"#),
        Some(&viewer),
    )?;
    assert_eq!(status, 403);
    ws.disconnect();
    let rev1 = current_rev(addr, "notes-1", Some(&alice))?;
    let revy = current_rev(addr, "notes-y", Some(&bob))?;
    assert_eq!(rev1, 40);
    assert_eq!(revy, 4);
    // bob deletes notes-2: its last change, then document.deleted.
    let (status, v) = http_auth(addr, "DELETE", "/api/docs/notes-2", None, Some(&bob))?;
    assert_eq!(status, 200, "{v}");

    recv.wait_until(SETTLE, "every main event acknowledged", |all| {
        let a = acked(all, "/main");
        let covered = |doc: &str, last: u64| {
            a.iter().any(|d| {
                doc_of(d) == doc
                    && kind(d) == "document.changed"
                    && d.body["data"]["revs"]["to"].as_u64() == Some(last)
            })
        };
        covered("acme:notes-1", rev1)
            && covered("acme:notes-y", revy)
            && a.iter().any(|d| kind(d) == "document.deleted")
            && a.iter().any(|d| kind(d) == "session.left")
            && a.iter().any(|d| kind(d) == "access.denied")
    })?;
    let all = recv.deliveries();
    // Signatures: both verify on every attempt of every sink.
    for d in &all {
        assert!(
            d.sig_v1 && d.sig_sm3,
            "bad signature on {} {}",
            d.path,
            d.id
        );
        assert_eq!(d.body["id"].as_str(), Some(d.id.as_str()));
        assert_eq!(d.body["schema"], 1);
        assert!(d.id.starts_with("evt_"));
        assert!(d.body["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
    }
    // Exactly once per acknowledgement: no id acknowledged twice, none sent after its ack.
    let main: Vec<&Delivery> = all.iter().filter(|d| d.path == "/main").collect();
    let mut acked_at: HashMap<&str, usize> = HashMap::new();
    for (i, d) in main.iter().enumerate() {
        if let Some(first) = acked_at.get(d.id.as_str()) {
            panic!("{} sent again (attempt {i}) after its ack at {first}", d.id);
        }
        if d.acked() {
            acked_at.insert(&d.id, i);
        }
    }
    let failed = main.iter().filter(|d| !d.acked()).count();
    assert!(
        failed > 0,
        "the receiver failed no attempt: the test proves nothing"
    );
    // In order per document, contiguous revisions from 1, right authors.
    let a = acked(&all, "/main");
    let mut per_doc: BTreeMap<String, Vec<&Delivery>> = BTreeMap::new();
    for d in &a {
        if kind(d).starts_with("document.") {
            per_doc.entry(doc_of(d)).or_default().push(d);
        }
    }
    check_ranges("notes-1", &per_doc["acme:notes-1"], rev1)?;
    check_ranges("notes-y", &per_doc["acme:notes-y"], revy)?;
    let n2 = &per_doc["acme:notes-2"];
    assert_eq!(kind(n2.last().expect("events")), "document.deleted");
    assert_eq!(n2.last().expect("deleted").body["data"]["actor"], "bob");
    check_ranges("notes-2", &n2[..n2.len() - 1], rev2)?;
    for d in &per_doc["acme:notes-1"] {
        if kind(d) == "document.changed" {
            assert_eq!(d.body["data"]["authors"], serde_json::json!(["alice"]));
            assert_eq!(d.body["data"]["actor"], "alice");
            assert_eq!(d.body["data"]["kind"], "text");
        }
    }
    assert_eq!(per_doc["acme:notes-y"][0].body["data"]["kind"], "yjs");
    // Coalesced: at most one change per 150 ms interval, never one per edit.
    let stamps: Vec<std::time::SystemTime> = per_doc["acme:notes-1"]
        .iter()
        .filter(|d| kind(d) == "document.changed")
        .map(|d| {
            humantime::parse_rfc3339(d.body["timestamp"].as_str().unwrap_or(""))
                .expect("RFC 3339 timestamp")
        })
        .collect();
    for w in stamps.windows(2) {
        let gap = w[1].duration_since(w[0]).unwrap_or_default();
        assert!(
            gap >= Duration::from_millis(150),
            "two changes {gap:?} apart"
        );
    }
    assert!(
        (stamps.len() as u64) <= typed_ms / 150 + 2,
        "{} changes in {typed_ms} ms of typing",
        stamps.len()
    );
    // Session and refusal events.
    let joined = a
        .iter()
        .find(|d| kind(d) == "session.joined")
        .expect("joined");
    assert_eq!(joined.body["data"]["actor"], "alice");
    assert_eq!(joined.body["data"]["document"], "notes-1");
    assert_eq!(joined.body["data"]["role"], "editor");
    let denied = a
        .iter()
        .find(|d| kind(d) == "access.denied")
        .expect("denied");
    assert_eq!(denied.body["data"]["actor"], "vera");
    assert_eq!(denied.body["data"]["code"], 5006);

    // The metrics agree with the receiver (the last answer may still be on its way back).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (metric(addr, "coedit_events_delivered_total{sink=\"main\"}") as usize) < a.len()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let delivered = metric(addr, "coedit_events_delivered_total{sink=\"main\"}");
    assert_eq!(delivered as usize, a.len());
    assert!(
        metric(addr, "coedit_events_failed_attempts_total{sink=\"main\"}") >= failed as f64 - 1.0
    );

    // "strict" answers 400: every created event dead-lettered after one attempt.
    recv.wait_until(SETTLE, "three dead letters", |_| {
        coedit_events(&server, &admin, &["list", "--dead", "--sink", "strict"])
            .ok()
            .and_then(|v| v["dead"].as_array().map(Vec::len))
            == Some(3)
    })?;
    let dead = coedit_events(&server, &admin, &["list", "--dead"])?;
    let dead_ids: Vec<String> = dead["dead"]
        .as_array()
        .expect("dead")
        .iter()
        .map(|d| {
            assert_eq!(d["sink"], "strict");
            assert_eq!(d["attempts"], 1);
            assert_eq!(d["status"], 400);
            d["id"].as_str().expect("id").to_string()
        })
        .collect();
    let tries = |id: &str| {
        all.iter()
            .filter(|d| d.path == "/dead" && d.id == id)
            .count()
    };
    assert!(dead_ids.iter().all(|id| tries(id) == 1));
    // The endpoint is fixed; replay.
    let fixed: Policy = Arc::new(|path: &str, _: &Value, _| match path {
        "/main" | "/dead" | "/gone" => Reply::Status(200),
        _ => Reply::Status(404),
    });
    recv.set_policy(fixed);
    let mut args = vec!["replay"];
    args.extend(dead_ids.iter().map(String::as_str));
    let replayed = coedit_events(&server, &admin, &args)?;
    for r in replayed["replayed"].as_array().expect("replayed") {
        assert_eq!(r["sinks"], serde_json::json!(["strict"]), "{r}");
    }
    recv.wait_until(SETTLE, "replayed dead letters acknowledged", |all| {
        acked(all, "/dead").len() == 3
    })?;
    let after = coedit_events(&server, &admin, &["list", "--dead"])?;
    assert_eq!(after["dead"].as_array().map(Vec::len), Some(0), "{after}");
    // An unknown id is answered, not an error; an unknown sink is 4007.
    let none = coedit_events(&server, &admin, &["replay", "evt_00000000_999999"])?;
    assert_eq!(none["replayed"][0]["sinks"], serde_json::json!([]));
    let (status, v) = http_auth(
        addr,
        "POST",
        "/api/admin/events/sinks/nope/enable",
        None,
        Some(&admin),
    )?;
    assert_eq!(
        (status, v["error"]["code"].as_u64()),
        (404, Some(4007)),
        "{v}"
    );
    // Admin calls need an admin token.
    let (status, _) = http_auth(addr, "GET", "/api/admin/events/sinks", None, Some(&bob))?;
    assert_eq!(status, 403);

    // "gone" answered 410 on its first event: disabled, nothing more sent to it.
    let sinks = coedit_events(&server, &admin, &["list"])?;
    let gone = sinks["sinks"]
        .as_array()
        .expect("sinks")
        .iter()
        .find(|s| s["name"] == "gone")
        .expect("gone")
        .clone();
    assert!(
        gone["disabled"].as_str().is_some_and(|w| w.contains("410")),
        "{gone}"
    );
    // At most the deliveries already in flight (one per document, up to max_in_flight) got
    // their 410; nothing started after.
    let gone_tries = recv
        .deliveries()
        .iter()
        .filter(|d| d.path == "/gone")
        .count();
    assert!(
        (1..=4).contains(&gone_tries),
        "{gone_tries} attempts to a 410 endpoint"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        recv.deliveries()
            .iter()
            .filter(|d| d.path == "/gone")
            .count(),
        gone_tries
    );
    assert_eq!(
        metric(addr, "coedit_events_sink_disabled{sink=\"gone\"}"),
        1.0
    );
    // Enabled again: everything it takes, in order per document, once each.
    coedit_events(&server, &admin, &["enable", "gone"])?;
    recv.wait_until(SETTLE, "the enabled sink catches up", |all| {
        acked(all, "/gone")
            .iter()
            .any(|d| kind(d) == "document.deleted")
            && acked(all, "/gone")
                .iter()
                .filter(|d| kind(d) == "document.changed")
                .count()
                == per_doc
                    .values()
                    .flatten()
                    .filter(|d| kind(d) == "document.changed")
                    .count()
    })?;
    let g = acked(&recv.deliveries(), "/gone");
    let main_order: Vec<&str> = a
        .iter()
        .filter(|d| kind(d).starts_with("document."))
        .map(|d| d.id.as_str())
        .collect();
    for doc in ["acme:notes-1", "acme:notes-2", "acme:notes-y"] {
        let got: Vec<&str> = g
            .iter()
            .filter(|d| doc_of(d) == doc)
            .map(|d| d.id.as_str())
            .collect();
        let want: Vec<&str> = main_order
            .iter()
            .copied()
            .filter(|id| a.iter().any(|d| d.id == *id && doc_of(d) == doc))
            .collect();
        assert_eq!(got, want, "{doc}: the same events, in the same order");
    }

    // The audit chain records the deliveries.
    let (status, export) = {
        let resp = ureq::get(&format!("http://{addr}/api/admin/audit/export"))
            .header("Authorization", &format!("Bearer {admin}"))
            .call()?;
        let st = resp.status().as_u16();
        (st, resp.into_body().read_to_string()?)
    };
    assert_eq!(status, 200);
    let outcomes: HashSet<String> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["event"]["kind"] == "delivery")
        .map(|r| r["event"]["outcome"].as_str().unwrap_or("").to_string())
        .collect();
    for want in ["delivered", "dead", "disabled", "enabled"] {
        assert!(
            outcomes.contains(want),
            "no {want} delivery record: {outcomes:?}"
        );
    }
    Ok(())
}

#[test]
fn events_survive_kill_9() -> Result<()> {
    let seed = seed();
    println!("SEED={seed}");
    let kills: u32 = env_or("COEDIT_EVENT_KILLS", 3);
    let secret = coedit_actors::events::sign::Secret::generate();
    let policy: Policy = Arc::new(move |_: &str, body: &Value, attempt: u32| {
        let id = body["id"].as_str().unwrap_or("");
        if attempt == 1 && draw(seed, id, 1) < 0.2 {
            Reply::Status(500)
        } else {
            Reply::Slow(Duration::from_millis(5), 200)
        }
    });
    let recv = Receiver::start(&secret, policy);
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let config = format!(
        "[events]\nchanged_interval_ms = 50\nretry_base_ms = 20\nretry_max_s = 1\n\
         [[events.webhook]]\nname = \"crash\"\nurl = \"{}\"\nsecret = \"{secret}\"\n\
         timeout_ms = 2000\n",
        recv.url("/crash")
    );
    let docs = ["k1", "k2", "k3"];
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(seed);
    let acked_revs: Arc<Vec<AtomicU64>> =
        Arc::new(docs.iter().map(|_| AtomicU64::new(0)).collect());
    for cycle in 0..=kills {
        let mut server = start_server_at(&data, &config);
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = docs
            .iter()
            .enumerate()
            .map(|(i, doc)| {
                let (stop, acked) = (stop.clone(), acked_revs.clone());
                let doc = doc.to_string();
                std::thread::spawn(move || {
                    let mut rev = acked[i].load(Ordering::SeqCst);
                    while !stop.load(Ordering::SeqCst) {
                        match post_text(addr, &doc, rev, None) {
                            Ok(r) => {
                                rev = r;
                                acked[i].fetch_max(r, Ordering::SeqCst);
                            }
                            Err(_) => return,
                        }
                        std::thread::sleep(Duration::from_millis(3));
                    }
                })
            })
            .collect();
        let run = Duration::from_millis(rand::Rng::random_range(&mut rng, 300..1200));
        std::thread::sleep(run);
        if cycle < kills {
            server.kill();
        } else {
            stop.store(true, Ordering::SeqCst);
        }
        for w in writers {
            let _ = w.join();
        }
        if cycle == kills {
            // The last run: wait until every stored revision is told, then check.
            let last: Vec<u64> = docs
                .iter()
                .map(|d| current_rev(addr, d, None))
                .collect::<Result<_>>()?;
            for (i, d) in docs.iter().enumerate() {
                assert!(
                    last[i] >= acked_revs[i].load(Ordering::SeqCst),
                    "{d} lost acked edits"
                );
            }
            recv.wait_until(SETTLE, "every stored revision told", |all| {
                docs.iter().zip(&last).all(|(d, l)| {
                    acked(all, "/crash").iter().any(|e| {
                        e.body["data"]["document"] == *d
                            && e.body["data"]["revs"]["to"].as_u64() == Some(*l)
                    })
                })
            })?;
            let all = recv.deliveries();
            // Duplicates only as the same event: same id, same body.
            let mut bodies: HashMap<&str, &Value> = HashMap::new();
            for d in &all {
                assert!(d.sig_v1 && d.sig_sm3);
                if let Some(b) = bodies.insert(&d.id, &d.body) {
                    assert_eq!(b, &d.body, "{}: two bodies under one id", d.id);
                }
            }
            let a = acked(&all, "/crash");
            let dups = all.iter().filter(|d| d.acked()).count() - a.len();
            let mut recovered = 0;
            for (i, d) in docs.iter().enumerate() {
                let evs: Vec<&Delivery> = a
                    .iter()
                    .filter(|e| e.body["data"]["document"] == *d)
                    .collect();
                recovered += evs
                    .iter()
                    .filter(|e| e.body["data"]["recovered"] == true)
                    .count();
                check_ranges(d, &evs, last[i])?;
            }
            println!(
                "kills={kills} revisions={last:?} events={} duplicates={dups} recovered={recovered}",
                a.len()
            );
            server.terminate()?;
            let (ok, out) = run_check(&data);
            assert!(ok && out.contains("ok      events outbox: "), "{out}");
        }
    }
    Ok(())
}

/// A clean stop writes the changes the coalescer still holds (a 60 s interval here) before the
/// last flush: they are delivered, after the restart, as seen, not as `recovered`.
#[test]
fn a_clean_stop_tells_held_changes() -> Result<()> {
    let secret = coedit_actors::events::sign::Secret::generate();
    let recv = Receiver::start(
        &secret,
        Arc::new(|_: &str, _: &Value, _| Reply::Status(200)),
    );
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let config = format!(
        "[events]\nchanged_interval_ms = 60000\n[[events.webhook]]\nname = \"held\"\n\
         url = \"{}\"\nsecret = \"{secret}\"\n",
        recv.url("/held")
    );
    let mut server = start_server_at(&data, &config);
    let mut rev = post_text(server.addr, "h", 0, None)?;
    // The first change goes at once; the next ones are held for the interval.
    recv.wait_until(SETTLE, "the first change", |d| {
        d.iter().any(|e| kind(e) == "document.changed")
    })?;
    for _ in 0..4 {
        rev = post_text(server.addr, "h", rev, None)?;
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(acked(&recv.deliveries(), "/held")
        .iter()
        .all(|e| e.body["data"]["revs"]["to"].as_u64() < Some(rev)));
    server.terminate()?;
    let server = start_server_at(&data, &config);
    recv.wait_until(SETTLE, "the held change", |d| {
        acked(d, "/held")
            .iter()
            .any(|e| e.body["data"]["revs"]["to"].as_u64() == Some(rev))
    })?;
    let a = acked(&recv.deliveries(), "/held");
    check_ranges("h", &a.iter().collect::<Vec<_>>(), rev)?;
    assert!(
        a.iter().all(|e| e.body["data"]["recovered"] != true),
        "a clean stop needs no recovery"
    );
    drop(server);
    Ok(())
}
