//! Cluster mode's change events in the store writer (`store_actor/owned.rs`), in process: a
//! node tells the changes of the documents it owns; on taking a document it tells, as
//! `recovered`, what an earlier owner stored and did not tell; a stale lease holds changes; a
//! step-down drops them for the next owner; an unload writes them before answering.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use coedit_protocol::DocKind;

use super::store_actor::{append, durable_log, EventsSeen};
use super::{wait_until, Rig, RigOptions};
use crate::cluster::owner::LeaseClock;
use crate::events::outbox;
use crate::store_actor::{EventsDisown, EventsOwn, FlushNow, EVENT_TICK};

/// `(type, from, to, recovered)` of every change event told so far, in order.
fn told(seen: &Arc<Mutex<Vec<Arc<crate::events::Event>>>>) -> Vec<(String, u64, u64, bool)> {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.json).expect("event JSON");
            (
                v["type"].as_str().unwrap_or_default().to_string(),
                v["data"]["revs"]["from"].as_u64().unwrap_or(0),
                v["data"]["revs"]["to"].as_u64().unwrap_or(0),
                v["data"]["recovered"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Lets due changes be written and flushed (the clock moves only here).
async fn ticks(rig: &Rig, n: usize) {
    for _ in 0..n {
        rig.clock.advance(EVENT_TICK).await;
        rig.writer.send(FlushNow).await.expect("store actor");
    }
}

fn fresh() -> Arc<LeaseClock> {
    Arc::new(LeaseClock::new(Duration::from_secs(3600)))
}

fn own(doc: &str, rev: u64, clock: &Arc<LeaseClock>) -> EventsOwn {
    EventsOwn {
        doc: Arc::from(doc),
        kind: DocKind::Text,
        rev,
        clock: clock.clone(),
    }
}

/// Invariants (cluster mode): revisions stored while no actor of this node owns the document
/// are not told by it; taking the document tells the untold ones (from the cluster's cursor to
/// the revision loaded) as `recovered`, once, before the owner's own changes, which keep their
/// authors; a stale lease holds the owner's change; a step-down drops it and the next taking
/// tells those revisions; an unload writes its change before it is answered, and the cursor
/// ends at the last revision told. No revision is told twice, none is left out.
#[actix::test]
async fn the_owner_tells_and_a_new_owner_tells_what_was_left() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let collector = EventsSeen(seen.clone()).start();
    let rig = Rig::with(RigOptions {
        events: Some(collector.recipient()),
        shared_events: true,
        ..RigOptions::default()
    });
    let (a, _) = durable_log(&rig, "a");
    // Revisions 1..=3 stored by an owner that was killed before telling them.
    for rev in 1..=3 {
        rig.writer.do_send(append("a", rev, Some("alice"), &a));
    }
    ticks(&rig, 3).await;
    assert!(told(&seen).is_empty(), "not owned: {:?}", told(&seen));

    // This node takes the document, loaded at revision 3.
    let first = fresh();
    rig.writer.do_send(own("a", 3, &first));
    wait_until("the catch-up is told", || told(&seen).len() == 2).await;
    for rev in 4..=5 {
        rig.writer.do_send(append("a", rev, Some("bob"), &a));
    }
    ticks(&rig, 3).await;
    let expected = vec![
        ("document.created".to_string(), 1, 1, true),
        ("document.changed".to_string(), 1, 3, true),
        ("document.changed".to_string(), 4, 5, false),
    ];
    assert_eq!(told(&seen), expected);

    // Its lease goes stale (a pause): revision 6 is held, then it steps down: dropped.
    let stale = Arc::new(LeaseClock::new(Duration::ZERO));
    rig.writer.do_send(EventsDisown {
        doc: Arc::from("a"),
        tell: true,
    });
    rig.writer.do_send(own("a", 5, &stale));
    rig.writer.do_send(append("a", 6, Some("bob"), &a));
    ticks(&rig, 5).await;
    assert_eq!(told(&seen), expected, "a stale lease holds the change");
    rig.writer
        .send(EventsDisown {
            doc: Arc::from("a"),
            tell: false,
        })
        .await
        .expect("store actor");
    ticks(&rig, 3).await;
    assert_eq!(told(&seen), expected, "a step-down drops the change");

    // Taken again (loaded at 6): 6 is told as recovered; then 7 by the owner, written by the
    // unload before its answer.
    rig.writer.do_send(own("a", 6, &fresh()));
    wait_until("the second catch-up is told", || told(&seen).len() == 4).await;
    rig.writer.do_send(append("a", 7, Some("carol"), &a));
    rig.writer.send(FlushNow).await.expect("store actor");
    rig.writer
        .send(EventsDisown {
            doc: Arc::from("a"),
            tell: true,
        })
        .await
        .expect("store actor");
    wait_until("the unload's change is told", || told(&seen).len() == 5).await;
    assert_eq!(
        told(&seen)[3..],
        [
            ("document.changed".to_string(), 6, 6, true),
            ("document.changed".to_string(), 7, 7, false),
        ]
    );
    assert_eq!(
        outbox::cursor_of(&*rig.store, "a").expect("cursor"),
        Some(7)
    );
    // Not owned any more: a revision stored now is the next owner's.
    rig.writer.do_send(append("a", 8, Some("carol"), &a));
    ticks(&rig, 3).await;
    assert_eq!(told(&seen).len(), 5);
}
