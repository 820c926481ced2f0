//! The JetStream behaviour cluster mode is designed on (`docs/CLUSTER.md`), checked against a
//! real `nats-server -js` on 127.0.0.1 before anything is built on it:
//!
//! - the conditional append (`Nats-Expected-Last-Subject-Sequence`) fences a stale owner: two
//!   would-be owners that read the same last sequence cannot both append after it, per
//!   document subject, and other documents' appends in between do not disturb it;
//! - an empty subject is expected as sequence 0 (the first record of a new document);
//! - a retried append (same message id, same expected sequence) after its first try was
//!   stored is answered as a duplicate or refused as not-last, and in the latter case the
//!   subject's last message carries the retried id (how an owner tells "my ack was lost");
//! - the lease bucket's compare-and-set: `create` once, `update` only with the revision read,
//!   `delete` with the revision read; the revision is the epoch.
//!
//! Without a nats-server binary the test says so and passes, unless `COEDIT_REQUIRE_NATS=1`.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use common::nats::{free_port, nats_binary_or_skip, start_nats};

/// Appends `payload` to `subject` expecting `last` as the subject's last sequence, with `id`
/// as the message id. `Ok(seq)` or the publish error's kind.
async fn append(
    js: &jetstream::Context,
    subject: &str,
    last: u64,
    id: &str,
    payload: &'static str,
) -> Result<Result<(u64, bool), PublishErrorKind>> {
    let mut h = HeaderMap::new();
    h.insert(
        "Nats-Expected-Last-Subject-Sequence",
        last.to_string().as_str(),
    );
    h.insert("Nats-Msg-Id", id);
    let sent = js
        .publish_with_headers(subject.to_string(), h, payload.into())
        .await;
    let ack = match sent {
        Ok(f) => f.await,
        Err(e) => Err(e),
    };
    Ok(match ack {
        Ok(a) => Ok((a.sequence, a.duplicate)),
        Err(e) => Err(e.kind()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_fences_stale_appends_and_leases_compare_and_set() -> Result<()> {
    let Some(bin) = nats_binary_or_skip()? else {
        return Ok(());
    };
    let nats = start_nats(&bin, free_port())?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "COEDIT_OPS_0".into(),
        subjects: vec!["coedit.ops.0.>".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let (a, b) = ("coedit.ops.0._.notes", "coedit.ops.0._.other");

    // A new document: its first record expects sequence 0; a second "first" is refused.
    let first = append(&js, a, 0, "notes:1:1", "r1").await?;
    let (s1, dup) = first.expect("the first record of a new document");
    assert!(!dup);
    assert_eq!(
        append(&js, a, 0, "notes:1:2", "r1'").await?,
        Err(PublishErrorKind::WrongLastSequence)
    );
    // Another document's appends do not move this one's last sequence.
    let (o1, _) = append(&js, b, 0, "other:1:1", "o1")
        .await?
        .expect("other doc");
    assert!(o1 > s1);
    // Two owners read s1: the first to append wins, the other is fenced.
    let (s2, _) = append(&js, a, s1, "notes:2:1", "r2 by A")
        .await?
        .expect("owner A appends after s1");
    assert_eq!(
        append(&js, a, s1, "notes:2:2", "r2 by B").await?,
        Err(PublishErrorKind::WrongLastSequence),
        "a stale owner must be refused by the stream itself"
    );
    // The fenced owner re-reads the last sequence and appends after it.
    let mut stream = js.get_stream("COEDIT_OPS_0").await?;
    let last = stream.get_last_raw_message_by_subject(a).await?;
    assert_eq!(last.sequence, s2);
    let (s3, _) = append(&js, a, s2, "notes:3:2", "r3 by B")
        .await?
        .expect("after re-reading");
    assert!(s3 > s2);

    // A retry of an append that was stored (its ack lost): same id, same expected sequence.
    let retried = append(&js, a, s2, "notes:3:2", "r3 by B").await?;
    match retried {
        Ok((seq, true)) => assert_eq!(seq, s3, "a duplicate is answered with the original"),
        Err(PublishErrorKind::WrongLastSequence) => {
            let last = stream.get_last_raw_message_by_subject(a).await?;
            let id = last
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_string());
            assert_eq!(id.as_deref(), Some("notes:3:2"));
        }
        other => panic!("a retried append: {other:?}"),
    }
    println!("retried append answered: {retried:?}");
    let info = stream.info().await?;
    assert_eq!(
        info.state.messages, 4,
        "r1, o1, r2 by A, r3 by B: nothing else stored"
    );

    // Leases: create once; update only with the revision read; the revision is the epoch.
    let kv = js
        .create_key_value(jetstream::kv::Config {
            bucket: "COEDIT_LEASES".into(),
            history: 1,
            ..Default::default()
        })
        .await?;
    let e1 = kv.create("_.notes", "node-a".into()).await?;
    let again = kv.create("_.notes", "node-b".into()).await;
    assert_eq!(
        again.map_err(|e| e.kind()).err(),
        Some(CreateErrorKind::AlreadyExists)
    );
    let e2 = kv.update("_.notes", "node-a".into(), e1).await?;
    ensure!(e2 > e1, "a renewal moves the revision");
    // node-b read e1 before the renewal: its takeover is refused.
    let stale = kv.update("_.notes", "node-b".into(), e1).await;
    assert_eq!(
        stale.map_err(|e| e.kind()).err(),
        Some(UpdateErrorKind::WrongLastRevision)
    );
    // With the current revision it takes over; node-a's next renewal is refused.
    let e3 = kv.update("_.notes", "node-b".into(), e2).await?;
    let renew = kv.update("_.notes", "node-a".into(), e2).await;
    assert_eq!(
        renew.map_err(|e| e.kind()).err(),
        Some(UpdateErrorKind::WrongLastRevision)
    );
    let entry = kv.entry("_.notes").await?.expect("lease");
    assert_eq!((entry.revision, &entry.value[..]), (e3, &b"node-b"[..]));
    // Release with the revision read: only the holder's view deletes it.
    assert!(kv
        .delete_expect_revision("_.notes", Some(e2))
        .await
        .is_err());
    kv.delete_expect_revision("_.notes", Some(e3)).await?;
    let e4 = kv.create("_.notes", "node-c".into()).await?;
    assert!(e4 > e3, "epochs only grow");
    Ok(())
}
