//! A seeded randomized test of the `DocActor` over the real store actor: several sessions
//! submit ops against whatever revision they last saw and set carets, while the test holds,
//! lets through and opens the store's flushes at random. Seeded: the seed is printed and
//! `SEED=n` replays it; `ACTOR_SIM_CASES` sets the number of documents simulated.

use coedit_protocol::{Op, ServerMsg};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{join, submit, GatedStore, Peer, Rig, StoreEvent};
use crate::document::{DocActor, Submit};

/// Documents simulated per run unless `ACTOR_SIM_CASES` says otherwise.
const DEFAULT_CASES: usize = 12;
/// Random steps per document.
const STEPS: usize = 80;
/// Sessions per document (the last one speaks JSON).
const SESSIONS: u64 = 3;

/// One simulated session: what it saw of the document so far.
struct SimPeer {
    peer: Peer,
    seq: u64,
    rev: u64,
    text: String,
    /// Frames already folded into `rev`/`text`.
    read: usize,
}

impl SimPeer {
    /// Folds the frames received since the last look into the session's view, checking
    /// that they come in revision order without gaps (an op already seen may come again only
    /// right after a join) and that nothing was refused.
    async fn refresh(&mut self) {
        let seen = self.peer.frames().await;
        for s in &seen[self.read..] {
            match s.msg() {
                Some(ServerMsg::Snapshot { rev, text, .. }) => {
                    self.rev = *rev;
                    self.text = text.clone();
                }
                Some(ServerMsg::Ops { ops, .. }) => {
                    for o in ops {
                        if o.rev <= self.rev {
                            continue;
                        }
                        assert_eq!(
                            o.rev,
                            self.rev + 1,
                            "gap in the stream of {}",
                            self.peer.client
                        );
                        self.text = o.op.apply_str(&self.text).expect("streamed op applies");
                        self.rev = o.rev;
                    }
                }
                Some(ServerMsg::Error { code, msg, .. }) => {
                    panic!("{} was refused: {code:?} {msg}", self.peer.client)
                }
                Some(_) => {}
                None => panic!("{} was closed", self.peer.client),
            }
        }
        self.read = seen.len();
    }

    /// A random op on the session's view (an insert, or a delete when there is text).
    fn random_op(&self, rng: &mut SmallRng) -> Op {
        let len = self.text.chars().count();
        if len > 0 && rng.random_bool(0.4) {
            let pos = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - pos).min(3));
            Op::delete_at(pos, n)
        } else {
            let piece: String = (0..rng.random_range(1..=3))
                .map(|_| char::from(b'a' + rng.random_range(0..3u8)))
                .collect();
            Op::insert_at(rng.random_range(0..=len), &piece)
        }
    }
}

/// The highest revision of `doc` a completed flush covers (written before it started).
fn durable_max(store: &GatedStore, doc: &str) -> u64 {
    let events = store.events();
    let last_done = events
        .iter()
        .filter_map(|e| match e {
            StoreEvent::FlushEnd(n) => Some(*n),
            _ => None,
        })
        .max();
    let Some(cut) =
        last_done.and_then(|n| events.iter().position(|e| *e == StoreEvent::FlushStart(n)))
    else {
        return 0;
    };
    events[..cut]
        .iter()
        .filter_map(|e| match e {
            StoreEvent::Op { doc: d, rev } if d == doc => Some(*rev),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Runs one document through `STEPS` random steps; checks as it goes that no session ever saw
/// a revision no completed flush covered, and at the end that every session saw every
/// revision once, in order, and holds the server's text.
async fn simulate(rig: &Rig, doc_id: &str, first_session: u64, rng: &mut SmallRng) {
    let doc = rig.open(doc_id);
    let mut peers = Vec::new();
    for i in 0..SESSIONS {
        let client = format!("c{i}");
        let peer = if i + 1 == SESSIONS {
            Peer::json(first_session + i, &client)
        } else {
            Peer::new(first_session + i, &client)
        };
        join(&doc, &peer, None).await;
        peers.push(SimPeer {
            peer,
            seq: 0,
            rev: 0,
            text: String::new(),
            read: 0,
        });
    }
    for _ in 0..STEPS {
        let p = rng.random_range(0..peers.len());
        match rng.random_range(0..100) {
            0..50 => submit_random(&doc, &mut peers[p], rng).await,
            50..65 => {
                let sp = &mut peers[p];
                sp.refresh().await;
                let len = sp.text.chars().count() as u64;
                let (a, h) = (rng.random_range(0..=len), rng.random_range(0..=len));
                doc.send(sp.peer.presence(sp.rev, &[(a, h)]))
                    .await
                    .expect("actor");
            }
            65..75 => rig.store.hold(),
            75..85 => rig.store.allow(1),
            85..95 => rig.store.open(),
            _ => {}
        }
        // At rest after every step, so a seed replays the same run.
        rig.quiet().await;
        rig.sync(&doc).await;
        for sp in &mut peers {
            sp.refresh().await;
            let durable = durable_max(&rig.store, doc_id);
            assert!(
                sp.rev <= durable,
                "{} saw revision {} before it was durable ({durable})",
                sp.peer.client,
                sp.rev
            );
        }
    }
    rig.store.open();
    rig.settle(&doc).await;
    let (rev, text) = rig.text(&doc).await;
    println!(
        "{doc_id}: revision {rev}, {} flushes so far",
        rig.store.flushes_finished()
    );
    let written = rig.store.written_ops(doc_id);
    assert!(
        written.iter().copied().eq(1..=rev),
        "store holds 1..={rev}: {written:?}"
    );
    for sp in &mut peers {
        sp.refresh().await;
        assert_eq!(
            (sp.rev, &sp.text),
            (rev, &text),
            "{} converged",
            sp.peer.client
        );
    }
}

/// Submits a random op from `sp` against the revision it last saw; it must be applied.
async fn submit_random(doc: &actix::Addr<DocActor>, sp: &mut SimPeer, rng: &mut SmallRng) {
    sp.refresh().await;
    sp.seq += 1;
    let op = sp.random_op(rng);
    let m: Submit = sp.peer.submit(sp.seq, sp.rev, op);
    submit(doc, m).await.expect("a valid op is applied");
}

/// Invariant (randomized): whatever the interleaving of submits, carets and flushes, no
/// session is shown a revision before a completed flush covers it, every session receives
/// every revision exactly once in order (in its own encoding), nothing is refused, and all
/// sessions end with the server's text, which the store holds op for op.
#[actix::test]
async fn random_sessions_and_flushes_converge_and_never_show_undurable_ops() {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let cases = std::env::var("ACTOR_SIM_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    println!("document simulation: SEED={seed} ACTOR_SIM_CASES={cases}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let rig = Rig::new();
    for case in 0..cases {
        let first_session = case as u64 * SESSIONS + 1;
        simulate(&rig, &format!("sim-{case}"), first_session, &mut rng).await;
    }
}
