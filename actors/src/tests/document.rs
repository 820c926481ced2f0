//! Tests of the `DocActor`, one group per message: `Submit` (applied, transformed, refused),
//! `Join` (catch-up, snapshot, the answer queued whole with `access`), `Leave`, `SetPresence`.
//! Durability, fan-out, slow consumers and the actor's lifecycle are in `document_stream.rs`.

use coedit_protocol::document::DocumentConfig;
use coedit_protocol::{Component, ErrorCode, Op, PeerPresence, RemoteOp, ServerMsg};

use super::{
    closes, errors, join, op_revs, ops, presences, refusal, submit, test_config, Peer, Rig,
    RigOptions, Seen,
};
use crate::document::{Applied, DocActorConfig, Leave, Submit};
use crate::frame::Format;
use crate::storage::disk::DiskSpace;
use crate::storage::Store;

/// Invariant (Submit, applied): an accepted op produces the next revision and is answered as
/// applied; once durable it is stored with its author, reaches the author's stream (its ack)
/// with its `(client, seq, t)`, and reads see it.
#[actix::test]
async fn submit_applies_the_op_and_streams_it_to_its_author() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let a = Peer::new(1, "alice");
    join(&doc, &a, None).await;
    let op = Op::insert_at(0, "hello");
    let applied = submit(&doc, a.submit(1, 0, op.clone())).await;
    assert_eq!(
        applied.expect("applied"),
        Applied {
            rev: 1,
            op: Some(op.clone()),
            duplicate: false
        }
    );
    rig.settle(&doc).await;
    assert_eq!(rig.text(&doc).await, (1, "hello".to_string()));
    let stored = rig.store.load("d").expect("load").ops;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].rev, stored[0].client.as_str(), stored[0].seq),
        (1, "alice", 1)
    );
    assert_eq!(
        a.frames().await,
        [
            Seen::Msg(
                Format::MsgPack,
                ServerMsg::Snapshot {
                    doc: "d".into(),
                    rev: 0,
                    text: String::new(),
                    access: Some(a.access()),
                }
            ),
            Seen::Msg(
                Format::MsgPack,
                ServerMsg::Ops {
                    doc: "d".into(),
                    ops: vec![RemoteOp {
                        rev: 1,
                        client: "alice".into(),
                        seq: 1,
                        op,
                        t: Some(1001),
                    }],
                    access: None,
                }
            ),
        ]
    );
}

/// Invariant (Submit, concurrent): an op based on an older revision is transformed against
/// every op applied since; every subscriber receives the transformed op, and replaying the
/// stream on the join's snapshot gives the server's text.
#[actix::test]
async fn submit_transforms_against_concurrent_ops() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let (a, b) = (Peer::new(1, "alice"), Peer::new(2, "bob"));
    join(&doc, &a, None).await;
    join(&doc, &b, None).await;
    let first = submit(&doc, a.submit(1, 0, Op::insert_at(0, "hello world"))).await;
    assert_eq!(first.expect("applied").rev, 1);
    rig.settle(&doc).await;
    // Both based on revision 1: alice's lands first, bob's is moved past it.
    let x = submit(&doc, a.submit(2, 1, Op::insert_at(0, "X"))).await;
    let del = submit(&doc, b.submit(1, 1, Op::delete_at(6, 5))).await;
    assert_eq!(x.expect("applied").rev, 2);
    let del = del.expect("applied");
    assert_eq!(del.rev, 3);
    assert_eq!(del.op, Some(Op::delete_at(7, 5)), "moved past the insert");
    rig.settle(&doc).await;
    assert_eq!(rig.text(&doc).await, (3, "Xhello ".to_string()));
    for p in [&a, &b] {
        let seen = p.frames().await;
        assert_eq!(op_revs(&seen), [1, 2, 3]);
        let replayed = ops(&seen).iter().fold(String::new(), |text, o| {
            o.op.apply_str(&text).expect("streamed op applies")
        });
        assert_eq!(replayed, "Xhello ");
    }
}

/// Invariant (Submit, refused): each refusal answers its wire code, and the session gets one
/// `error` naming the document and the op's `seq`; nothing changes: same revision and text,
/// nothing written, nothing streamed to anyone. A session that never joined is refused with
/// `NotJoined` and sent nothing.
#[actix::test]
async fn refused_submits_answer_their_code_and_change_nothing() {
    let rig = Rig::with(RigOptions {
        config: DocActorConfig {
            document: DocumentConfig {
                history_window: 2,
                max_chars: 20,
                ..DocumentConfig::default()
            },
            ..test_config()
        },
        ..RigOptions::default()
    });
    let doc = rig.open("d");
    let (a, watcher) = (Peer::new(1, "alice"), Peer::new(2, "watcher"));
    join(&doc, &a, None).await;
    join(&doc, &watcher, None).await;
    for (seq, op) in [
        Op::insert_at(0, "abc"),
        Op::insert_at(3, "def"),
        Op::insert_at(6, "gh"),
    ]
    .into_iter()
    .enumerate()
    {
        let seq = seq as u64 + 1;
        submit(&doc, a.submit(seq, seq - 1, op))
            .await
            .expect("applied");
    }
    rig.settle(&doc).await;
    let before = (rig.text(&doc).await, a.frames().await.len());
    assert_eq!(before.0, (3, "abcdefgh".to_string()));

    let reaching = Submit {
        reach: 99,
        ..a.submit(
            4,
            3,
            Op::from_components([Component::Retain(99)]).expect("op"),
        )
    };
    let cases: Vec<(&str, Submit, ErrorCode)> = vec![
        (
            "delete past the end",
            a.submit(4, 3, Op::delete_at(0, 50)),
            ErrorCode::OpDoesNotFit,
        ),
        (
            "reach past the end as sent",
            reaching,
            ErrorCode::OpDoesNotFit,
        ),
        (
            "future base",
            a.submit(4, 9, Op::insert_at(0, "z")),
            ErrorCode::FutureRevision,
        ),
        (
            "base older than the window",
            a.submit(4, 0, Op::insert_at(0, "z")),
            ErrorCode::RevisionTooOld,
        ),
        (
            "applied seq, other op",
            a.submit(3, 2, Op::insert_at(0, "zz")),
            ErrorCode::SeqReused,
        ),
        (
            "seq older than the last",
            a.submit(2, 3, Op::insert_at(0, "z")),
            ErrorCode::StaleSeq,
        ),
        (
            "document too large",
            a.submit(4, 3, Op::insert_at(0, &"z".repeat(13))),
            ErrorCode::DocumentTooLarge,
        ),
    ];
    let mut expected_errors = Vec::new();
    for (what, m, code) in cases {
        let seq = m.seq;
        assert_eq!(refusal(&submit(&doc, m).await), Some(code), "{what}");
        expected_errors.push((code, Some("d".to_string()), Some(seq)));
    }
    let stranger = Peer::new(9, "stranger");
    let r = submit(&doc, stranger.submit(1, 3, Op::insert_at(0, "z"))).await;
    assert_eq!(refusal(&r), Some(ErrorCode::NotJoined));

    rig.settle(&doc).await;
    assert_eq!(rig.text(&doc).await, before.0, "nothing changed");
    assert_eq!(rig.store.written_ops("d"), [1, 2, 3], "nothing written");
    let seen = a.frames().await;
    assert_eq!(
        errors(&seen[before.1..]),
        expected_errors,
        "one error each, in order"
    );
    assert_eq!(op_revs(&seen), [1, 2, 3]);
    let watched = watcher.frames().await;
    assert_eq!(op_revs(&watched), [1, 2, 3]);
    assert!(
        errors(&watched).is_empty(),
        "refusals go to their author only"
    );
    assert!(stranger.frames().await.is_empty());
}

/// Invariant (Submit below the disk reserve): edits are refused with `StorageFull` (4006) and
/// neither applied nor written; reads go on.
#[actix::test]
async fn submit_below_the_disk_reserve_is_refused_with_4006() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let rig = Rig::with(RigOptions {
        doc_disk: DiskSpace::new(dir.path(), u64::MAX),
        ..RigOptions::default()
    });
    let doc = rig.open("d");
    let a = Peer::new(1, "alice");
    join(&doc, &a, None).await;
    let r = submit(&doc, a.submit(1, 0, Op::insert_at(0, "x"))).await;
    assert_eq!(refusal(&r), Some(ErrorCode::StorageFull));
    rig.settle(&doc).await;
    assert_eq!(rig.text(&doc).await, (0, String::new()));
    assert!(rig.store.written_ops("d").is_empty());
    let seen = a.frames().await;
    assert_eq!(
        errors(&seen),
        [(ErrorCode::StorageFull, Some("d".into()), Some(1))]
    );
}

/// Invariant (Join with a retained revision): the answer is an `ops` message holding exactly
/// the durable ops after `rev` (none when up to date), carrying the session's `access`.
#[actix::test]
async fn join_with_a_retained_rev_gets_exactly_the_ops_after_it() {
    let rig = Rig::new();
    let doc = rig.open("d");
    rig.fill(&doc, 4, "ab").await;
    let (b, c) = (Peer::new(2, "bob"), Peer::new(3, "carol"));
    join(&doc, &b, Some(2)).await;
    join(&doc, &c, Some(4)).await;
    let seen = b.frames().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    match seen[0].msg() {
        Some(ServerMsg::Ops { doc, ops, access }) => {
            assert_eq!(doc, "d");
            assert_eq!(ops.iter().map(|o| o.rev).collect::<Vec<_>>(), [3, 4]);
            assert_eq!(ops[0].op, Op::insert_at(4, "ab"));
            assert_eq!(ops[0].client, "w");
            assert_eq!(access.as_ref(), Some(&b.access()));
        }
        other => panic!("expected the catch-up, got {other:?}"),
    }
    assert_eq!(
        c.frames().await,
        [Seen::Msg(
            Format::MsgPack,
            ServerMsg::Ops {
                doc: "d".into(),
                ops: Vec::new(),
                access: Some(c.access()),
            }
        )]
    );
}

/// Invariant (Join without a usable revision): without `rev`, with a future one, or with one
/// whose ops are retained neither in memory nor in the store, the answer is a snapshot of the
/// latest durable revision carrying `access`; a revision still in the window catches up.
#[actix::test]
async fn join_without_a_usable_rev_gets_a_snapshot() {
    let rig = Rig::with(RigOptions {
        config: DocActorConfig {
            snapshot_every: 2,
            retain_ops: Some(0),
            document: DocumentConfig {
                history_window: 1,
                ..DocumentConfig::default()
            },
            ..test_config()
        },
        ..RigOptions::default()
    });
    let doc = rig.open("d");
    rig.fill(&doc, 4, "ab").await;
    assert_eq!(rig.store.versions("d").expect("versions").first_op, None);
    for (session, rev) in [(2, None), (3, Some(9)), (4, Some(1))] {
        let p = Peer::new(session, "p");
        join(&doc, &p, rev).await;
        assert_eq!(
            p.frames().await,
            [Seen::Msg(
                Format::MsgPack,
                ServerMsg::Snapshot {
                    doc: "d".into(),
                    rev: 4,
                    text: "abababab".into(),
                    access: Some(p.access()),
                }
            )],
            "join at {rev:?}"
        );
    }
    let p = Peer::new(5, "p");
    join(&doc, &p, Some(3)).await;
    assert_eq!(
        op_revs(&p.frames().await),
        [4],
        "revision 3 is in the window"
    );
}

/// Invariant (Join past the memory window): ops no longer in memory but still in the store are
/// read from the store, so the catch-up is exact.
#[actix::test]
async fn join_catch_up_past_the_memory_window_is_read_from_the_store() {
    let rig = Rig::with(RigOptions {
        config: DocActorConfig {
            document: DocumentConfig {
                history_window: 2,
                ..DocumentConfig::default()
            },
            ..test_config()
        },
        ..RigOptions::default()
    });
    let doc = rig.open("d");
    rig.fill(&doc, 6, "q").await;
    let p = Peer::new(2, "p");
    join(&doc, &p, Some(1)).await;
    let seen = p.frames().await;
    assert_eq!(op_revs(&seen), [2, 3, 4, 5, 6]);
    let stored = rig.store.ops("d", 1, 6).expect("ops");
    let streamed = ops(&seen);
    for (s, r) in stored.iter().zip(&streamed) {
        assert_eq!((s.rev, &s.op, s.seq), (r.rev, &r.op, r.seq));
    }
}

/// Invariant (Join answer queued whole): a catch-up larger than the message budget is split
/// into consecutive `ops` messages, only the first carrying `access`, followed by the others'
/// presence; the whole answer is queued even though it alone exceeds the session's byte
/// bound: a join is never cut by its own size.
#[actix::test]
async fn join_answer_is_queued_whole_even_over_the_byte_bound() {
    const PIECE_CHARS: usize = 120_000;
    const TINY_BOUND: usize = 1;
    let rig = Rig::new();
    let doc = rig.open("d");
    rig.fill(&doc, 3, &"z".repeat(PIECE_CHARS)).await;
    let other = Peer::new(1, "other");
    join(&doc, &other, Some(3)).await;
    doc.send(other.presence(3, &[(1, 2)])).await.expect("actor");
    let j = Peer::bounded(2, "joiner", TINY_BOUND);
    join(&doc, &j, Some(0)).await;
    let seen = j.frames().await;
    assert_eq!(op_revs(&seen), [1, 2, 3]);
    let kinds: Vec<&str> = seen
        .iter()
        .map(|s| match s.msg() {
            Some(ServerMsg::Ops {
                access: Some(_), ..
            }) => "ops+access",
            Some(ServerMsg::Ops { access: None, .. }) => "ops",
            Some(ServerMsg::Presence { .. }) => "presence",
            _ => "other",
        })
        .collect();
    assert!(
        kinds.len() >= 3,
        "the catch-up spans several messages: {kinds:?}"
    );
    assert_eq!(kinds[0], "ops+access");
    assert!(
        kinds[1..kinds.len() - 1].iter().all(|k| *k == "ops"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"presence"));
    assert_eq!(
        presences(&seen),
        [(
            3,
            vec![PeerPresence {
                client: "other".into(),
                sel: vec![(1, 2)],
                user: Some(other.user()),
            }]
        )]
    );
    assert!(closes(&seen).is_empty(), "not cut");
    assert_eq!(
        j.out.queued_bytes(),
        0,
        "every frame was written and counted off"
    );
}

/// Invariant (Leave): the others receive the leaver's presence with an empty selection (a
/// leaver without a caret causes no message); the leaver gets nothing more, and its submits
/// are refused as not joined.
#[actix::test]
async fn leave_clears_presence_for_the_others_and_ends_the_stream() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let (a, b, c) = (
        Peer::new(1, "alice"),
        Peer::new(2, "bob"),
        Peer::new(3, "carol"),
    );
    for p in [&a, &b, &c] {
        join(&doc, p, None).await;
    }
    doc.send(a.presence(0, &[(0, 0)])).await.expect("actor");
    rig.sync(&doc).await;
    let before = b.frames().await.len();
    doc.send(Leave { session: c.session }).await.expect("actor");
    rig.sync(&doc).await;
    assert_eq!(b.frames().await.len(), before, "carol had no caret");
    doc.send(Leave { session: a.session }).await.expect("actor");
    rig.sync(&doc).await;
    let seen = b.frames().await;
    assert_eq!(
        presences(&seen[before..]),
        [(
            0,
            vec![PeerPresence {
                client: "alice".into(),
                sel: Vec::new(),
                user: None,
            }]
        )]
    );
    let a_before = a.frames().await.len();
    submit(&doc, b.submit(1, 0, Op::insert_at(0, "x")))
        .await
        .expect("applied");
    rig.settle(&doc).await;
    assert_eq!(a.frames().await.len(), a_before, "nothing after leaving");
    assert_eq!(op_revs(&b.frames().await), [1]);
    let r = submit(&doc, a.submit(1, 1, Op::insert_at(0, "y"))).await;
    assert_eq!(refusal(&r), Some(ErrorCode::NotJoined));
}

/// Invariant (SetPresence): selections given at an older revision are transformed to the
/// current one before they are broadcast (with the user's name and colour), keep moving with
/// every later op, and a later joiner gets them at the current revision.
#[actix::test]
async fn presence_is_transformed_to_the_current_revision_and_kept_moving() {
    let rig = Rig::new();
    let doc = rig.open("d");
    rig.fill(&doc, 1, "hello world").await;
    let (a, b) = (Peer::new(1, "alice"), Peer::new(2, "bob"));
    join(&doc, &a, Some(1)).await;
    join(&doc, &b, Some(1)).await;
    submit(&doc, b.submit(1, 1, Op::insert_at(0, "XYZ")))
        .await
        .expect("applied");
    rig.settle(&doc).await;
    doc.send(a.presence(1, &[(6, 11)])).await.expect("actor");
    rig.sync(&doc).await;
    let alice = |sel| PeerPresence {
        client: "alice".into(),
        sel: vec![sel],
        user: Some(a.user()),
    };
    assert_eq!(presences(&b.frames().await), [(2, vec![alice((9, 14))])]);
    submit(&doc, b.submit(2, 2, Op::insert_at(0, "Q")))
        .await
        .expect("applied");
    rig.settle(&doc).await;
    let c = Peer::new(3, "carol");
    join(&doc, &c, Some(3)).await;
    assert_eq!(presences(&c.frames().await), [(3, vec![alice((10, 15))])]);
}

/// Invariant (SetPresence refused): a selection outside the document at its revision, or at a
/// revision that is not retained, gets `error` 2004 (without `seq`) and changes nothing: the
/// others hear nothing and the stored selection stays.
#[actix::test]
async fn bad_selection_gets_2004_and_changes_nothing() {
    let rig = Rig::new();
    let doc = rig.open("d");
    rig.fill(&doc, 1, "hello").await;
    let (a, b) = (Peer::new(1, "alice"), Peer::new(2, "bob"));
    join(&doc, &a, Some(1)).await;
    join(&doc, &b, Some(1)).await;
    doc.send(a.presence(1, &[(2, 2)])).await.expect("actor");
    rig.sync(&doc).await;
    let (a_before, b_before) = (a.frames().await.len(), b.frames().await.len());
    doc.send(a.presence(1, &[(0, 6)])).await.expect("actor");
    doc.send(a.presence(9, &[(0, 0)])).await.expect("actor");
    rig.sync(&doc).await;
    let seen = a.frames().await;
    assert_eq!(
        errors(&seen[a_before..]),
        [
            (ErrorCode::InvalidSelection, Some("d".into()), None),
            (ErrorCode::InvalidSelection, Some("d".into()), None),
        ]
    );
    assert_eq!(seen.len(), a_before + 2);
    assert_eq!(b.frames().await.len(), b_before, "the others hear nothing");
    let c = Peer::new(3, "carol");
    join(&doc, &c, Some(1)).await;
    let kept = presences(&c.frames().await);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].1[0].sel, [(2, 2)], "the stored selection stays");
}
