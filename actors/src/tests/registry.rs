//! In-process tests of the registry's open lifecycle: one load per document however many ask
//! at once, reads never create, and a request that arrives while a document unloads waits for
//! the unload (no sleeping retries) and gets the document as saved.

use std::time::Duration;

use coedit_protocol::Op;

use super::{join, submit, test_config, wait_until, Peer, Rig, RigOptions};
use crate::document::{DocActor, DocActorConfig, Join, Leave};
use crate::errors::ActorError;
use crate::registry::{call_doc, KindActor, OpenCount, OpenDoc};

/// Idle timeout of the unload test.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests for one document sent at once.
const AT_ONCE: usize = 20;

fn open(id: &str, create: bool) -> OpenDoc {
    OpenDoc {
        kind: coedit_protocol::DocKind::Text,
        id: id.into(),
        name: id.into(),
        create,
    }
}

/// Invariant: requests for a document that arrive while it loads wait in its slot and all get
/// the one actor; there is never a second actor for a document.
#[actix::test]
async fn concurrent_opens_of_one_document_share_one_actor() {
    let rig = Rig::new();
    let asks: Vec<_> = (0..AT_ONCE)
        .map(|_| rig.registry.send(open("e", true)))
        .collect();
    let mut addrs = Vec::new();
    for a in asks {
        addrs.push(a.await.expect("registry runs").expect("opens"));
    }
    assert!(addrs.windows(2).all(|w| w[0] == w[1]), "one actor for all");
    assert_eq!(rig.registry.send(OpenCount).await.expect("registry"), 1);
}

/// Lets held loads go when dropped.
struct ReleaseLoads(std::sync::Arc<super::GatedStore>);

impl Drop for ReleaseLoads {
    fn drop(&mut self) {
        self.0.release_loads();
    }
}

/// Invariant (bounded loads): with many documents opening at once, at most `parallel_loads`
/// load at a time; the others wait their turn and all open.
#[actix::test]
async fn many_documents_opening_at_once_load_at_most_the_bound_at_a_time() {
    const BOUND: usize = 2;
    const DOCS: usize = 6;
    let rig = Rig::with(RigOptions {
        parallel_loads: BOUND,
        ..RigOptions::default()
    });
    rig.store.hold_loads();
    // Released however the test ends: a held load would keep the runtime from stopping.
    let _release = ReleaseLoads(rig.store.clone());
    let asks: Vec<_> = (0..DOCS)
        .map(|i| rig.registry.send(open(&format!("d{i}"), true)))
        .collect();
    wait_until("the bound reached", || rig.store.loads().0 >= BOUND).await;
    let open_while_held = rig.registry.send(OpenCount).await.expect("registry");
    let held = rig.store.loads();
    rig.store.release_loads();
    assert_eq!(held.0, BOUND, "loads running while held");
    assert_eq!(open_while_held, 0);
    for a in asks {
        a.await.expect("registry runs").expect("opens");
    }
    assert_eq!(
        rig.store.loads(),
        (0, BOUND),
        "never more than the bound at once"
    );
    assert_eq!(rig.registry.send(OpenCount).await.expect("registry"), DOCS);
}

/// Invariant: a read (no create) of a document with nothing stored is refused with
/// `NoSuchDocument` and leaves nothing open; a create opens it.
#[actix::test]
async fn a_read_never_creates_a_document() {
    let rig = Rig::new();
    let res = rig
        .registry
        .send(open("missing", false))
        .await
        .expect("registry");
    assert!(
        matches!(res, Err(ActorError::NoSuchDocument(ref n)) if n == "missing"),
        "{res:?}"
    );
    assert_eq!(rig.registry.send(OpenCount).await.expect("registry"), 0);
    rig.registry
        .send(open("missing", true))
        .await
        .expect("registry")
        .expect("an editor creates it");
    assert_eq!(rig.registry.send(OpenCount).await.expect("registry"), 1);
}

/// Invariant: a join that arrives while the document's actor is unloading (its save held)
/// neither fails nor reaches the closing actor: it waits for `DocClosed`, then gets a new actor
/// loaded from what the old one saved.
#[actix::test]
async fn a_join_during_an_unload_waits_for_it_and_gets_the_saved_document() {
    let rig = Rig::with(RigOptions {
        config: DocActorConfig {
            idle_timeout: IDLE_TIMEOUT,
            ..test_config()
        },
        ..RigOptions::default()
    });
    let old = rig
        .registry
        .send(open("d", true))
        .await
        .expect("registry")
        .expect("opens");
    let old = DocActor::addr_of(old).expect("a text document");
    let a = Peer::new(1, "alice");
    join(&old, &a, None).await;
    for seq in 1..=2 {
        submit(&old, a.submit(seq, seq - 1, Op::insert_at(0, "i")))
            .await
            .expect("applied");
    }
    rig.settle(&old).await;
    old.send(Leave { session: a.session }).await.expect("actor");
    // The unload's save blocks at the store's flush.
    rig.store.hold();
    rig.clock.advance(IDLE_TIMEOUT).await;
    wait_until("the unload's flush to block", || rig.store.blocked()).await;

    let b = Peer::new(2, "bob");
    let join_b = {
        let (registry, join) = (rig.registry.clone(), b.join(None));
        let make = move || Join {
            session: join.session,
            client: join.client.clone(),
            rev: join.rev,
            format: join.format,
            out: join.out.clone(),
            access: join.access.clone(),
            user: join.user.clone(),
        };
        actix::spawn(
            async move { call_doc::<DocActor, _, _>(&registry, open("d", true), make).await },
        )
    };
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!join_b.is_finished(), "the join waits for the unload");
    rig.store.open();
    let (new, ()) = join_b
        .await
        .expect("task")
        .expect("the join succeeds after the unload");
    let crate::registry::DocLink::Local(new) = new else {
        panic!("no cluster: the document is local");
    };
    assert!(new != old, "a new actor, loaded after the old one saved");
    wait_until("the old actor stops", || !old.connected()).await;
    assert_eq!(rig.text(&new).await, (2, "ii".to_string()));
    assert_eq!(rig.registry.send(OpenCount).await.expect("registry"), 1);
}
