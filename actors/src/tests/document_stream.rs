//! Tests of what a `DocActor` sends and when: "nothing is shown before `Durable`", revision
//! order across flushes, acks of resends, relaxed mode, fan-out coalescing, slow consumers
//! (close 1013, queue freed), and its lifecycle: snapshots, idle unload, `Shutdown` (1012).

use std::time::Duration;

use coedit_protocol::{ErrorCode, Op, PeerPresence, ServerMsg};

use super::{
    closes, join, op_revs, presences, refusal, submit, test_config, wait_for, wait_until, Peer,
    Rig, RigOptions, Seen, StoreEvent, RECORDER_CAPACITY, RECORDER_MAX_BYTES,
};
use crate::document::{DocActorConfig, Leave, Shutdown, Submit};
use crate::errors::{CLOSE_RESTART, CLOSE_TRY_AGAIN};
use crate::frame::Format;
use crate::registry::{OpenCount, OpenDoc};
use crate::storage::{Durability, Store};
use crate::store_actor::FlushNow;

/// Fan-out tick of the coalescing test: long enough that the real time a test takes never
/// reaches it (the actor measures its last flush with the real clock).
const FANOUT_TICK: Duration = Duration::from_secs(30);
/// Idle timeout of the unload test.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A step of the paused clock short of a deadline.
const MARGIN: Duration = Duration::from_secs(1);
/// Snapshot interval of the snapshot test.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(30);
/// Flush interval of the relaxed-mode test.
const RELAXED_INTERVAL: Duration = Duration::from_millis(200);
/// Byte bound of the slow consumer cut by bytes.
const SLOW_BYTES: usize = 4096;
/// Ops of this many characters: one fills most of [`SLOW_BYTES`].
const BIG_OP_CHARS: usize = 3000;
/// Mailbox bound (frames) of the slow consumer cut by frames.
const SLOW_FRAMES: usize = 2;

/// A REST submit (no session) of `op` by client `rest` under `seq` at `base`.
fn rest_submit(seq: u64, base: u64, op: Op) -> Submit {
    Submit {
        session: None,
        client: "rest".into(),
        seq,
        base_rev: base,
        reach: op.base_len(),
        op,
        t: None,
        subject: None,
    }
}

/// Invariant (strict durability, "nothing is shown before `Durable`"): an accepted op reaches
/// no subscriber, its author included, until the store reports it durable; meanwhile joins and
/// reads see the last durable revision and a REST submit is not answered; then every
/// subscriber, a joiner of the meantime too, gets it.
#[actix::test]
async fn nothing_is_shown_before_durable() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let (a, b) = (Peer::new(1, "alice"), Peer::new(2, "bob"));
    join(&doc, &a, None).await;
    join(&doc, &b, None).await;
    rig.store.hold();
    let applied = submit(&doc, a.submit(1, 0, Op::insert_at(0, "hi"))).await;
    assert_eq!(applied.expect("applied").rev, 1);
    let rest = actix::spawn(doc.send(rest_submit(1, 1, Op::insert_at(2, "!"))));
    wait_until("the flush starts", || rig.store.flushes_started() == 1).await;
    rig.sync(&doc).await;
    for p in [&a, &b] {
        let seen = p.frames().await;
        assert_eq!(seen.len(), 1, "only the join's answer: {seen:?}");
        assert!(op_revs(&seen).is_empty());
    }
    assert_eq!(
        rig.text(&doc).await,
        (0, String::new()),
        "reads see revision 0"
    );
    let c = Peer::new(3, "carol");
    join(&doc, &c, None).await;
    assert!(matches!(
        c.frames().await[0].msg(),
        Some(ServerMsg::Snapshot { rev: 0, text, .. }) if text.is_empty()
    ));
    assert!(!rest.is_finished(), "a REST submit waits for durability");

    rig.store.open();
    let answered = rest.await.expect("task").expect("actor").expect("applied");
    assert_eq!(answered.rev, 2);
    rig.settle(&doc).await;
    for p in [&a, &b, &c] {
        assert_eq!(op_revs(&p.frames().await), [1, 2]);
    }
    assert_eq!(rig.text(&doc).await, (2, "hi!".to_string()));
}

/// Invariant (ordering): ops reach every subscriber in revision order, each once, whatever
/// flush made them durable; ops arriving during a flush are shown only after the next one;
/// each subscriber gets its own encoding of the same messages.
#[actix::test]
async fn ops_reach_everyone_in_revision_order_across_flushes() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let (a, b) = (Peer::new(1, "alice"), Peer::json(2, "bob"));
    join(&doc, &a, None).await;
    join(&doc, &b, None).await;
    rig.store.hold();
    submit(&doc, a.submit(1, 0, Op::insert_at(0, "a")))
        .await
        .expect("applied");
    wait_until("flush 1 starts", || rig.store.flushes_started() == 1).await;
    submit(&doc, b.submit(1, 1, Op::insert_at(1, "b")))
        .await
        .expect("applied");
    submit(&doc, a.submit(2, 1, Op::insert_at(0, "c")))
        .await
        .expect("applied");
    rig.sync(&doc).await;
    assert!(op_revs(&a.frames().await).is_empty());

    rig.store.allow(1);
    wait_until("flush 2 starts", || rig.store.flushes_started() == 2).await;
    rig.sync(&doc).await;
    assert_eq!(op_revs(&a.frames().await), [1], "2 and 3 wait for flush 2");
    assert_eq!(op_revs(&b.frames().await), [1]);

    rig.store.open();
    rig.settle(&doc).await;
    let (sa, sb) = (a.frames().await, b.frames().await);
    assert_eq!(op_revs(&sa), [1, 2, 3]);
    assert_eq!(op_revs(&sb), [1, 2, 3]);
    assert!(sa
        .iter()
        .all(|s| matches!(s, Seen::Msg(Format::MsgPack, _))));
    assert!(sb.iter().all(|s| matches!(s, Seen::Msg(Format::Json, _))));
    let strip = |s: &[Seen]| -> Vec<ServerMsg> {
        s.iter()
            .skip(1) // the join answers differ in `access`
            .filter_map(|x| x.msg().cloned())
            .collect()
    };
    assert_eq!(
        strip(&sa),
        strip(&sb),
        "the same messages in both encodings"
    );
    assert_eq!(rig.text(&doc).await, (3, "cab".to_string()));
}

/// Invariant (resend): a duplicate of an applied op changes nothing; it is answered with `ack`
/// carrying the original revision only once that op is durable and after the op itself
/// reached the session.
#[actix::test]
async fn duplicate_resend_is_acked_after_its_op_is_shown() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let a = Peer::new(1, "alice");
    join(&doc, &a, None).await;
    rig.store.hold();
    let op = Op::insert_at(0, "once");
    submit(&doc, a.submit(1, 0, op.clone()))
        .await
        .expect("applied");
    wait_until("the flush starts", || rig.store.flushes_started() == 1).await;
    let dup = submit(&doc, a.submit(1, 0, op.clone()))
        .await
        .expect("a resend is accepted");
    assert!(dup.duplicate);
    assert_eq!(dup.rev, 1);
    rig.sync(&doc).await;
    assert_eq!(a.frames().await.len(), 1, "no op and no ack before durable");

    rig.store.open();
    rig.settle(&doc).await;
    let ack = Seen::Msg(
        Format::MsgPack,
        ServerMsg::Ack {
            doc: "d".into(),
            seq: 1,
            rev: 1,
        },
    );
    let seen = a.frames().await;
    assert_eq!(op_revs(&seen), [1]);
    assert_eq!(seen.last(), Some(&ack), "the ack follows the op: {seen:?}");
    assert_eq!(rig.store.written_ops("d"), [1], "applied once");
    submit(&doc, a.submit(1, 0, op)).await.expect("resend");
    rig.sync(&doc).await;
    let again = a.frames().await;
    assert_eq!(again.len(), seen.len() + 1);
    assert_eq!(again.last(), Some(&ack), "a late resend is acked at once");
}

/// Invariant (relaxed durability): ops are shown, and REST submits answered, at once, before
/// any flush; the store flushes them on its interval.
#[actix::test]
async fn relaxed_mode_shows_ops_before_any_flush() {
    let rig = Rig::with(RigOptions {
        durability: Durability::Relaxed {
            interval: RELAXED_INTERVAL,
        },
        ..RigOptions::default()
    });
    let doc = rig.open("d");
    let a = Peer::new(1, "alice");
    join(&doc, &a, None).await;
    submit(&doc, a.submit(1, 0, Op::insert_at(0, "x")))
        .await
        .expect("applied");
    submit(&doc, rest_submit(1, 1, Op::insert_at(1, "y")))
        .await
        .expect("answered at once");
    rig.sync(&doc).await;
    assert_eq!(op_revs(&a.frames().await), [1, 2]);
    assert_eq!(rig.text(&doc).await, (2, "xy".to_string()));
    rig.all_written().await;
    assert_eq!(rig.store.flushes_started(), 0, "shown before any flush");
    rig.clock.advance(RELAXED_INTERVAL).await;
    wait_until("the interval's flush", || rig.store.flushes_finished() == 1).await;
}

/// Invariant (coalescing): ops made durable within one fan-out tick reach a subscriber as one
/// `ops` message at the end of the tick, not before.
#[actix::test]
async fn fanout_coalesces_the_ops_of_one_tick() {
    let rig = Rig::with(RigOptions {
        config: DocActorConfig {
            fanout_tick: FANOUT_TICK,
            ..test_config()
        },
        ..RigOptions::default()
    });
    let doc = rig.open("d");
    let a = Peer::new(1, "alice");
    join(&doc, &a, None).await;
    for seq in 1..=3 {
        submit(&doc, a.submit(seq, seq - 1, Op::insert_at(0, "x")))
            .await
            .expect("applied");
        rig.settle(&doc).await;
    }
    assert_eq!(
        a.frames().await.len(),
        1,
        "only the join's answer within the tick"
    );
    rig.clock.advance(FANOUT_TICK).await;
    rig.sync(&doc).await;
    let seen = a.frames().await;
    assert_eq!(seen.len(), 2, "one ops message: {seen:?}");
    assert_eq!(op_revs(&seen), [1, 2, 3]);
}

/// Invariant (crowded documents): the fan-out tick stretches by `fanout_tick_per_subscriber`
/// per subscriber, so three subscribers at 2 ms each hear the ops of one tick after 6 ms, not
/// after the 1 ms base tick.
#[actix::test]
async fn fanout_tick_stretches_with_the_subscribers() {
    const PER_SUBSCRIBER: Duration = Duration::from_millis(2);
    let rig = Rig::with(RigOptions {
        config: DocActorConfig {
            fanout_tick: Duration::from_millis(1),
            fanout_tick_per_subscriber: PER_SUBSCRIBER,
            ..test_config()
        },
        ..RigOptions::default()
    });
    let doc = rig.open("d");
    let peers = [
        Peer::new(1, "alice"),
        Peer::new(2, "bob"),
        Peer::new(3, "carol"),
    ];
    for p in &peers {
        join(&doc, p, None).await;
    }
    let a = &peers[0];
    for seq in 1..=2 {
        submit(&doc, a.submit(seq, seq - 1, Op::insert_at(0, "x")))
            .await
            .expect("applied");
        rig.settle(&doc).await;
    }
    rig.clock.advance(Duration::from_millis(1)).await;
    rig.sync(&doc).await;
    assert_eq!(
        op_revs(&peers[1].frames().await),
        Vec::<u64>::new(),
        "not after the base tick"
    );
    rig.clock.advance(PER_SUBSCRIBER * 3).await;
    rig.sync(&doc).await;
    for p in &peers {
        let seen = p.frames().await;
        assert_eq!(op_revs(&seen), [1, 2], "after 3 x 2 ms, together: {seen:?}");
    }
}

/// Invariant (slow consumer, bytes): a subscriber whose queued bytes reached its bound is cut
/// at the next frame: after what was already queued it gets close 1013 and nothing more, it is
/// no longer subscribed, and once its queue is gone its outbox counts 0 bytes. The others get
/// every op.
#[actix::test]
async fn slow_consumer_over_its_byte_bound_is_cut_with_1013() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let slow = Peer::stalled(1, "slow", RECORDER_CAPACITY, SLOW_BYTES).await;
    let fast = Peer::new(2, "fast");
    join(&doc, &slow, None).await;
    join(&doc, &fast, None).await;
    let big = "y".repeat(BIG_OP_CHARS);
    for seq in 1..=4 {
        let at = (seq as usize - 1) * BIG_OP_CHARS;
        submit(&doc, fast.submit(seq, seq - 1, Op::insert_at(at, &big)))
            .await
            .expect("applied");
        rig.settle(&doc).await;
    }
    assert!(
        slow.out.queued_bytes() >= SLOW_BYTES,
        "its frames are still counted"
    );
    let r = submit(&doc, slow.submit(1, 4, Op::insert_at(0, "z"))).await;
    assert_eq!(
        refusal(&r),
        Some(ErrorCode::NotJoined),
        "no longer subscribed"
    );
    assert_eq!(op_revs(&fast.frames().await), [1, 2, 3, 4]);

    slow.release();
    wait_until("the slow queue is freed", || {
        slow.out.queued_bytes() == 0 && !slow.connected()
    })
    .await;
    let seen = slow.seen_now();
    assert_eq!(
        op_revs(&seen),
        [1, 2],
        "the ops queued before the bound was reached"
    );
    assert_eq!(closes(&seen), [CLOSE_TRY_AGAIN]);
    assert_eq!(
        seen.last(),
        Some(&Seen::Close(CLOSE_TRY_AGAIN)),
        "nothing after it"
    );
}

/// Invariant (slow consumer, frames): a subscriber whose mailbox is full is cut the same way:
/// close 1013 after a gapless prefix of the ops, nothing after, queue freed to 0 bytes.
#[actix::test]
async fn slow_consumer_over_its_frame_bound_is_cut_with_1013() {
    const OPS: u64 = 6;
    let rig = Rig::new();
    let doc = rig.open("d");
    let slow = Peer::stalled(1, "slow", SLOW_FRAMES, RECORDER_MAX_BYTES).await;
    let fast = Peer::new(2, "fast");
    join(&doc, &slow, None).await;
    join(&doc, &fast, None).await;
    for seq in 1..=OPS {
        submit(&doc, fast.submit(seq, seq - 1, Op::insert_at(0, "y")))
            .await
            .expect("applied");
        rig.settle(&doc).await;
    }
    let r = submit(&doc, slow.submit(1, OPS, Op::insert_at(0, "z"))).await;
    assert_eq!(refusal(&r), Some(ErrorCode::NotJoined), "cut");
    slow.release();
    wait_until("the slow queue is freed", || {
        slow.out.queued_bytes() == 0 && !slow.connected()
    })
    .await;
    let seen = slow.seen_now();
    let revs = op_revs(&seen);
    assert!(!revs.is_empty() && revs.len() < OPS as usize, "{revs:?}");
    assert!(
        revs.iter().copied().eq(1..=revs.len() as u64),
        "gapless: {revs:?}"
    );
    assert_eq!(seen.last(), Some(&Seen::Close(CLOSE_TRY_AGAIN)));
    assert_eq!(closes(&seen).len(), 1);
    assert_eq!(op_revs(&fast.frames().await), (1..=OPS).collect::<Vec<_>>());
}

/// Invariant (Leave, slow consumer): when a subscriber with a caret is cut as a slow consumer,
/// the others receive its presence with an empty selection, as for any leave — also when the
/// cut happens while a presence message is being sent, and after its session's `Leave`.
#[actix::test]
async fn cut_slow_consumer_caret_is_cleared_for_the_others() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let slow = Peer::stalled(1, "slow", RECORDER_CAPACITY, SLOW_BYTES).await;
    let fast = Peer::new(2, "fast");
    join(&doc, &slow, None).await;
    join(&doc, &fast, None).await;
    doc.send(slow.presence(0, &[(0, 0)])).await.expect("actor");
    let big = "y".repeat(2 * SLOW_BYTES);
    submit(&doc, fast.submit(1, 0, Op::insert_at(0, &big)))
        .await
        .expect("applied");
    rig.settle(&doc).await;
    assert!(
        slow.out.queued_bytes() >= SLOW_BYTES,
        "over the bound, not yet cut"
    );
    // The next frame to the slow consumer is this presence: it is cut in the broadcast.
    doc.send(fast.presence(1, &[(1, 1)])).await.expect("actor");
    rig.sync(&doc).await;
    // What its session does once closed.
    doc.send(Leave {
        session: slow.session,
    })
    .await
    .expect("actor");
    rig.settle(&doc).await;
    let cleared = PeerPresence {
        client: "slow".into(),
        sel: Vec::new(),
        user: None,
    };
    let seen = presences(&fast.frames().await);
    assert!(
        seen.iter().any(|(_, peers)| peers.contains(&cleared)),
        "the slow consumer's caret is never cleared: {seen:?}"
    );
}

/// Invariant (snapshots): a snapshot is written every `snapshot_every` ops and, for a document
/// with new ops, every `snapshot_interval`; an unchanged document writes none.
#[actix::test]
async fn snapshots_are_written_every_n_ops_and_on_the_interval() {
    let rig = Rig::with(RigOptions {
        config: DocActorConfig {
            snapshot_every: 3,
            snapshot_interval: SNAPSHOT_INTERVAL,
            ..test_config()
        },
        ..RigOptions::default()
    });
    let doc = rig.open("d");
    rig.fill(&doc, 4, "s").await;
    let snapshots = || -> Vec<u64> {
        rig.store
            .events()
            .iter()
            .filter_map(|e| match e {
                StoreEvent::Snapshot { rev, .. } => Some(*rev),
                _ => None,
            })
            .collect()
    };
    assert_eq!(snapshots(), [3]);
    rig.clock.advance(SNAPSHOT_INTERVAL).await;
    rig.settle(&doc).await;
    assert_eq!(snapshots(), [3, 4]);
    rig.clock.advance(SNAPSHOT_INTERVAL).await;
    rig.settle(&doc).await;
    assert_eq!(snapshots(), [3, 4], "nothing new, no snapshot");
    let stored = rig.store.load("d").expect("load");
    assert_eq!(
        stored.snapshot.map(|s| (s.rev, s.text)),
        Some((4, "ssss".into()))
    );
}

/// Invariant (idle unload): a document nobody has been subscribed to for the idle timeout
/// saves a snapshot of its latest revision, stops, and the registry forgets it (`DocClosed`);
/// the wait restarts when the last subscriber leaves; no real time passes.
#[actix::test]
async fn idle_document_saves_stops_and_tells_the_registry() {
    let rig = Rig::with(RigOptions {
        config: DocActorConfig {
            idle_timeout: IDLE_TIMEOUT,
            ..test_config()
        },
        ..RigOptions::default()
    });
    let open = OpenDoc {
        kind: coedit_protocol::DocKind::Text,
        id: "d".into(),
        name: "d".into(),
        create: true,
    };
    let doc = rig
        .registry
        .send(open)
        .await
        .expect("registry runs")
        .expect("document opens");
    let doc = <crate::document::DocActor as crate::registry::KindActor>::addr_of(doc)
        .expect("a text document");
    let open_count = || async { rig.registry.send(OpenCount).await.expect("registry runs") };
    assert_eq!(open_count().await, 1);
    let a = Peer::new(1, "alice");
    join(&doc, &a, None).await;
    for seq in 1..=2 {
        submit(&doc, a.submit(seq, seq - 1, Op::insert_at(0, "i")))
            .await
            .expect("applied");
    }
    rig.settle(&doc).await;
    rig.clock.advance(IDLE_TIMEOUT / 2).await;
    doc.send(Leave { session: a.session }).await.expect("actor");
    // The check armed at load time comes and goes: someone was subscribed since.
    // (An unloading actor would answer `Closing`, or not at all once stopped: `text` panics.)
    rig.clock.advance(IDLE_TIMEOUT / 2 + MARGIN).await;
    assert_eq!(rig.text(&doc).await, (2, "ii".to_string()));
    assert_eq!(open_count().await, 1);
    // Just before the timeout counted from the leave.
    rig.clock.advance(IDLE_TIMEOUT / 2 - 2 * MARGIN).await;
    assert_eq!(
        rig.text(&doc).await,
        (2, "ii".to_string()),
        "loaded a second before"
    );
    assert!(rig.store.load("d").expect("load").snapshot.is_none());

    rig.clock.advance(2 * MARGIN).await;
    let registry = rig.registry.clone();
    wait_for("the registry forgets the document", || {
        let registry = registry.clone();
        async move { registry.send(OpenCount).await.expect("registry runs") == 0 }
    })
    .await;
    wait_until("the actor stops", || !doc.connected()).await;
    let stored = rig.store.load("d").expect("load");
    assert_eq!(
        stored.snapshot.map(|s| (s.rev, s.text)),
        Some((2, "ii".into()))
    );
    assert!(rig.store.flushes_finished() >= 1);
}

/// Invariant (Shutdown): the document snapshots every accepted op and makes it durable, sends
/// every subscriber the ops not yet shown, then closes each with 1012, answers and stops;
/// meanwhile it refuses requests as closing.
#[actix::test]
async fn shutdown_saves_shows_pending_ops_and_closes_with_1012() {
    let rig = Rig::new();
    let doc = rig.open("d");
    let (a, b) = (Peer::new(1, "alice"), Peer::new(2, "bob"));
    join(&doc, &a, None).await;
    join(&doc, &b, None).await;
    rig.store.hold();
    submit(&doc, a.submit(1, 0, Op::insert_at(0, "last")))
        .await
        .expect("applied");
    wait_until("the flush starts", || rig.store.flushes_started() == 1).await;
    let stopping = actix::spawn(doc.send(Shutdown));
    let r = submit(&doc, b.submit(1, 1, Op::insert_at(0, "late"))).await;
    assert_eq!(refusal(&r), Some(ErrorCode::Unavailable), "closing");
    assert!(!stopping.is_finished());
    assert!(op_revs(&a.frames().await).is_empty());

    rig.store.open();
    stopping.await.expect("task").expect("answered");
    wait_until("the actor stops", || !doc.connected()).await;
    for p in [&a, &b] {
        let seen = p.frames().await;
        assert_eq!(op_revs(&seen), [1], "pending ops first");
        assert_eq!(seen.last(), Some(&Seen::Close(CLOSE_RESTART)));
    }
    let stored = rig.store.load("d").expect("load");
    assert_eq!(
        stored.snapshot.map(|s| (s.rev, s.text)),
        Some((1, "last".into()))
    );
    rig.writer.send(FlushNow).await.expect("store actor");
    assert_eq!(rig.store.written_ops("d"), [1]);
}
