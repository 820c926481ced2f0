//! Tests of the store: both backends, plaintext and sealed, through the `Store` trait.

use super::codec::FORMAT_SEALED;
use super::*;

fn rec(rev: u64, op: Op) -> LogRecord {
    LogRecord {
        rev,
        client: "c".into(),
        seq: rev,
        op,
    }
}

/// Paged listing over both trees: a document with only a snapshot counts, prefixes and
/// cursors bound the pages, a cursor past the prefix's range is an empty page.
fn list_documents_in_pages<K: Kv>(s: &RecordStore<K>) {
    for (doc, n) in [("acme:a", 2), ("acme:a-b", 1), ("acme:b", 1), ("zeta:q", 1)] {
        let recs: Vec<_> = (1..=n).map(|r| rec(r, Op::insert_at(0, "x"))).collect();
        s.append(doc, &recs).unwrap();
    }
    let snap = DocumentSnapshot {
        rev: 0,
        text: String::new(),
        clients: vec![],
    };
    s.put_snapshot("acme:snap-only", &snap).unwrap();
    let all = s.list_documents("acme:", None, 100).unwrap();
    assert_eq!(all, ["acme:a", "acme:a-b", "acme:b", "acme:snap-only"]);
    let first = s.list_documents("acme:", None, 2).unwrap();
    assert_eq!(first, ["acme:a", "acme:a-b"]);
    let rest = s.list_documents("acme:", Some("acme:a-b"), 2).unwrap();
    assert_eq!(rest, ["acme:b", "acme:snap-only"]);
    assert!(s
        .list_documents("acme:", Some("zzz"), 2)
        .unwrap()
        .is_empty());
    assert_eq!(s.list_documents("acme:a", None, 9).unwrap().len(), 2);
    let every = s.list_documents("", None, 100).unwrap();
    assert_eq!(every.len(), 5, "{every:?}");
}

#[test]
fn documents_are_listed_in_pages() {
    list_documents_in_pages(&MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    list_documents_in_pages(&SledStore::open(dir.path()).unwrap());
}

fn fill<K: Kv>(s: &RecordStore<K>) {
    s.append(
        "d",
        &[
            rec(1, Op::insert_at(0, "ab")),
            rec(2, Op::insert_at(2, "c")),
        ],
    )
    .unwrap();
    s.put_snapshot(
        "d",
        &DocumentSnapshot {
            rev: 2,
            text: "abc".into(),
            clients: vec![("c".into(), 2, 2)],
        },
    )
    .unwrap();
    s.append(
        "d",
        &[rec(3, Op::delete_at(0, 1)), rec(4, Op::insert_at(0, "中"))],
    )
    .unwrap();
    s.append("other", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
}

fn exercise<K: Kv>(s: RecordStore<K>) {
    fill(&s);
    let loaded = s.load("d").unwrap();
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.rev), Some(2));
    assert_eq!(
        loaded.ops.iter().map(|r| r.rev).collect::<Vec<_>>(),
        vec![3, 4]
    );
    let doc = loaded
        .into_document("d", DocumentConfig::default())
        .unwrap();
    assert_eq!((doc.text(), doc.rev()), ("中bc".to_string(), 4));
    assert_eq!(s.text_at("d", 1).unwrap().as_deref(), Some("ab"));
    assert_eq!(s.text_at("d", 3).unwrap().as_deref(), Some("bc"));
    assert_eq!(s.text_at("d", 9).unwrap(), None);
    assert_eq!(
        s.versions("d").unwrap(),
        Versions {
            snapshots: vec![2],
            first_op: Some(1),
            last_rev: 4
        }
    );
    assert_eq!(check_document(&s, "d").unwrap(), (4, 1));
    assert_eq!(
        s.documents().unwrap(),
        vec!["d".to_string(), "other".to_string()]
    );
    assert!(s.load("none").unwrap().is_empty());
    // Compaction keeps the snapshot at 2 and the ops after it.
    s.compact("d", 3).unwrap();
    assert_eq!(s.versions("d").unwrap().first_op, Some(3));
    assert_eq!(s.text_at("d", 1).unwrap(), None);
    assert_eq!(s.text_at("d", 2).unwrap().as_deref(), Some("abc"));
    assert_eq!(check_document(&s, "d").unwrap(), (2, 1));
    s.delete("d").unwrap();
    assert!(s.load("d").unwrap().is_empty());
    s.flush().unwrap();
}

#[test]
fn memory_store_round_trip() {
    exercise(MemoryStore::new());
}

#[test]
fn sled_store_round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    exercise(SledStore::open(dir.path()).unwrap());
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.documents().unwrap(), vec!["other".to_string()]);
}

#[test]
fn corruption_is_detected_and_named() {
    let s = MemoryStore::new();
    fill(&s);
    let good = s.kv().get(Tree::Ops, &key("d", 3)).unwrap().unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            {
                let mut b = good.clone();
                let n = b.len();
                b[n - 1] ^= 1;
                b
            },
            "checksum",
        ),
        (good[..4].to_vec(), "truncated"),
        (
            {
                let mut b = good.clone();
                b[0] = 9;
                b
            },
            "format",
        ),
        (
            encode_record(KIND_OP, &rec(7, Op::noop())).unwrap(),
            "says revision 7",
        ),
    ];
    for (bad, why) in cases {
        s.kv().put_raw(Tree::Ops, &key("d", 3), &bad).unwrap();
        match s.load("d") {
            Err(StoreError::Corrupt { doc, rev, reason }) => {
                assert_eq!((doc.as_str(), rev), ("d", 3));
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("{why}: {other:?}"),
        }
        assert!(check_document(&s, "d").is_err());
    }
    // A gap in revisions.
    s.kv().put_raw(Tree::Ops, &key("d", 3), &good).unwrap();
    s.kv()
        .delete_range(Tree::Ops, &key("d", 3), &key("d", 4))
        .unwrap();
    assert!(matches!(
        s.load("d"),
        Err(StoreError::Corrupt { rev: 3, .. })
    ));
    // An op that does not replay.
    s.kv()
        .put_raw(
            Tree::Ops,
            &key("d", 3),
            &encode_record(KIND_OP, &rec(3, Op::delete_at(0, 50))).unwrap(),
        )
        .unwrap();
    let err = s
        .load("d")
        .unwrap()
        .into_document("d", DocumentConfig::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { rev: 3, .. }));
}

#[test]
fn encrypted_stores_round_trip() {
    exercise(MemoryStore::encrypted(MasterKeyring::generate().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let ring = MasterKeyring::generate().unwrap();
    exercise(SledStore::open_with(dir.path(), Some(ring.clone())).unwrap());
    let s = SledStore::open_with(dir.path(), Some(ring)).unwrap();
    assert_eq!(s.load("other").unwrap().ops.len(), 1);
    assert!(s.encrypted());
}

#[test]
fn encryption_mode_is_fixed_per_store() {
    let dir = tempfile::tempdir().unwrap();
    let ring = MasterKeyring::generate().unwrap();
    drop(SledStore::open_with(dir.path(), Some(ring.clone())).unwrap());
    let e = SledStore::open(dir.path()).err().expect("needs the key");
    assert!(e.to_string().contains("encrypted"), "{e}");
    // The wrong master key is refused at open (see the key check value test).
    let other = MasterKeyring::generate().unwrap();
    assert!(SledStore::open_with(dir.path(), Some(other)).is_err());
    // A data key that does not unwrap (its wrapped bytes altered) refuses the document.
    let s = SledStore::open_with(dir.path(), Some(ring.clone())).unwrap();
    s.append("d", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
    let mut wrapped = s.kv().get(Tree::Keys, b"d").unwrap().unwrap();
    let n = wrapped.len();
    wrapped[n - 1] ^= 1;
    s.kv().put_raw(Tree::Keys, b"d", &wrapped).unwrap();
    s.flush().unwrap();
    drop(s);
    let s = SledStore::open_with(dir.path(), Some(ring)).unwrap();
    assert!(matches!(
        s.load("d"),
        Err(StoreError::Corrupt { rev: 1, .. })
    ));
    let plain = tempfile::tempdir().unwrap();
    let s = SledStore::open(plain.path()).unwrap();
    fill(&s);
    drop(s);
    let e = SledStore::open_with(plain.path(), Some(MasterKeyring::generate().unwrap()))
        .err()
        .expect("plaintext documents exist");
    assert!(e.to_string().contains("unencrypted"), "{e}");
}

#[test]
fn a_master_key_ring_with_another_key_under_a_known_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ring = MasterKeyring::generate().unwrap();
    let s = SledStore::open_with(dir.path(), Some(ring.clone())).unwrap();
    s.append("d", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
    s.flush().unwrap();
    drop(s);
    // Another key, also numbered 1: refused at open, nothing written under it.
    let wrong = MasterKeyring::generate().unwrap();
    let e = SledStore::open_with(dir.path(), Some(wrong.clone()))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("not the key"), "{e}");
    // A store written before check values existed: the data keys prove the version.
    let s = SledStore::open_with(dir.path(), Some(ring.clone())).unwrap();
    let mut kcv = META_KCV_PREFIX.to_vec();
    kcv.extend_from_slice(&1u32.to_be_bytes());
    s.kv()
        .delete_range(Tree::Meta, &kcv, &[kcv.as_slice(), &[0]].concat())
        .unwrap();
    s.flush().unwrap();
    drop(s);
    let e = SledStore::open_with(dir.path(), Some(wrong))
        .err()
        .expect("refused by the data key");
    assert!(e.to_string().contains("does not open"), "{e}");
    let s = SledStore::open_with(dir.path(), Some(ring)).unwrap();
    assert_eq!(s.load("d").unwrap().ops.len(), 1);
    assert!(
        s.kv().get(Tree::Meta, &kcv).unwrap().is_some(),
        "recorded again"
    );
}

#[test]
fn sealed_records_are_opaque_and_tamper_evident() {
    let s = MemoryStore::encrypted(MasterKeyring::generate().unwrap());
    fill(&s);
    let good = s.kv().get(Tree::Ops, &key("d", 3)).unwrap().unwrap();
    assert_eq!(good[0], FORMAT_SEALED);
    let snap = s.kv().get(Tree::Snapshots, &key("d", 2)).unwrap().unwrap();
    assert!(
        !snap.windows(3).any(|w| w == b"abc"),
        "snapshot text in the clear"
    );
    let four = s.kv().get(Tree::Ops, &key("d", 4)).unwrap().unwrap();
    assert!(!four.windows(3).any(|w| w == "中".as_bytes()));
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    for i in [1, 3, 7, good.len() / 2, good.len() - 1] {
        let mut b = good.clone();
        b[i] ^= 0x10;
        cases.push((b, if i == 1 { "kind" } else { "" }));
    }
    cases.push((good[..20].to_vec(), "truncated"));
    cases.push((
        encode_record(KIND_OP, &rec(3, Op::noop())).unwrap(),
        "only sealed",
    ));
    cases.push((four.clone(), "authentication failed"));
    for (bad, why) in cases {
        s.kv().put_raw(Tree::Ops, &key("d", 3), &bad).unwrap();
        match s.load("d") {
            Err(StoreError::Corrupt { doc, rev, reason }) => {
                assert_eq!((doc.as_str(), rev), ("d", 3));
                assert!(reason.contains(why), "{why}: {reason}");
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    s.kv().put_raw(Tree::Ops, &key("d", 3), &good).unwrap();
    assert_eq!(s.load("d").unwrap().ops.len(), 2);
    // A wrapped key with a flipped bit does not unwrap (fresh store: no cached key).
    let t = MemoryStore::encrypted(MasterKeyring::generate().unwrap());
    t.append("k", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
    let mut wrapped = t.kv().get(Tree::Keys, b"k").unwrap().unwrap();
    let n = wrapped.len();
    wrapped[n - 1] ^= 1;
    t.kv().put_raw(Tree::Keys, b"k", &wrapped).unwrap();
    t.keys.as_ref().unwrap().forget_cached();
    match t.load("k") {
        Err(StoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("wrapped data key"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deleting_a_document_shreds_its_key() {
    let s = MemoryStore::encrypted(MasterKeyring::generate().unwrap());
    fill(&s);
    let old = s.kv().get(Tree::Ops, &key("d", 3)).unwrap().unwrap();
    s.delete("d").unwrap();
    assert!(s.load("d").unwrap().is_empty());
    // The same bytes put back (a copy from a backup or a freed block) no longer open.
    s.kv().put_raw(Tree::Ops, &key("d", 3), &old).unwrap();
    match s.ops("d", 2, 3) {
        Err(StoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("destroyed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    s.delete("d").unwrap();
    // A re-created document gets a new key generation.
    s.append("d", &[rec(1, Op::insert_at(0, "new"))]).unwrap();
    let keys = DataKeys::list(s.kv()).unwrap();
    assert!(keys.contains(&("d".to_string(), 2, 1)), "{keys:?}");
    s.kv().put_raw(Tree::Ops, &key("d", 3), &old).unwrap();
    assert!(s.ops("d", 2, 3).is_err());
}

#[test]
fn master_key_rotation_rewraps_without_rewriting_data() {
    let mut ring = MasterKeyring::generate().unwrap();
    let s = MemoryStore::encrypted(ring.clone());
    fill(&s);
    let ops_before = s.kv().range(Tree::Ops, &[], PAST_ALL_DOCS).unwrap();
    ring.add_version().unwrap();
    assert_eq!(s.rotate_master_key(ring.clone()).unwrap(), 2);
    assert_eq!(
        s.kv().range(Tree::Ops, &[], PAST_ALL_DOCS).unwrap(),
        ops_before
    );
    for (_, _, master) in DataKeys::list(s.kv()).unwrap() {
        assert_eq!(master, 2);
    }
    // Only the new version is needed from now on.
    ring.retire_old();
    s.keys.as_ref().unwrap().forget_cached();
    s.rotate_master_key(ring).unwrap();
    s.keys.as_ref().unwrap().forget_cached();
    assert_eq!(s.load("other").unwrap().ops.len(), 1);
    assert!(MemoryStore::new()
        .rotate_master_key(MasterKeyring::generate().unwrap())
        .is_err());
}

/// Updates of a client typing "y0", "y1", … into a `Y.Text`.
fn yjs_updates(n: u64) -> Vec<YUpdateRecord> {
    use yrs::{ReadTxn, Text, Transact};
    let doc = yrs::Doc::with_client_id(11);
    let t = doc.get_or_insert_text("text");
    (1..=n)
        .map(|rev| {
            let sv = doc.transact().state_vector();
            let len = t.len(&doc.transact());
            t.insert(&mut doc.transact_mut(), len, &format!("y{rev}"));
            YUpdateRecord {
                rev,
                client: "c".into(),
                update: doc.transact().encode_state_as_update_v1(&sv),
            }
        })
        .collect()
}

/// Yjs records in plaintext and sealed stores: the kind of a document is its records', a
/// snapshot plus the updates after it load, history rebuilds old revisions, compaction and the
/// offline check work, and a damaged record is named, never served.
fn yjs_records<K: Kv>(s: RecordStore<K>) {
    use coedit_protocol::yjs::YDocConfig;
    let ups = yjs_updates(4);
    s.append_y("y", &ups[..2]).unwrap();
    s.append("t", &[rec(1, Op::insert_at(0, "x"))]).unwrap();
    assert_eq!(s.kind("y").unwrap(), Some(DocKind::Yjs));
    assert_eq!(s.kind("t").unwrap(), Some(DocKind::Text));
    assert_eq!(s.kind("none").unwrap(), None);
    let two = s
        .load_y("y")
        .unwrap()
        .into_document("y", YDocConfig::default())
        .unwrap();
    s.put_y_state(
        "y",
        &YStateRecord {
            rev: 2,
            state: two.encode_state(),
        },
    )
    .unwrap();
    s.append_y("y", &ups[2..]).unwrap();
    let loaded = s.load_y("y").unwrap();
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.rev), Some(2));
    assert_eq!(loaded.updates.len(), 2);
    let doc = loaded.into_document("y", YDocConfig::default()).unwrap();
    assert_eq!(
        (doc.rev(), doc.content()["text"].as_str()),
        (4, Some("y1y2y3y4"))
    );
    let at1 = s.y_at("y", 1).unwrap().unwrap();
    assert_eq!(at1.content()["text"], "y1");
    assert_eq!(check::check_document(&s, "y").unwrap(), (4, 1));
    // Read as the other kind: corruption naming the kind, never a document.
    match s.load("y") {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("kind"), "{reason}"),
        other => panic!("{other:?}"),
    }
    s.compact("y", 2).unwrap();
    assert_eq!(s.versions("y").unwrap().first_op, Some(3));
    assert!(s.y_at("y", 1).unwrap().is_none());
    assert_eq!(check::check_document(&s, "y").unwrap(), (2, 1));
    // A damaged update is named with its revision.
    let good = s.kv().get(Tree::Ops, &key("y", 4)).unwrap().unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 2] ^= 0x40;
    s.kv().put(Tree::Ops, &key("y", 4), &bad).unwrap();
    match s.load_y("y") {
        Err(StoreError::Corrupt { doc, rev, .. }) => assert_eq!((doc.as_str(), rev), ("y", 4)),
        other => panic!("a flipped byte was served: {other:?}"),
    }
    assert!(check::check_document(&s, "y").is_err());
    s.kv().put(Tree::Ops, &key("y", 4), &good).unwrap();
    // A snapshot that differs from the replay of the log is found by the check.
    s.put_y_state(
        "y",
        &YStateRecord {
            rev: 4,
            state: two.encode_state(),
        },
    )
    .unwrap();
    assert!(check::check_document(&s, "y").is_err());
}

#[test]
fn yjs_records_plain_and_sealed() {
    yjs_records(MemoryStore::new());
    yjs_records(MemoryStore::encrypted(MasterKeyring::generate().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    yjs_records(
        SledStore::open_with(dir.path(), Some(MasterKeyring::generate().unwrap())).unwrap(),
    );
    // Sealed: the update's text is not in the clear.
    let s = MemoryStore::encrypted(MasterKeyring::generate().unwrap());
    s.append_y("z", &yjs_updates(1)).unwrap();
    let raw = s.kv().get(Tree::Ops, &key("z", 1)).unwrap().unwrap();
    assert_eq!((raw[0], raw[1]), (FORMAT_SEALED, ystore::KIND_YUPDATE));
    assert!(!raw.windows(2).any(|w| w == b"y1"));
}

/// A `nats-server -js` on a free 127.0.0.1 port for the JetStream backend's tests (from
/// `COEDIT_NATS_SERVER` or the PATH; `None`, said, when there is none and
/// `COEDIT_REQUIRE_NATS` is not `1`). Killed on drop.
struct TestNats {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn test_nats() -> Option<TestNats> {
    let bin = std::env::var("COEDIT_NATS_SERVER").ok().or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
            .map(|p| p.to_string_lossy().into_owned())
    });
    let Some(bin) = bin else {
        assert_ne!(
            std::env::var("COEDIT_REQUIRE_NATS").as_deref(),
            Ok("1"),
            "no nats-server binary"
        );
        eprintln!("SKIPPED: no nats-server binary");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(TestNats {
        child,
        port,
        _dir: dir,
    })
}

fn js_config(nats: &TestNats, prefix: &str) -> js_kv::JsConfig {
    js_kv::JsConfig {
        urls: vec![format!("nats://127.0.0.1:{}", nats.port)],
        node: "node-1".into(),
        replicas: 1,
        prefix: prefix.into(),
        creds_file: None,
        tls_ca_file: None,
        lease: crate::cluster::DEFAULT_LEASE,
        renew: crate::cluster::DEFAULT_RENEW,
    }
}

/// The JetStream backend passes the same tests as sled: plaintext and sealed, text and Yjs,
/// listing; its data is there for another connection (another node) after a flush; a
/// revision written twice is refused (the fence); the format and crypto checks hold.
#[test]
fn jetstream_store_passes_the_store_tests() {
    let Some(nats) = test_nats() else {
        return;
    };
    use js_kv::JetStreamStore;
    exercise(JetStreamStore::connect(&js_config(&nats, "A"), None).unwrap());
    let s = JetStreamStore::connect(&js_config(&nats, "B"), None).unwrap();
    list_documents_in_pages(&s);
    let ring = MasterKeyring::generate().unwrap();
    exercise(JetStreamStore::connect(&js_config(&nats, "C"), Some(ring.clone())).unwrap());
    // Another connection (another node) reads what was flushed; the mode is fixed.
    let again = JetStreamStore::connect(&js_config(&nats, "C"), Some(ring)).unwrap();
    assert_eq!(again.load("other").unwrap().ops.len(), 1);
    assert!(JetStreamStore::connect(&js_config(&nats, "C"), None).is_err());
    yjs_records(JetStreamStore::connect(&js_config(&nats, "D"), None).unwrap());
    // The fence: two nodes write revision 1 of one document; the second flush is refused.
    let a = JetStreamStore::connect(&js_config(&nats, "E"), None).unwrap();
    let b = JetStreamStore::connect(&js_config(&nats, "E"), None).unwrap();
    a.append("f", &[rec(1, Op::insert_at(0, "a"))]).unwrap();
    b.append("f", &[rec(1, Op::insert_at(0, "b"))]).unwrap();
    // b's revision 2 of "f" (built on its own revision 1) is in the same flush as a write of
    // another document "g".
    b.append("f", &[rec(2, Op::insert_at(1, "b"))]).unwrap();
    b.append("g", &[rec(1, Op::insert_at(0, "g"))]).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    let fenced = |doc: &str, from_rev| Fenced {
        doc: doc.into(),
        from_rev,
    };
    assert_eq!(
        b.take_fenced(),
        vec![fenced("f", 1)],
        "refused from revision 1"
    );
    assert!(b.take_fenced().is_empty(), "told once");
    // Refused mid-chain: b's revision 1 of "h" is stored, a wrote revision 2 first, so b's 2
    // and 3 are not: fenced from revision 2.
    b.append("h", &[rec(1, Op::insert_at(0, "b"))]).unwrap();
    b.flush().unwrap();
    a.append("h", &[rec(2, Op::insert_at(1, "a"))]).unwrap();
    a.flush().unwrap();
    b.append(
        "h",
        &[rec(2, Op::insert_at(1, "b")), rec(3, Op::insert_at(2, "b"))],
    )
    .unwrap();
    b.flush().unwrap();
    assert_eq!(b.take_fenced(), vec![fenced("h", 2)]);
    assert_eq!(a.load("h").unwrap().ops.len(), 2);
    // Byte-identical records (the same op, resent by its client to another node, applied at
    // the same revision): still another writer's. The second node is fenced, not told the
    // revision is its own.
    a.append("i", &[rec(1, Op::insert_at(0, "same"))]).unwrap();
    b.append("i", &[rec(1, Op::insert_at(0, "same"))]).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    assert!(a.take_fenced().is_empty());
    assert_eq!(b.take_fenced(), vec![fenced("i", 1)]);
    // A deleted document is created again (its keys' deletion markers are not a value).
    a.delete("i").unwrap();
    a.flush().unwrap();
    a.append("i", &[rec(1, Op::insert_at(0, "again"))]).unwrap();
    a.flush().unwrap();
    assert!(
        a.take_fenced().is_empty(),
        "a deleted key may be created again"
    );
    assert_eq!(a.load("i").unwrap().ops[0].op, Op::insert_at(0, "again"));
    let f = b.load("f").unwrap();
    assert_eq!(
        f.ops.len(),
        1,
        "b's revision 2 was not written after its 1 was refused"
    );
    assert_eq!(f.ops[0].op, Op::insert_at(0, "a"));
    assert_eq!(
        a.load("g").unwrap().ops.len(),
        1,
        "other documents are written"
    );
    // Fenced until unfenced: a later write of "f" by b is dropped, even a free revision.
    b.append("f", &[rec(2, Op::insert_at(1, "b"))]).unwrap();
    b.flush().unwrap();
    assert!(b.take_fenced().is_empty(), "already fenced");
    assert_eq!(a.load("f").unwrap().ops.len(), 1);
    // Unfenced (a new actor loaded revision 1): its revision 2 is written.
    b.unfence("f");
    b.append("f", &[rec(2, Op::insert_at(1, "b"))]).unwrap();
    b.flush().unwrap();
    assert_eq!(a.load("f").unwrap().ops.len(), 2);
    // Two nodes create one new sealed document at once: the second one's first data key is
    // refused, so none of its records is written (they would be sealed under a key the store
    // does not keep); once unfenced it reads the first node's key and records.
    let ring = MasterKeyring::generate().unwrap();
    let ka = JetStreamStore::connect(&js_config(&nats, "K"), Some(ring.clone())).unwrap();
    let kb = JetStreamStore::connect(&js_config(&nats, "K"), Some(ring)).unwrap();
    ka.append("s", &[rec(1, Op::insert_at(0, "a"))]).unwrap();
    kb.append("s", &[rec(1, Op::insert_at(0, "b"))]).unwrap();
    ka.flush().unwrap();
    kb.flush().unwrap();
    assert_eq!(kb.take_fenced(), vec![fenced("s", 1)]);
    kb.unfence("s");
    assert_eq!(kb.load("s").unwrap().ops[0].op, Op::insert_at(0, "a"));
    assert_eq!(ka.load("s").unwrap().ops.len(), 1);
    // Each node has its own audit chain.
    a.audit_put(1, b"a-1").unwrap();
    a.flush().unwrap();
    assert_eq!(a.audit_last().unwrap(), Some((1, b"a-1".to_vec())));
    assert_eq!(
        b.audit_last().unwrap(),
        Some((1, b"a-1".to_vec())),
        "same node id"
    );
    let mut other = js_config(&nats, "E");
    other.node = "node-2".into();
    let c = JetStreamStore::connect(&other, None).unwrap();
    assert_eq!(
        c.audit_last().unwrap(),
        None,
        "another node's chain is its own"
    );
}
