//! Unit tests of `manifest.rs`.

use super::*;
use crate::storage::{LogRecord, MemoryStore, SledStore};
use coedit_protocol::Op;

fn base() -> Entry {
    Entry::Base {
        format: MANIFEST_FORMAT,
        id: "x".into(),
        wseq: 3,
        flushed: 3,
        audit: 2,
        docs: vec![("a".into(), 5, 3)],
        deleted: vec![],
    }
}

fn file(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend(encode(e, out.len() as u64));
    }
    out
}

#[test]
fn records_fold_by_write_sequence_not_file_order() {
    let mut s = ManifestState::default();
    s.apply(&base());
    s.apply(&Entry::Delete {
        wseq: 10,
        doc: "a".into(),
    });
    // A flush record written after the deletion, for a write issued before it.
    s.apply(&Entry::Flush {
        flushed: 10,
        docs: vec![("a".into(), 6, 9)],
        audit: 4,
    });
    assert_eq!(s.expected_rev("a"), None);
    // Re-created after the deletion.
    s.apply(&Entry::Flush {
        flushed: 12,
        docs: vec![("a".into(), 1, 11), ("b".into(), 7, 12)],
        audit: 3,
    });
    assert_eq!(s.expected_rev("a"), Some(1));
    assert_eq!(s.expected_rev("b"), Some(7));
    assert_eq!((s.audit, s.wseq, s.flushed), (4, 12, 12));
    // Revisions only go up for a live document.
    s.apply(&Entry::Flush {
        flushed: 13,
        docs: vec![("b".into(), 3, 13)],
        audit: 4,
    });
    assert_eq!(s.expected_rev("b"), Some(7));
    // The base keeps the state (tombstones only while older marks may arrive).
    let mut t = ManifestState::default();
    t.apply(&s.base("x"));
    assert_eq!(t, s);
}

#[test]
fn a_torn_last_record_is_ignored_other_damage_is_not() {
    let entries = vec![
        base(),
        Entry::Flush {
            flushed: 4,
            docs: vec![("a".into(), 6, 4)],
            audit: 3,
        },
        Entry::Flush {
            flushed: 5,
            docs: vec![("b".into(), 1, 5)],
            audit: 3,
        },
    ];
    let bytes = file(&entries);
    let (parsed, valid) = parse(&bytes).unwrap();
    assert_eq!((parsed, valid), (entries.clone(), bytes.len() as u64));
    let last_start = file(&entries[..2]).len();
    // Torn: every cut inside the last record.
    for cut in last_start + 1..bytes.len() {
        let (p, valid) = parse(&bytes[..cut]).unwrap();
        assert_eq!((p.len(), valid), (2, last_start as u64), "cut {cut}");
    }
    // Any flipped byte: either the last record is dropped as torn, or an error; never a
    // different reading of the records before it.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        match parse(&b) {
            Ok((p, _)) => {
                assert!(i >= last_start, "byte {i} before the last record passed");
                assert_eq!(p, entries[..2].to_vec(), "byte {i}");
            }
            Err((offset, _)) => assert!(offset as usize <= i, "byte {i}"),
        }
    }
    // A flipped length in a middle record (pointing past the end) is not a torn tail.
    let mut b = bytes.clone();
    let second = encode(&entries[0], 0).len();
    b[second + 5] = 0x7f;
    assert!(parse(&b).is_err());
}

#[test]
fn a_store_and_its_manifest_belong_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store
        .append(
            "d",
            &[LogRecord {
                rev: 1,
                client: "c".into(),
                seq: 1,
                op: Op::insert_at(0, "x"),
            }],
        )
        .unwrap();
    store.flush().unwrap();
    // Created from the store as it is.
    let m = Manifest::open(dir.path(), &store).unwrap();
    assert_eq!(m.expected_rev("d"), Some(1));
    m.record_flush(7, vec![("d".into(), 3, 7)], 0).unwrap();
    drop(m);
    let m = Manifest::open(dir.path(), &store).unwrap();
    assert_eq!(m.expected_rev("d"), Some(3));
    assert_eq!(
        m.losses(&store).unwrap(),
        vec![Loss {
            doc: "d".into(),
            have: 1,
            expected: 3
        }]
    );
    assert!(matches!(
        m.check_loaded("d", 1),
        Err(StoreError::Lost { expected: 3, .. })
    ));
    drop(m);
    // The file removed: refused, not silently recreated.
    std::fs::remove_file(dir.path().join(MANIFEST_FILE)).unwrap();
    assert!(matches!(
        Manifest::open(dir.path(), &store),
        Err(ManifestError::Missing { .. })
    ));
    // Another store's manifest: refused.
    let other = tempfile::tempdir().unwrap();
    let other_store = SledStore::open(other.path()).unwrap();
    drop(Manifest::open(other.path(), &other_store).unwrap());
    std::fs::copy(
        other.path().join(MANIFEST_FILE),
        dir.path().join(MANIFEST_FILE),
    )
    .unwrap();
    assert!(matches!(
        Manifest::open(dir.path(), &store),
        Err(ManifestError::Foreign { .. })
    ));
    // `create` accepts the store as it is.
    let m = Manifest::create(dir.path(), &store).unwrap();
    assert_eq!(m.expected_rev("d"), Some(1));
    assert!(m.losses(&store).unwrap().is_empty());
}

#[test]
fn compaction_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let mut m = Arc::into_inner(Manifest::create(dir.path(), &store).unwrap()).unwrap();
    let limit = 16 * 1024;
    m.compact_bytes = limit;
    // Bytes of records (the file itself runs ahead with zeros).
    let size = || read(&dir.path().join(MANIFEST_FILE)).unwrap().2;
    let mut wseq = 0;
    let mut grew_past_half = false;
    for _ in 0..200 {
        wseq += 1;
        let docs = (0..50).map(|i| (format!("doc-{i}"), wseq, wseq)).collect();
        m.record_flush(wseq, docs, wseq).unwrap();
        grew_past_half |= size() > limit / 2;
        assert!(size() <= limit + 4096, "{}", size());
    }
    assert!(grew_past_half);
    let (state, _, _) = read(&dir.path().join(MANIFEST_FILE)).unwrap();
    assert_eq!(state, m.state());
    assert_eq!(state.expected_rev("doc-1"), Some(wseq));
}
