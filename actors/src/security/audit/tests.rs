//! Unit tests of `audit.rs`.

use super::*;
use crate::security::crypto::generate_sm2_pem;
use crate::storage::{Kv, MemoryStore, Tree};

fn event(i: u64) -> AuditEvent {
    AuditEvent::Op {
        doc: "acme:d".into(),
        rev: i,
        client: "c".into(),
        seq: i,
        op_sm3: hex::encode(sm3(&i.to_be_bytes())),
        subject: None,
    }
}

fn with_key(key: &Sm2Verifier) -> Expectations<'_> {
    Expectations {
        verifier: Some(key),
        ..Expectations::default()
    }
}

/// 10 events, a checkpoint (11), 5 events, a checkpoint (17), 2 events.
fn chain() -> (MemoryStore, Sm2Verifier) {
    let (store, key, _) = anchored_chain();
    (store, key)
}

/// [`chain`] with the anchors of its two checkpoints.
fn anchored_chain() -> (MemoryStore, Sm2Verifier, Vec<Anchor>) {
    let (private, _) = generate_sm2_pem().unwrap();
    let signer = Sm2Signer::from_pem(&private).unwrap();
    let store = MemoryStore::new();
    let mut c = AuditChain::resume(&store).unwrap();
    for i in 1..=10 {
        c.append(&store, event(i)).unwrap();
    }
    let a = c.checkpoint(&store, &signer).unwrap();
    // A writer that restarts continues the same chain.
    let mut c = AuditChain::resume(&store).unwrap();
    assert_eq!(c.len(), 11);
    for i in 11..=15 {
        c.append(&store, event(i)).unwrap();
    }
    let b = c.checkpoint(&store, &signer).unwrap();
    c.append(&store, AuditEvent::ServerStop).unwrap();
    c.append(&store, event(16)).unwrap();
    (store, signer.verifier(), vec![a, b])
}

#[test]
fn a_chain_cut_short_is_caught_by_its_anchors_and_the_manifest() {
    let (store, key, anchors) = anchored_chain();
    let all = |a: &[Anchor], min: Option<u64>, s: &MemoryStore| {
        verify(
            &s.audit_all().unwrap(),
            Expectations {
                verifier: Some(&key),
                anchors: a,
                min_len: min,
            },
        )
    };
    let r = all(&anchors, Some(19), &store).unwrap();
    assert_eq!(r.anchors_matched, 2);
    // Every record deleted: "ok, 0 records" without anchors, a fault with them.
    let empty = MemoryStore::new();
    assert_eq!(all(&[], None, &empty).unwrap().records, 0);
    let f = all(&anchors, None, &empty).unwrap_err();
    assert!(f.reason.contains("cut short"), "{f}");
    let f = all(&[], Some(19), &empty).unwrap_err();
    assert!(f.reason.contains("manifest"), "{f}");
    // The tail with the last checkpoint deleted, then a new checkpoint written over the
    // gap by a restarted writer: the anchor of checkpoint 17 no longer matches.
    store
        .kv()
        .delete_range(Tree::Audit, &16u64.to_be_bytes(), &[0xff; 9])
        .unwrap();
    let f = all(&anchors, None, &store).unwrap_err();
    assert_eq!(f.position, 16, "{f}");
    let (private, _) = generate_sm2_pem().unwrap();
    let mut c = AuditChain::resume(&store).unwrap();
    c.append(&store, AuditEvent::ServerStop).unwrap();
    c.append(&store, AuditEvent::ServerStop).unwrap();
    c.checkpoint(&store, &Sm2Signer::from_pem(&private).unwrap())
        .unwrap();
    let f = verify(
        &store.audit_all().unwrap(),
        Expectations {
            anchors: &anchors,
            ..Expectations::default()
        },
    )
    .unwrap_err();
    assert_eq!(f.position, 17, "{f}");
    assert!(f.reason.contains("rewritten"), "{f}");
    // The server refuses to continue a chain shorter than the manifest says.
    let (store, _, _) = anchored_chain();
    store
        .kv()
        .delete_range(Tree::Audit, &10u64.to_be_bytes(), &[0xff; 9])
        .unwrap();
    assert!(matches!(
        AuditChain::resume_checked(&store, 19),
        Err(StoreError::AuditLost {
            have: 9,
            expected: 19
        })
    ));
    // Accepting the loss writes a gap record; verification reports it and goes on.
    let mut c = AuditChain::resume(&store).unwrap();
    assert_eq!(c.accept_loss(&store, 19, "test").unwrap(), Some(20));
    c.append(&store, AuditEvent::ServerStop).unwrap();
    let r = all(&anchors, Some(19), &store).unwrap();
    assert_eq!(r.gaps, vec![(10, 19)]);
    assert_eq!((r.records, r.anchors_in_gaps), (21, 2));
    assert!(AuditChain::resume_checked(&store, 19).is_ok());
    // A forged jump (a gap record naming another range) is refused.
    let (store, _, _) = anchored_chain();
    store
        .kv()
        .delete_range(Tree::Audit, &10u64.to_be_bytes(), &[0xff; 9])
        .unwrap();
    let mut c = AuditChain::resume(&store).unwrap();
    c.accept_loss(&store, 19, "test").unwrap();
    let v = store
        .kv()
        .get(Tree::Audit, &20u64.to_be_bytes())
        .unwrap()
        .unwrap();
    store
        .kv()
        .delete_range(Tree::Audit, &20u64.to_be_bytes(), &21u64.to_be_bytes())
        .unwrap();
    store
        .kv()
        .put_raw(Tree::Audit, &25u64.to_be_bytes(), &v)
        .unwrap();
    assert!(all(&[], None, &store).is_err());
}

#[test]
fn an_intact_chain_verifies() {
    let (store, key) = chain();
    let records = store.audit_all().unwrap();
    let report = verify(&records, with_key(&key)).unwrap();
    assert_eq!(
        report,
        AuditReport {
            records: 19,
            checkpoints: 2,
            verified_checkpoints: 2,
            last_checkpoint: Some(17),
            unsigned_tail: 2,
            ..AuditReport::default()
        }
    );
    assert_eq!(
        verify(&records, Expectations::default())
            .unwrap()
            .verified_checkpoints,
        0
    );
    let mut out = Vec::new();
    assert_eq!(export(&records, &mut out).unwrap(), 19);
    let text = String::from_utf8(out).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["event"]["kind"], "op");
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);
}

fn tampered(f: impl FnOnce(&MemoryStore)) -> AuditFault {
    let (store, key) = chain();
    f(&store);
    verify(&store.audit_all().unwrap(), with_key(&key)).unwrap_err()
}

fn raw(store: &MemoryStore, seq: u64) -> Vec<u8> {
    store
        .kv()
        .get(Tree::Audit, &seq.to_be_bytes())
        .unwrap()
        .unwrap()
}

#[test]
fn a_changed_byte_is_found_and_named() {
    // Every byte position of record 4 (a flip may leave it decodable or not).
    let len = raw(&chain().0, 4).len();
    for i in 0..len {
        let f = tampered(|s| {
            let mut v = raw(s, 4);
            v[i] ^= 0x01;
            s.kv()
                .put_raw(Tree::Audit, &4u64.to_be_bytes(), &v)
                .unwrap();
        });
        assert_eq!(f.position, 4, "byte {i}: {f}");
    }
    // The last record before a checkpoint: the checkpoint's link catches it.
    let f = tampered(|s| {
        let mut v = raw(s, 16);
        let n = v.len();
        v[n - 1] ^= 0x01;
        s.kv()
            .put_raw(Tree::Audit, &16u64.to_be_bytes(), &v)
            .unwrap();
    });
    assert_eq!(f.position, 16, "{f}");
}

#[test]
fn a_deleted_record_is_found_and_named() {
    let f = tampered(|s| {
        s.kv()
            .delete_range(Tree::Audit, &6u64.to_be_bytes(), &7u64.to_be_bytes())
            .unwrap();
    });
    assert_eq!(f.position, 6, "{f}");
    assert!(f.reason.contains("missing"), "{f}");
    // Deleting one and renumbering the rest to hide the gap breaks the links instead.
    let f = tampered(|s| {
        let all = s.audit_all().unwrap();
        s.kv().delete_range(Tree::Audit, &[], &[0xff; 9]).unwrap();
        for (seq, v) in all.into_iter().filter(|(seq, _)| *seq != 6) {
            let new = if seq > 6 { seq - 1 } else { seq };
            s.kv().put_raw(Tree::Audit, &new.to_be_bytes(), &v).unwrap();
        }
    });
    assert_eq!(f.position, 6, "{f}");
}

#[test]
fn reordered_records_are_found_and_named() {
    let f = tampered(|s| {
        let (a, b) = (raw(s, 3), raw(s, 4));
        s.kv()
            .put_raw(Tree::Audit, &3u64.to_be_bytes(), &b)
            .unwrap();
        s.kv()
            .put_raw(Tree::Audit, &4u64.to_be_bytes(), &a)
            .unwrap();
    });
    assert_eq!(f.position, 3, "{f}");
    assert!(f.reason.contains("reordered"), "{f}");
}

#[test]
fn forged_checkpoints_are_refused() {
    // Re-signing with another key after rewriting history.
    let (store, key) = chain();
    let (other, _) = generate_sm2_pem().unwrap();
    let other = Sm2Signer::from_pem(&other).unwrap();
    let mut c = AuditChain::resume(&store).unwrap();
    c.checkpoint(&store, &other).unwrap();
    let f = verify(&store.audit_all().unwrap(), with_key(&key)).unwrap_err();
    assert_eq!(f.position, 20, "{f}");
    // A checkpoint's signature altered (hex stays valid).
    let f = tampered(|s| {
        let mut r = decode(&raw(s, 11)).unwrap();
        if let AuditEvent::Checkpoint { sig, .. } = &mut r.event {
            let flipped = if sig.starts_with('0') { "1" } else { "0" };
            sig.replace_range(0..1, flipped);
        }
        s.kv()
            .put_raw(Tree::Audit, &11u64.to_be_bytes(), &encode(&r).unwrap())
            .unwrap();
    });
    // Rewriting record 11 changes its hash too, but the signature is checked first.
    assert_eq!(f.position, 11, "{f}");
}
