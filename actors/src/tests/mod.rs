//! In-process tests of the actors (issue 16, item 4): every actor driven through its messages
//! on one actix system, over a `MemoryStore` whose flushes can be held, with recording actors in
//! place of WebSocket sessions and tokio's clock paused, so timeouts run without sleeping.
//!
//! This file owns the shared harness:
//! - [`TestClock`]: pauses tokio's clock and keeps it from advancing by itself.
//! - [`Peer`] (in [`recorder`]): a session stand-in that decodes and records every frame a
//!   document actor sends it, in order; it can be stalled to play a slow consumer.
//! - [`Rig`]: a store actor and write pool over a [`GatedStore`], a registry, and document
//!   actors built on them; `settle`/`sync` wait for the pipeline by message round trips.
//! - [`wait_until`] / [`wait_for`]: the only waits on other threads, bounded by [`WAIT_LIMIT`].
//!
//! Beside it: [`gated_store`] (the store wrapper), [`recorder`] (the session stand-in),
//! [`document`] (DocActor, per message),
//! [`document_stream`] (DocActor: durability, fan-out, slow consumers, lifecycle),
//! [`document_sim`] (DocActor: a seeded randomized run),
//! [`store_actor`] (StoreActor and the write pool), [`events_owned`] (cluster mode: change
//! events told by the owner, catch-up on taking a document), [`registry`] (the open lifecycle).
//!
//! Determinism: nothing here depends on timing. Waits poll a condition that must become true
//! (never "sleep and hope"); the clock only moves through [`TestClock::advance`].

mod document;
mod document_sim;
mod document_stream;
mod events_owned;
mod gated_store;
mod guard;
mod recorder;
mod registry;
mod store_actor;
mod ydoc;

use std::future::Future;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use coedit_protocol::{ClientId, ErrorCode, Op};

use crate::document::{Applied, DocActor, DocActorConfig, DocDeps, GetText, Submit};
use crate::errors::ActorError;
use crate::events::EventType;
use crate::history::Answer;
use crate::registry::Registry;
use crate::security::anchor::AnchorLog;
use crate::storage::disk::DiskSpace;
use crate::storage::manifest::Manifest;
use crate::storage::{Durability, Store};
use crate::store_actor::{FlushNow, Ledger, Progress, StoreActor};
use crate::write_pool::WritePool;

pub(crate) use gated_store::{GatedStore, StoreEvent};
pub(crate) use recorder::{
    closes, errors, op_revs, ops, presences, Peer, Seen, RECORDER_CAPACITY, RECORDER_MAX_BYTES,
};

/// Longest real time a test waits for another thread (write pool, flush, stalled recorder)
/// before it fails; also bounds how long a held flush or a stalled recorder blocks.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_secs(20);
/// Real time between two looks at a condition another thread makes true.
pub(crate) const POLL_PAUSE: Duration = Duration::from_millis(1);
/// tokio's timer resolution: a timer's deadline is rounded up to the next tick, so a timer due
/// exactly `d` from now may still be pending once the clock moved by `d`.
pub(crate) const TIMER_TICK: Duration = Duration::from_millis(1);

/// tokio's clock, paused for the whole test and advanced only by [`TestClock::advance`].
///
/// A paused clock normally jumps to the next timer whenever the runtime has nothing to do; it
/// would do so while the test waits for the write pool (a thread of its own), so idle and
/// fan-out timers would fire at random points. tokio does not auto-advance while a
/// `spawn_blocking` task runs, so this keeps one running (blocked on a channel) until dropped.
pub(crate) struct TestClock {
    _hold: mpsc::Sender<()>,
}

impl TestClock {
    /// Pauses the clock of the current (actix) runtime; call first in a test.
    pub(crate) fn pause() -> Self {
        tokio::time::pause();
        let (tx, rx) = mpsc::channel::<()>();
        drop(tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        }));
        TestClock { _hold: tx }
    }

    /// Moves the clock forward by `by` (and one timer tick, see [`TIMER_TICK`]), firing every
    /// timer due meanwhile.
    pub(crate) async fn advance(&self, by: Duration) {
        tokio::time::advance(by + TIMER_TICK).await;
        // Let the actors run the timers that just fired.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
}

/// Waits until `cond` holds, letting the actors run meanwhile; fails after [`WAIT_LIMIT`].
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT_LIMIT, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        std::thread::sleep(POLL_PAUSE);
    }
}

/// Waits until the asynchronous probe answers true; fails after [`WAIT_LIMIT`].
pub(crate) async fn wait_for<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !probe().await {
        assert!(start.elapsed() < WAIT_LIMIT, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        std::thread::sleep(POLL_PAUSE);
    }
}

/// Subscribes `peer` to `doc` at `rev`; the join must be accepted.
pub(crate) async fn join(doc: &Addr<DocActor>, peer: &Peer, rev: Option<u64>) {
    doc.send(peer.join(rev))
        .await
        .expect("document actor runs")
        .expect("join accepted");
}

/// Sends a submit and returns the document's answer.
pub(crate) async fn submit(doc: &Addr<DocActor>, m: Submit) -> Result<Applied, ActorError> {
    doc.send(m).await.expect("document actor runs")
}

/// The wire code of a refused submit (`None` if it was applied).
pub(crate) fn refusal(r: &Result<Applied, ActorError>) -> Option<ErrorCode> {
    r.as_ref().err().map(ActorError::code)
}

/// What a [`Rig`] is built with.
pub(crate) struct RigOptions {
    /// Durability of the document actors and the store actor.
    pub(crate) durability: Durability,
    /// Document actor settings (`durability` is overwritten).
    pub(crate) config: DocActorConfig,
    /// The free-space guard document actors consult.
    pub(crate) doc_disk: Arc<DiskSpace>,
    /// The store actor's ledger disk guard.
    pub(crate) store_disk: Arc<DiskSpace>,
    /// Whether the store actor keeps the audit chain.
    pub(crate) audit: bool,
    /// Whether a manifest is written (in a temporary directory).
    pub(crate) manifest: bool,
    /// The store actor's group commit window.
    pub(crate) group_commit: Duration,
    /// Documents the registry loads at once.
    pub(crate) parallel_loads: usize,
    /// Change events: every kind, told to this recipient as they become durable.
    pub(crate) events: Option<Recipient<crate::dispatcher::EventsDurable>>,
    /// Change events as in cluster mode: a document's changes are told while it is owned.
    pub(crate) shared_events: bool,
}

impl Default for RigOptions {
    fn default() -> Self {
        RigOptions {
            durability: Durability::Strict,
            config: test_config(),
            doc_disk: DiskSpace::unlimited(),
            store_disk: DiskSpace::unlimited(),
            audit: false,
            manifest: false,
            group_commit: Duration::ZERO,
            parallel_loads: crate::registry::DEFAULT_PARALLEL_LOADS,
            events: None,
            shared_events: false,
        }
    }
}

/// Timeout of the timers a test does not exercise: the clock never gets there.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(24 * 3600);

/// Document actor settings for tests: fan-out at once (a zero tick never depends on the real
/// clock), idle unload and timed snapshots out of reach (tests that exercise them set them),
/// everything else as in production.
pub(crate) fn test_config() -> DocActorConfig {
    DocActorConfig {
        fanout_tick: Duration::ZERO,
        idle_timeout: FAR_FUTURE,
        snapshot_interval: FAR_FUTURE,
        ..DocActorConfig::default()
    }
}

/// The actors a document needs, over a [`GatedStore`], on the test's actix system.
pub(crate) struct Rig {
    pub(crate) clock: TestClock,
    pub(crate) store: Arc<GatedStore>,
    pub(crate) writer: Addr<StoreActor>,
    pub(crate) registry: Addr<Registry>,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) config: DocActorConfig,
    doc_disk: Arc<DiskSpace>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A strict rig with the test settings.
    pub(crate) fn new() -> Rig {
        Self::with(RigOptions::default())
    }

    /// A rig built with `opts`. Pauses the clock: call it first in a test.
    pub(crate) fn with(opts: RigOptions) -> Rig {
        let clock = TestClock::pause();
        let store = GatedStore::new();
        let dir = tempfile::tempdir().expect("temporary directory");
        let manifest = if opts.manifest {
            Manifest::create(dir.path(), &*store).expect("manifest")
        } else {
            Manifest::disabled()
        };
        store.reset();
        let dyn_store: Arc<dyn Store> = store.clone();
        let pool = WritePool::start(dyn_store.clone(), manifest.clone(), None);
        let ledger = Ledger {
            manifest: manifest.clone(),
            anchors: Arc::new(AnchorLog::disabled()),
            disk: opts.store_disk,
            close_all: None,
        };
        let mut writer = StoreActor::new(
            dyn_store.clone(),
            opts.durability,
            pool,
            opts.audit,
            None,
            ledger,
            0,
        )
        .expect("store actor")
        .with_group_commit(opts.group_commit);
        if let Some(dispatcher) = opts.events {
            writer = writer.with_events(crate::store_actor::EventsSetup {
                changed_interval: Duration::ZERO,
                wanted: [EventType::Created, EventType::Changed]
                    .into_iter()
                    .collect(),
                state: crate::events::outbox::OutboxState {
                    prefix: "test".into(),
                    last_seq: 0,
                },
                dispatcher,
                shared: opts.shared_events,
            });
        }
        let writer = writer.start();
        let config = DocActorConfig {
            durability: opts.durability,
            ..opts.config
        };
        let registry = Registry::new(config.clone(), dyn_store, writer.clone(), Vec::new())
            .with_ledger(manifest.clone(), opts.doc_disk.clone())
            .with_parallel_loads(opts.parallel_loads)
            .start();
        Rig {
            clock,
            store,
            writer,
            registry,
            manifest,
            config,
            doc_disk: opts.doc_disk,
            _dir: dir,
        }
    }

    /// Loads document `id` from the store and starts its actor (not through the registry).
    pub(crate) fn open(&self, id: &str) -> Addr<DocActor> {
        let deps = DocDeps {
            store: self.store.clone(),
            writer: self.writer.clone(),
            registry: self.registry.clone(),
            manifest: self.manifest.clone(),
            disk: self.doc_disk.clone(),
        };
        DocActor::load(Arc::from(id), Arc::from(id), self.config.clone(), deps)
            .expect("document loads")
            .start()
    }

    /// Waits until the document actor handled every message sent to it before this call.
    pub(crate) async fn sync(&self, doc: &Addr<DocActor>) {
        let _ = doc.send(GetText { rev: None }).await;
    }

    /// Waits until everything the store actor received is flushed and the document actor
    /// handled the resulting `Durable` (and so sent what it made visible). The store's flushes
    /// must not be held.
    pub(crate) async fn settle(&self, doc: &Addr<DocActor>) {
        self.sync(doc).await;
        self.writer.send(FlushNow).await.expect("store actor runs");
        self.sync(doc).await;
    }

    /// Waits until the store actor has done with every write it received what it can: applied
    /// it to the store (maybe not flushed), or, while a flush is blocked at the gate, holds it
    /// for the batch after that flush.
    pub(crate) async fn all_written(&self) {
        let (writer, store) = (self.writer.clone(), self.store.clone());
        wait_for("every received write applied", || {
            let (writer, store) = (writer.clone(), store.clone());
            async move {
                let (received, written, _, flushing) =
                    writer.send(Progress).await.expect("store actor runs");
                written == received || (flushing && store.blocked())
            }
        })
        .await;
    }

    /// Waits until the store actor is at rest: every write received is applied and flushed,
    /// or everything waits for a flush blocked at the gate.
    pub(crate) async fn quiet(&self) {
        let (writer, store) = (self.writer.clone(), self.store.clone());
        wait_for("the store actor at rest", || {
            let (writer, store) = (writer.clone(), store.clone());
            async move {
                let (received, written, flushed, flushing) =
                    writer.send(Progress).await.expect("store actor runs");
                (written == received && flushed == written) || (flushing && store.blocked())
            }
        })
        .await;
    }

    /// The document's latest durable revision and its text, as reads see them.
    pub(crate) async fn text(&self, doc: &Addr<DocActor>) -> (u64, String) {
        match doc.send(GetText { rev: None }).await {
            Ok(Ok(Answer::Ready(t))) => (t.rev, t.text),
            Ok(Ok(Answer::FromStore(_))) => panic!("the latest text is served from memory"),
            Ok(Err(e)) => panic!("GetText refused: {e}"),
            Err(e) => panic!("document actor gone: {e}"),
        }
    }

    /// Submits ops `1..=n` from a writer client `w` that each append `piece` at the end, one
    /// after another, each settled.
    pub(crate) async fn fill(&self, doc: &Addr<DocActor>, n: u64, piece: &str) {
        let w = ClientId::from("w");
        for seq in 1..=n {
            let (rev, text) = self.text(doc).await;
            let len = text.chars().count();
            let op = Op::insert_at(len, piece);
            let submit = Submit {
                session: None,
                client: w.clone(),
                seq,
                base_rev: rev,
                reach: op.base_len(),
                op,
                t: None,
                subject: None,
            };
            // A REST submit answers once durable.
            doc.send(submit)
                .await
                .expect("document actor runs")
                .expect("fill op applies");
        }
        self.settle(doc).await;
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Never leave a flush blocked behind a failed assertion.
        self.store.open();
    }
}
