//! Tests of the `StoreActor` (group commit, durability reports, relaxed mode, snapshots, audit
//! records) and of the write pool's `apply_batch`/`WriteBatch`, driven by messages over a
//! [`GatedStore`] whose flushes the test lets through one at a time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use coedit_protocol::{DocumentSnapshot, Op};

use super::{wait_until, GatedStore, Rig, RigOptions, StoreEvent};
use crate::document::Durable;
use crate::security::anchor::AnchorLog;
use crate::security::audit::{self, AuditChain, AuditEvent};
use crate::security::crypto::sm3;
use crate::storage::disk::DiskSpace;
use crate::storage::manifest::Manifest;
use crate::storage::{Durability, LogRecord, Store};
use crate::store_actor::{Append, FlushNow, Progress, PutSnapshot};
use crate::write_pool::{apply_batch, FlushAfter, Write, WriteBatch, WritePool};

/// Flush interval of the relaxed-mode tests.
const RELAXED_INTERVAL: Duration = Duration::from_millis(200);

/// One `Durable` a document heard, with what was true when it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Heard {
    rev: u64,
    /// The manifest's acknowledged revision of the document then.
    manifest_rev: Option<u64>,
    /// Flushes completed then.
    flushes: usize,
    /// Told fenced (cluster mode: another node wrote the document first).
    fenced: bool,
}

/// Stands in for a document actor: records every `Durable` it is sent.
pub(super) struct DurableLog {
    doc: String,
    manifest: Arc<Manifest>,
    store: Arc<GatedStore>,
    heard: Arc<Mutex<Vec<Heard>>>,
}

impl Actor for DurableLog {
    type Context = Context<Self>;
}

impl Handler<Durable> for DurableLog {
    type Result = ();

    fn handle(&mut self, m: Durable, _: &mut Context<Self>) {
        let heard = Heard {
            rev: m.rev,
            manifest_rev: self.manifest.expected_rev(&self.doc),
            flushes: self.store.flushes_finished(),
            fenced: m.fenced,
        };
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(heard);
    }
}

/// A [`DurableLog`] for `doc` and what it heard.
pub(super) fn durable_log(rig: &Rig, doc: &str) -> (Addr<DurableLog>, Arc<Mutex<Vec<Heard>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let addr = DurableLog {
        doc: doc.to_string(),
        manifest: rig.manifest.clone(),
        store: rig.store.clone(),
        heard: heard.clone(),
    }
    .start();
    (addr, heard)
}

fn heard(h: &Arc<Mutex<Vec<Heard>>>) -> Vec<Heard> {
    h.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The op of revision `rev` in the tests' documents: one more "x" at the end.
fn op_at(rev: u64) -> Op {
    Op::insert_at(rev as usize - 1, "x")
}

/// An append of revision `rev` of `doc`, reporting to `to`.
pub(super) fn append(doc: &str, rev: u64, subject: Option<&str>, to: &Addr<DurableLog>) -> Append {
    Append {
        doc: Arc::from(doc),
        record: LogRecord {
            rev,
            client: "c1".into(),
            seq: rev,
            op: op_at(rev),
        }
        .into(),
        subject: subject.map(Arc::from),
        notify: to.clone().recipient(),
    }
}

/// Invariant (group commit): appends arriving while a flush is in progress are not covered by
/// it; they all go into the next flush (one flush for all of them), and each document hears
/// `Durable { rev }` only after the flush covering `rev` completed and the manifest recorded
/// it, with its own highest covered revision.
#[actix::test]
async fn appends_during_a_flush_go_into_the_next_flush() {
    let rig = Rig::with(RigOptions {
        manifest: true,
        ..RigOptions::default()
    });
    let (a, heard_a) = durable_log(&rig, "a");
    let (b, heard_b) = durable_log(&rig, "b");
    rig.store.hold();
    rig.writer.do_send(append("a", 1, None, &a));
    wait_until("flush 1 starts", || rig.store.flushes_started() == 1).await;
    assert_eq!(rig.store.newly_covered(1, "a"), [1]);

    for rev in 2..=4 {
        rig.writer.do_send(append("a", rev, None, &a));
    }
    rig.writer.do_send(append("b", 1, None, &b));
    rig.writer.do_send(append("b", 2, None, &b));
    rig.all_written().await;
    assert_eq!(
        rig.store.written_ops("a"),
        [1],
        "writes arriving during a flush wait for the batch that carries the next flush"
    );
    assert!(
        heard(&heard_a).is_empty(),
        "nothing is durable before flush 1 ends"
    );
    assert_eq!(rig.manifest.expected_rev("a"), None);

    rig.store.allow(1);
    wait_until("Durable after flush 1", || !heard(&heard_a).is_empty()).await;
    wait_until("flush 2 starts", || rig.store.flushes_started() == 2).await;
    assert_eq!(
        heard(&heard_a),
        [Heard {
            rev: 1,
            manifest_rev: Some(1),
            flushes: 1,
            fenced: false
        }],
        "flush 1 covers revision 1 only"
    );
    assert!(heard(&heard_b).is_empty());
    assert_eq!(rig.store.newly_covered(2, "a"), [2, 3, 4]);
    assert_eq!(rig.store.newly_covered(2, "b"), [1, 2]);

    rig.store.allow(1);
    wait_until("Durable after flush 2", || {
        heard(&heard_a).len() == 2 && heard(&heard_b).len() == 1
    })
    .await;
    assert_eq!(
        heard(&heard_a)[1],
        Heard {
            rev: 4,
            manifest_rev: Some(4),
            flushes: 2,
            fenced: false
        }
    );
    assert_eq!(
        heard(&heard_b),
        [Heard {
            rev: 2,
            manifest_rev: Some(2),
            flushes: 2,
            fenced: false
        }]
    );
    let (received, written, flushed, flushing) =
        rig.writer.send(Progress).await.expect("store actor");
    assert_eq!((received, written, flushed, flushing), (6, 6, 6, false));
    assert_eq!(
        rig.store.flushes_started(),
        2,
        "no flush without new writes"
    );
}

/// Invariant (`FlushNow`): the answer comes only once a flush covering every write received
/// before it has completed.
#[actix::test]
async fn flush_now_answers_once_everything_received_is_durable() {
    let rig = Rig::with(RigOptions {
        manifest: true,
        ..RigOptions::default()
    });
    let (a, _) = durable_log(&rig, "a");
    rig.store.hold();
    rig.writer.do_send(append("a", 1, None, &a));
    let flushed = actix::spawn(rig.writer.send(FlushNow));
    wait_until("flush 1 starts", || rig.store.flushes_started() == 1).await;
    rig.all_written().await;
    assert!(
        !flushed.is_finished(),
        "FlushNow answered before the flush ended"
    );
    rig.store.allow(1);
    flushed.await.expect("task").expect("store actor");
    assert_eq!(rig.store.flushes_finished(), 1);
    assert_eq!(rig.manifest.expected_rev("a"), Some(1));
}

/// Invariant (group commit window): in strict mode a flush starts at most once per window;
/// appends arriving inside it wait, not yet written, and all go with one flush when it ends.
/// The first flush starts at once.
#[actix::test]
async fn a_group_commit_window_spaces_flushes_and_batches_what_arrives_inside_it() {
    const WINDOW: Duration = Duration::from_millis(10);
    let rig = Rig::with(RigOptions {
        manifest: true,
        group_commit: WINDOW,
        ..RigOptions::default()
    });
    let (a, heard_a) = durable_log(&rig, "a");
    rig.writer.do_send(append("a", 1, None, &a));
    wait_until("Durable after flush 1", || heard(&heard_a).len() == 1).await;
    assert_eq!(
        rig.store.flushes_started(),
        1,
        "the first flush does not wait"
    );

    for rev in 2..=4 {
        rig.writer.do_send(append("a", rev, None, &a));
    }
    let (received, written, flushed, flushing) =
        rig.writer.send(Progress).await.expect("store actor");
    assert_eq!((received, written, flushed, flushing), (4, 1, 1, false));
    assert_eq!(rig.store.written_ops("a"), [1], "held inside the window");
    rig.clock.advance(WINDOW / 2).await;
    assert_eq!(rig.store.flushes_started(), 1, "no flush inside the window");

    rig.clock.advance(WINDOW / 2).await;
    wait_until("Durable after flush 2", || heard(&heard_a).len() == 2).await;
    assert_eq!(rig.store.flushes_started(), 2);
    assert_eq!(
        rig.store.newly_covered(2, "a"),
        [2, 3, 4],
        "one flush for all three"
    );
    assert_eq!(
        heard(&heard_a)[1],
        Heard {
            rev: 4,
            manifest_rev: Some(4),
            flushes: 2,
            fenced: false
        }
    );
}

/// Invariant (relaxed durability): an append is written to the store at once but nothing
/// flushes until the relaxed interval elapses; nobody is sent `Durable` (the document already
/// acknowledged); the interval's flush records the revision in the manifest.
#[actix::test]
async fn relaxed_appends_are_written_at_once_and_flushed_on_the_interval() {
    let rig = Rig::with(RigOptions {
        durability: Durability::Relaxed {
            interval: RELAXED_INTERVAL,
        },
        manifest: true,
        ..RigOptions::default()
    });
    let (a, heard_a) = durable_log(&rig, "a");
    for rev in 1..=3 {
        rig.writer.do_send(append("a", rev, None, &a));
    }
    rig.all_written().await;
    assert_eq!(rig.store.written_ops("a"), [1, 2, 3]);
    assert_eq!(
        rig.store.flushes_started(),
        0,
        "no flush before the interval"
    );
    assert_eq!(rig.manifest.expected_rev("a"), None);

    rig.clock.advance(RELAXED_INTERVAL).await;
    wait_until("the interval's flush is recorded", || {
        rig.manifest.expected_rev("a") == Some(3)
    })
    .await;
    assert_eq!(rig.store.flushes_finished(), 1);
    let _ = a.send(Ping).await;
    assert!(heard(&heard_a).is_empty(), "relaxed mode sends no Durable");
}

/// A no-op message to wait for an actor's mailbox.
#[derive(Message)]
#[rtype(result = "()")]
struct Ping;

impl Handler<Ping> for DurableLog {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

fn snapshot_at(rev: u64) -> DocumentSnapshot {
    DocumentSnapshot {
        rev,
        text: "x".repeat(rev as usize),
        clients: vec![("c1".into(), rev, rev)],
    }
}

/// Invariant (snapshots): a snapshot is written behind the document's earlier ops (write
/// order), is covered by the next flush, and its compaction drops the ops at or before
/// `compact_at` while the document still loads whole.
#[actix::test]
async fn snapshot_is_written_in_order_and_compacts_the_log() {
    let rig = Rig::new();
    let (a, _) = durable_log(&rig, "a");
    for rev in 1..=4 {
        rig.writer.do_send(append("a", rev, None, &a));
    }
    rig.writer.do_send(PutSnapshot {
        doc: Arc::from("a"),
        snapshot: snapshot_at(3).into(),
        compact_at: Some(3),
    });
    rig.writer.send(FlushNow).await.expect("store actor");
    let events = rig.store.events();
    let pos = |e: &StoreEvent| events.iter().position(|x| x == e);
    let snap = pos(&StoreEvent::Snapshot {
        doc: "a".into(),
        rev: 3,
    })
    .expect("snapshot written");
    let last_op = pos(&StoreEvent::Op {
        doc: "a".into(),
        rev: 4,
    })
    .expect("op 4 written");
    assert!(
        last_op < snap,
        "the snapshot follows the ops sent before it"
    );
    let flush = events
        .iter()
        .rposition(|e| matches!(e, StoreEvent::FlushStart(_)))
        .expect("a flush");
    assert!(
        snap < flush,
        "the snapshot is covered by the flush: {events:?}"
    );
    let stored = rig.store.load("a").expect("load");
    assert_eq!(stored.snapshot, Some(snapshot_at(3)));
    assert_eq!(stored.ops.iter().map(|r| r.rev).collect::<Vec<_>>(), [4]);
    let versions = rig.store.versions("a").expect("versions");
    assert_eq!(versions.first_op, Some(4), "ops up to 3 compacted");
    assert_eq!(versions.snapshots, [3]);
}

/// Invariant (disk reserve): below the free-space reserve snapshots are skipped (they only
/// speed up loading) while accepted ops are still written and flushed.
#[actix::test]
async fn snapshot_is_skipped_below_the_disk_reserve_but_ops_are_written() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let full = DiskSpace::new(dir.path(), u64::MAX);
    assert!(!full.writable(), "a reserve of u64::MAX is never met");
    let rig = Rig::with(RigOptions {
        store_disk: full,
        ..RigOptions::default()
    });
    let (a, heard_a) = durable_log(&rig, "a");
    rig.writer.do_send(append("a", 1, None, &a));
    rig.writer.do_send(PutSnapshot {
        doc: Arc::from("a"),
        snapshot: snapshot_at(1).into(),
        compact_at: None,
    });
    rig.writer.send(FlushNow).await.expect("store actor");
    let _ = a.send(Ping).await;
    assert_eq!(rig.store.written_ops("a"), [1]);
    assert!(
        !rig.store
            .events()
            .iter()
            .any(|e| matches!(e, StoreEvent::Snapshot { .. })),
        "no snapshot below the reserve"
    );
    assert_eq!(heard(&heard_a).last().map(|h| h.rev), Some(1));
}

/// Invariant (audit): with audit on, each op's audit record is written right after the op, in
/// the same batch (no flush between them), in op order; it names the op's document, revision,
/// author, subject and the SM3 of the op; the manifest records the chain length the flush
/// covered.
#[actix::test]
async fn op_audit_record_is_written_in_the_same_batch_as_its_op() {
    let rig = Rig::with(RigOptions {
        audit: true,
        manifest: true,
        ..RigOptions::default()
    });
    let (a, _) = durable_log(&rig, "a");
    rig.store.hold();
    rig.writer.do_send(append("a", 1, Some("alice"), &a));
    wait_until("flush 1 starts", || rig.store.flushes_started() == 1).await;
    rig.writer.do_send(append("a", 2, Some("bob"), &a));
    rig.writer.do_send(append("a", 3, None, &a));
    rig.all_written().await;
    rig.store.open();
    rig.writer.send(FlushNow).await.expect("store actor");

    let events = rig.store.events();
    let ops: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, StoreEvent::Op { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(ops.len(), 3);
    for (n, i) in ops.iter().enumerate() {
        assert_eq!(
            events.get(i + 1),
            Some(&StoreEvent::Audit { seq: n as u64 + 1 }),
            "op {} is followed by its audit record: {events:?}",
            n + 1
        );
    }
    let records = rig.store.audit_all().expect("audit records");
    let subjects = [Some("alice"), Some("bob"), None];
    for (rev, (seq, value)) in (1..).zip(&records) {
        let record = audit::decode(value).expect("audit record decodes");
        assert_eq!(record.seq, *seq);
        let op = rmp_serde::to_vec(&op_at(rev)).expect("op encodes");
        assert_eq!(
            record.event,
            AuditEvent::Op {
                doc: "a".into(),
                rev,
                client: "c1".into(),
                seq: rev,
                op_sm3: hex::encode(sm3(&op)),
                subject: subjects[rev as usize - 1].map(String::from),
            }
        );
    }
    assert_eq!(rig.manifest.audit_len(), 3);
    assert_eq!(rig.manifest.expected_rev("a"), Some(3));
}

/// Invariant (write pool): a batch is applied in order, each op's audit record right after it,
/// and the audit chain's writer state comes back with the reply, advanced by what was written.
#[actix::test]
async fn write_pool_applies_a_batch_in_order_and_hands_the_chain_back() {
    let store = GatedStore::new();
    let dyn_store: Arc<dyn Store> = store.clone();
    let pool = WritePool::start(dyn_store.clone(), Manifest::disabled(), None);
    let chain = AuditChain::resume(&*dyn_store).expect("chain");
    let op = |doc: &str, rev: u64| Write::Op {
        doc: Arc::from(doc),
        record: LogRecord {
            rev,
            client: "c1".into(),
            seq: rev,
            op: op_at(rev),
        }
        .into(),
        subject: None,
    };
    let writes = vec![
        op("a", 1),
        op("b", 1),
        Write::Snapshot {
            doc: Arc::from("a"),
            snapshot: snapshot_at(1).into(),
            compact_at: None,
        },
        op("a", 2),
        Write::Audit(AuditEvent::ServerStop),
    ];
    let done = pool
        .send(WriteBatch {
            writes,
            chain: Some(chain),
            flush: None,
        })
        .await
        .expect("write pool runs");
    assert!(done.result.is_ok());
    assert_eq!(done.applied, 5);
    assert_eq!(done.chain.as_ref().map(AuditChain::len), Some(4));
    let ev = |doc: &str, rev| StoreEvent::Op {
        doc: doc.into(),
        rev,
    };
    assert_eq!(
        store.events(),
        [
            ev("a", 1),
            StoreEvent::Audit { seq: 1 },
            ev("b", 1),
            StoreEvent::Audit { seq: 2 },
            StoreEvent::Snapshot {
                doc: "a".into(),
                rev: 1
            },
            ev("a", 2),
            StoreEvent::Audit { seq: 3 },
            StoreEvent::Audit { seq: 4 },
        ]
    );
    assert_eq!(
        store.flushes_started(),
        0,
        "without a flush request the pool writes and never flushes"
    );
    assert!(!done.flushed);

    // With one, the flush follows the batch's writes on the same thread, and the chain's new
    // length is what gets recorded.
    let done = pool
        .send(WriteBatch {
            writes: vec![op("b", 2)],
            chain: done.chain,
            flush: Some(FlushAfter {
                target: 6,
                docs: vec![("b".into(), 2, 6)],
                audit_len: 0,
                anchors: Vec::new(),
                anchor_log: Arc::new(AnchorLog::disabled()),
            }),
        })
        .await
        .expect("write pool runs");
    assert!(done.result.is_ok() && done.flushed);
    let events = store.events();
    let flush_at = events
        .iter()
        .position(|e| *e == StoreEvent::FlushStart(1))
        .expect("the batch flushed");
    let write_at = events
        .iter()
        .position(|e| *e == ev("b", 2))
        .expect("the op was written");
    assert!(write_at < flush_at, "written before the flush: {events:?}");

    // The same function, without the actor and without audit: ops only.
    let plain = GatedStore::new();
    let mut anchors = Vec::new();
    apply_batch(
        &*plain,
        &Manifest::disabled(),
        None,
        None,
        vec![op("c", 1), op("c", 2)],
        &mut anchors,
    )
    .expect("batch applies");
    assert_eq!(plain.events(), [ev("c", 1), ev("c", 2)]);
    assert!(anchors.is_empty());
}

/// Collects the change events the store writer hands to the dispatcher.
pub(super) struct EventsSeen(pub(super) Arc<Mutex<Vec<Arc<crate::events::Event>>>>);

impl Actor for EventsSeen {
    type Context = Context<Self>;
}

impl Handler<crate::dispatcher::EventsDurable> for EventsSeen {
    type Result = ();

    fn handle(&mut self, m: crate::dispatcher::EventsDurable, _: &mut Context<Self>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend(m.0);
    }
}

/// Invariant (cluster fence): a flush after which the store reports a document fenced from
/// revision N tells the document `Durable { fenced: true }`; the audit chain gets a `fenced`
/// record naming N after the ops' own records; change events tell the revisions below N and
/// none from N on (another node's revisions are stored there).
#[actix::test]
async fn a_fenced_document_is_told_audited_and_its_refused_revisions_not_evented() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let collector = EventsSeen(seen.clone()).start();
    let rig = Rig::with(RigOptions {
        audit: true,
        events: Some(collector.recipient()),
        ..RigOptions::default()
    });
    let (a, heard_a) = durable_log(&rig, "a");
    rig.store.fence("a", 2);
    for rev in 1..=3 {
        rig.writer.do_send(append("a", rev, Some("alice"), &a));
    }
    rig.all_written().await;
    rig.writer.send(FlushNow).await.expect("store actor");
    wait_until("the document hears of the fence", || {
        heard(&heard_a).iter().any(|h| h.fenced)
    })
    .await;
    // The audit record of the fence is written by the next flush.
    rig.writer.send(FlushNow).await.expect("store actor");
    let records = rig.store.audit_all().expect("audit records");
    let events: Vec<AuditEvent> = records
        .iter()
        .map(|(_, v)| audit::decode(v).expect("decodes").event)
        .collect();
    let ops = events
        .iter()
        .filter(|e| matches!(e, AuditEvent::Op { .. }))
        .count();
    assert_eq!(ops, 3, "the ops applied are recorded: {events:?}");
    assert_eq!(
        events.last(),
        Some(&AuditEvent::Fenced {
            doc: "a".into(),
            from_rev: 2
        }),
        "{events:?}"
    );
    // Change events (due every EVENT_TICK, written, then told once flushed): revision 1 only.
    for _ in 0..5 {
        rig.clock.advance(crate::store_actor::EVENT_TICK).await;
        rig.writer.send(FlushNow).await.expect("store actor");
    }
    let told: Vec<serde_json::Value> = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|e| serde_json::from_str(&e.json).expect("event JSON"))
        .collect();
    let highest = told
        .iter()
        .filter_map(|e| e["data"]["revs"]["to"].as_u64())
        .max();
    assert_eq!(highest, Some(1), "refused revisions were evented: {told:?}");
}
