//! One flipped byte anywhere in the store's files is either harmless (every document and the
//! audit chain read back identical) or detected (the store refuses to open, or refuses the
//! damaged document, or the audit chain fails): never a silent rollback. sled's recovery stops
//! quietly at the first damaged log entry, so what it returns is checked against the manifest
//! and the audit anchors, which live outside sled.
//!
//! The store (three text documents and a Yjs one) is written by the real server in two runs (a restart in between, so part of the
//! data was written "since the last start"; the second run ends with SIGKILL once every edit
//! was acknowledged, so its writes are only in sled's log); then each case copies it, flips one byte of one
//! file (any file: sled's log and config, the manifest, the anchor file) at a seeded offset,
//! and opens it as the server does. Every tenth case also runs `coedit check`, which must fail
//! exactly when the open found damage.
//!
//! `BYTE_FLIPS=N` sets the number of cases (default 400); prints `SEED=…` (replay with
//! `SEED=n`) and the figures `harmless=… detected=… silent=0`.

mod common;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use coedit_actors::security::anchor;
use coedit_actors::security::audit::{self, AuditChain, Expectations};
use coedit_actors::security::crypto::{sm3, Sm2Verifier};
use coedit_actors::storage::manifest::Manifest;
use coedit_actors::{SledStore, Store};
use coedit_protocol::yjs::YDocConfig;
use coedit_protocol::DocumentConfig;
use common::{env_or, http, run_check, seed, start_server_at};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const DEFAULT_FLIPS: usize = 400;
const DOCS: [&str; 3] = ["alpha", "beta", "gamma"];
/// A Yjs document written beside the text ones (its updates posted over REST).
const YDOC: &str = "delta";
/// Ops per document per server run.
const OPS_PER_RUN: u64 = 60;

/// What the store holds when intact.
struct Expected {
    docs: BTreeMap<String, (String, u64)>,
    /// The Yjs document's revision and content.
    ydoc: (u64, serde_json::Value),
    audit_len: u64,
    audit_head: [u8; 32],
    /// Offsets of sled's log (`db`) written since the last start.
    fresh: Vec<usize>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if std::fs::metadata(&p).unwrap().len() > 0 {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Posts `OPS_PER_RUN` Yjs updates (one client typing into a `Y.Text`) to [`YDOC`].
fn type_yjs(addr: std::net::SocketAddr, client: &yrs::Doc) {
    use std::io::{Read, Write};
    use yrs::{ReadTxn, Text, Transact};
    let text = client.get_or_insert_text("text");
    for i in 0..OPS_PER_RUN {
        let sv = client.transact().state_vector();
        let len = text.len(&client.transact());
        text.insert(&mut client.transact_mut(), len, &format!("y{i} "));
        let update = client.transact().encode_state_as_update_v1(&sv);
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /api/docs/{YDOC}/updates HTTP/1.1\r\nHost: x\r\nContent-Type: \
             application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            update.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&update).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

fn type_ops(addr: std::net::SocketAddr, doc: &str, from_rev: u64) {
    for rev in from_rev..from_rev + OPS_PER_RUN {
        let body = format!(r#"{{"base_rev":{rev},"op":["{doc}{rev} "]}}"#);
        let (status, v) = http(addr, "POST", &format!("/api/docs/{doc}/ops"), Some(&body)).unwrap();
        assert_eq!(status, 200, "{v}");
    }
}

/// Writes the store with the real server (two runs) into `data`, keeps a copy of it as the
/// server left it in `pristine` (opening it would let sled write a snapshot over the log's
/// tail), and reads back what it holds from `data`.
fn build(data: &Path, pristine: &Path, config: &str) -> Expected {
    let mut srv = start_server_at(data, config);
    let yclient = yrs::Doc::with_client_id(7);
    for doc in DOCS {
        type_ops(srv.addr, doc, 0);
    }
    type_yjs(srv.addr, &yclient);
    assert!(srv.terminate().unwrap().success());
    let before = std::fs::read(data.join("db")).unwrap();
    let mut srv = start_server_at(data, config);
    for doc in DOCS {
        type_ops(srv.addr, doc, OPS_PER_RUN);
    }
    type_yjs(srv.addr, &yclient);
    let (status, v) = http(srv.addr, "GET", &format!("/api/docs/{YDOC}"), None).unwrap();
    assert_eq!(
        (status, v["rev"].as_u64()),
        (200, Some(2 * OPS_PER_RUN)),
        "{v}"
    );
    let ydoc = (2 * OPS_PER_RUN, v["content"].clone());
    let mut docs = BTreeMap::new();
    for doc in DOCS {
        let (status, v) = http(srv.addr, "GET", &format!("/api/docs/{doc}"), None).unwrap();
        assert_eq!(status, 200);
        let text = v["text"].as_str().unwrap().to_string();
        docs.insert(doc.to_string(), (text, v["rev"].as_u64().unwrap()));
    }
    // Killed, not stopped: what this run wrote is only in sled's log (a clean stop would have
    // sled write its snapshot), which is where a damaged byte makes recovery stop early.
    srv.kill();
    copy_dir(data, pristine);
    let after = std::fs::read(data.join("db")).unwrap();
    let fresh = (0..after.len())
        .filter(|&i| before.get(i) != Some(&after[i]))
        .collect();
    let store = SledStore::open(data).unwrap();
    let chain = store.audit_all().unwrap();
    Expected {
        docs,
        ydoc,
        audit_len: chain.len() as u64,
        audit_head: sm3(&chain.last().unwrap().1),
        fresh,
    }
}

/// How a damaged copy fared.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Everything reads back identical.
    Harmless,
    /// Refused, with the reason.
    Detected(String),
    /// Something reads back different and nothing noticed.
    Silent(String),
}

/// Opens `dir` as the server does and compares everything with `want`.
fn open_and_compare(dir: &Path, want: &Expected, pubkey: &Sm2Verifier) -> Outcome {
    let opened = std::panic::catch_unwind(AssertUnwindSafe(|| SledStore::open(dir)));
    let store = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Outcome::Detected(format!("store: {e}")),
        Err(_) => return Outcome::Detected("store: sled panicked".into()),
    };
    let manifest = match Manifest::open(dir, &store) {
        Ok(m) => m,
        Err(e) => return Outcome::Detected(format!("manifest: {e}")),
    };
    let anchors = match anchor::read(&dir.join(anchor::ANCHOR_FILE)) {
        Ok(a) => a,
        Err(e) => return Outcome::Detected(format!("anchors: {e}")),
    };
    let mut detected = Vec::new();
    let expected_audit = manifest
        .audit_len()
        .max(anchors.last().map_or(0, |a| a.seq));
    match AuditChain::resume_checked(&store, expected_audit) {
        Err(e) => detected.push(format!("audit: {e}")),
        Ok(_) => {
            let records = match store.audit_all() {
                Ok(r) => r,
                Err(e) => return Outcome::Detected(format!("audit read: {e}")),
            };
            let expect = Expectations {
                verifier: Some(pubkey),
                anchors: &anchors,
                min_len: Some(manifest.audit_len()),
            };
            match audit::verify(&records, expect) {
                Err(f) => detected.push(format!("audit: {f}")),
                Ok(r) => {
                    let head = records.last().map(|(_, v)| sm3(v));
                    if r.records != want.audit_len || head != Some(want.audit_head) {
                        return Outcome::Silent(format!(
                            "audit chain of {} records verifies, {} expected",
                            r.records, want.audit_len
                        ));
                    }
                }
            }
        }
    }
    for (doc, (text, rev)) in &want.docs {
        let loaded = store
            .load(doc)
            .and_then(|s| s.into_document(doc, DocumentConfig::default()))
            .and_then(|d| manifest.check_loaded(doc, d.rev()).map(|()| d));
        match loaded {
            Err(e) => detected.push(format!("{doc}: {e}")),
            Ok(d) if d.rev() == *rev && d.text() == *text => {}
            Ok(d) => {
                return Outcome::Silent(format!(
                    "{doc} served at revision {} ({} chars), acknowledged {rev} ({} chars)",
                    d.rev(),
                    d.text().chars().count(),
                    text.chars().count()
                ))
            }
        }
    }
    let (rev, content) = &want.ydoc;
    let loaded = store
        .load_y(YDOC)
        .and_then(|s| s.into_document(YDOC, YDocConfig::default()))
        .and_then(|d| manifest.check_loaded(YDOC, d.rev()).map(|()| d));
    match loaded {
        Err(e) => detected.push(format!("{YDOC}: {e}")),
        Ok(d) if d.rev() == *rev && d.content() == *content => {}
        Ok(d) => {
            return Outcome::Silent(format!(
                "{YDOC} served at revision {}, acknowledged {rev}",
                d.rev()
            ))
        }
    }
    if detected.is_empty() {
        Outcome::Harmless
    } else {
        Outcome::Detected(detected.join("; "))
    }
}

#[test]
fn every_flipped_byte_is_harmless_or_detected() {
    let seed = seed();
    let flips = env_or("BYTE_FLIPS", DEFAULT_FLIPS);
    println!("SEED={seed} BYTE_FLIPS={flips}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let (ok, out) = common::run_coedit(&["keygen", "--out", keys.to_str().unwrap()]);
    assert!(ok, "{out}");
    // Signed checkpoints every second, so the anchor file has lines to damage too.
    let config = format!(
        "[crypto]\nsigning_key_file = \"{}\"\n[audit]\ncheckpoint_interval_s = 1\n\
         [storage]\nsnapshot_every_ops = 25\n",
        keys.join("sm2.pem").display()
    );
    let pristine = tmp.path().join("pristine");
    let want = build(&tmp.path().join("written"), &pristine, &config);
    let pubkey = Sm2Verifier::load(&keys.join("sm2.pub.pem")).unwrap();
    // Opened copies only: opening the pristine store would let sled write its snapshot.
    let intact = tmp.path().join("intact");
    copy_dir(&pristine, &intact);
    assert_eq!(
        open_and_compare(&intact, &want, &pubkey),
        Outcome::Harmless,
        "the intact store"
    );
    let all = files(&pristine);
    println!(
        "{} bytes of sled's log written since the last start; store files: {:?}",
        want.fresh.len(),
        all.iter()
            .map(|p| (
                p.strip_prefix(&pristine).unwrap().display().to_string(),
                std::fs::metadata(p).unwrap().len()
            ))
            .collect::<Vec<_>>()
    );
    let (mut harmless, mut detected, mut silent) = (0, 0, Vec::new());
    let mut per_file: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for case in 0..flips {
        let work = tmp.path().join(format!("case-{case}"));
        copy_dir(&pristine, &work);
        let files = files(&work);
        // Half the cases damage what sled's log received since the last start (where a damaged
        // entry makes its recovery stop early); the others any byte of any file, half of them
        // on written (non-zero) bytes.
        let fresh = rng.random_bool(0.5) && !want.fresh.is_empty();
        let file = if fresh {
            files
                .iter()
                .find(|p| p.ends_with("db"))
                .expect("sled's log")
        } else {
            &files[rng.random_range(0..files.len())]
        };
        let mut bytes = std::fs::read(file).unwrap();
        let offset = if fresh {
            want.fresh[rng.random_range(0..want.fresh.len())]
        } else if rng.random_bool(0.5) {
            let written: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] != 0).collect();
            if written.is_empty() {
                rng.random_range(0..bytes.len())
            } else {
                written[rng.random_range(0..written.len())]
            }
        } else {
            rng.random_range(0..bytes.len())
        };
        // Most cases flip one byte; some cut sled's log short inside what it received since the
        // last start (a lost tail, which sled's recovery takes for a torn write and hides), some
        // zero one 4 KiB block (a lost sector).
        let damage = match rng.random_range(0..10) {
            0 | 1 if fresh => {
                bytes.truncate(offset);
                format!("cut at {offset}")
            }
            2 => {
                let start = offset / 4096 * 4096;
                let end = (start + 4096).min(bytes.len());
                bytes[start..end].fill(0);
                format!("zeroed {start}..{end}")
            }
            _ => {
                let mask = rng.random_range(1..=255u8);
                bytes[offset] ^= mask;
                format!("byte {offset} ^ {mask:#x}")
            }
        };
        std::fs::write(file, &bytes).unwrap();
        let name = file.strip_prefix(&work).unwrap().display().to_string();
        let outcome = open_and_compare(&work, &want, &pubkey);
        let entry = per_file.entry(name.clone()).or_default();
        match &outcome {
            Outcome::Harmless => {
                harmless += 1;
                entry.0 += 1;
            }
            Outcome::Detected(why) => {
                detected += 1;
                entry.1 += 1;
                if std::env::var("BYTE_FLIPS_VERBOSE").is_ok() {
                    println!("case {case}: {name} {damage}: {why}");
                }
            }
            Outcome::Silent(why) => silent.push(format!("case {case}: {name} {damage}: {why}")),
        }
        if case % 10 == 0 && !matches!(outcome, Outcome::Silent(_)) {
            // `coedit check` agrees (it must not pass a store the server would refuse).
            let (ok, out) = run_check(&work);
            assert_eq!(
                ok,
                outcome == Outcome::Harmless,
                "case {case}: {name} {damage}: open said {outcome:?}, check said: {out}"
            );
        }
        std::fs::remove_dir_all(&work).unwrap();
    }
    println!("per file (harmless, detected): {per_file:?}");
    println!(
        "harmless={harmless} detected={detected} silent={}",
        silent.len()
    );
    assert!(silent.is_empty(), "silent damage:\n{}", silent.join("\n"));
    assert!(
        detected > 0,
        "no flip was ever detected: the test flips nothing that matters"
    );
}
