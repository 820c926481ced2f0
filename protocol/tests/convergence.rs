//! Client state machines against a `Document`, over simulated lossy connections: 2–5 clients
//! edit at random, messages are delivered in random interleavings, clients drop their
//! connection (losing everything in flight both ways), rejoin by revision and resend. At
//! quiescence every replica equals the server's text and every client is synchronized; no op is
//! applied twice.
//!
//! Seeded: the seed is printed; `SEED=n` replays it. `PROPTEST_CASES` overrides the case count.

mod common;

use std::collections::VecDeque;

use coedit_protocol::{
    op::char_len, ClientId, Document, DocumentConfig, Op, OtClient, Outgoing, ServerOpOutcome,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const DEFAULT_CASES: u32 = 2_000;
const MAX_CLIENTS: usize = 5;

#[derive(Clone, Debug)]
enum Action {
    /// Client edits its replica: insert `text` or delete up to `len` characters at `pos`.
    Edit {
        client: usize,
        insert: bool,
        pos: usize,
        len: usize,
        text: String,
    },
    /// The server handles the oldest message from the client.
    Upload(usize),
    /// The client handles the oldest message from the server.
    Download(usize),
    /// The connection drops (both queues lost); the client rejoins and resends.
    Reconnect(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let c = 0..MAX_CLIENTS;
    prop_oneof![
        3 => (c.clone(), any::<bool>(), 0usize..64, 1usize..4, "[ab😅中]{1,3}").prop_map(
            |(client, insert, pos, len, text)| Action::Edit { client, insert, pos, len, text }
        ),
        3 => c.clone().prop_map(Action::Upload),
        3 => c.clone().prop_map(Action::Download),
        1 => c.prop_map(Action::Reconnect),
    ]
}

enum Down {
    Ack {
        seq: u64,
        rev: u64,
    },
    Op {
        rev: u64,
        author: ClientId,
        seq: u64,
        op: Op,
    },
}

struct Sim {
    server: Document,
    clients: Vec<(OtClient, String)>,
    up: Vec<VecDeque<Outgoing>>,
    down: Vec<VecDeque<Down>>,
    ids: Vec<ClientId>,
    applied: usize,
}

impl Sim {
    fn new(n: usize) -> Self {
        let ids: Vec<ClientId> = (0..n).map(|i| ClientId::from(format!("c{i}"))).collect();
        Sim {
            server: Document::new(DocumentConfig::default()),
            clients: ids
                .iter()
                .map(|id| (OtClient::new(&**id, 0), String::new()))
                .collect(),
            up: (0..n).map(|_| VecDeque::new()).collect(),
            down: (0..n).map(|_| VecDeque::new()).collect(),
            ids,
            applied: 0,
        }
    }

    fn step(&mut self, a: &Action) -> Result<(), TestCaseError> {
        let n = self.clients.len();
        match a {
            Action::Edit {
                client,
                insert,
                pos,
                len,
                text,
            } => {
                let c = client % n;
                let (cl, replica) = &mut self.clients[c];
                let size = char_len(replica);
                let op = if *insert {
                    Op::insert_at(pos % (size + 1), text)
                } else if size == 0 {
                    return Ok(());
                } else {
                    let p = pos % size;
                    Op::delete_at(p, (*len).min(size - p))
                };
                *replica = op.apply_str(replica).unwrap();
                if let Some(out) = cl.local(op) {
                    self.up[c].push_back(out);
                }
            }
            Action::Upload(c) => {
                let c = c % n;
                if let Some(out) = self.up[c].pop_front() {
                    let r = self
                        .server
                        .submit(&self.ids[c], out.seq, out.base_rev, out.op)
                        .map_err(|e| TestCaseError::fail(format!("server refused: {e}")))?;
                    let (rev, dup, op) = (r.rev, r.duplicate, r.op.cloned());
                    self.down[c].push_back(Down::Ack { seq: out.seq, rev });
                    if !dup {
                        self.applied += 1;
                        for (o, q) in self.down.iter_mut().enumerate() {
                            if o != c {
                                q.push_back(Down::Op {
                                    rev,
                                    author: self.ids[c].clone(),
                                    seq: out.seq,
                                    op: op.clone().unwrap(),
                                });
                            }
                        }
                    }
                }
            }
            Action::Download(c) => self.download(c % n)?,
            Action::Reconnect(c) => {
                let c = c % n;
                self.up[c].clear();
                self.down[c].clear();
                let rev = self.clients[c].0.rev();
                let catch_up: Vec<Down> = self
                    .server
                    .ops_since(rev)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .map(|(rev, e)| Down::Op {
                        rev,
                        author: e.client.clone(),
                        seq: e.seq,
                        op: e.op.clone(),
                    })
                    .collect();
                self.down[c].extend(catch_up);
                if let Some(out) = self.clients[c].0.resend() {
                    self.up[c].push_back(out);
                }
            }
        }
        Ok(())
    }

    fn download(&mut self, c: usize) -> Result<(), TestCaseError> {
        let Some(msg) = self.down[c].pop_front() else {
            return Ok(());
        };
        let (cl, replica) = &mut self.clients[c];
        let next = match msg {
            Down::Ack { seq, rev } => cl
                .on_ack(seq, rev)
                .map_err(|e| TestCaseError::fail(format!("client {c}: {e}")))?,
            Down::Op {
                rev,
                author,
                seq,
                op,
            } => {
                match cl
                    .on_server_op(rev, &author, seq, &op)
                    .map_err(|e| TestCaseError::fail(format!("client {c}: {e}")))?
                {
                    ServerOpOutcome::Apply(op) => {
                        *replica = op
                            .apply_str(replica)
                            .map_err(|e| TestCaseError::fail(format!("client {c}: {e}")))?;
                        None
                    }
                    ServerOpOutcome::OwnAck(next) => next,
                    ServerOpOutcome::Stale => None,
                }
            }
        };
        if let Some(out) = next {
            self.up[c].push_back(out);
        }
        Ok(())
    }

    fn quiesce(&mut self) -> Result<(), TestCaseError> {
        loop {
            let mut moved = false;
            for c in 0..self.clients.len() {
                while !self.up[c].is_empty() {
                    self.step(&Action::Upload(c))?;
                    moved = true;
                }
                while !self.down[c].is_empty() {
                    self.download(c)?;
                    moved = true;
                }
            }
            if !moved {
                return Ok(());
            }
        }
    }
}

#[test]
fn clients_converge_with_reconnects_and_exactly_once() {
    let seed = common::seed();
    let cases = common::cases("PROPTEST_CASES", DEFAULT_CASES);
    println!("convergence: SEED={seed} cases={cases}");
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        2usize..=MAX_CLIENTS,
        prop::collection::vec(action(), 0..200),
    );
    runner
        .run(&strategy, |(n, actions)| {
            let mut sim = Sim::new(n);
            let edits = actions
                .iter()
                .filter(|a| matches!(a, Action::Edit { .. }))
                .count();
            for a in &actions {
                sim.step(a)?;
            }
            sim.quiesce()?;
            let text = sim.server.text();
            for (i, (cl, replica)) in sim.clients.iter().enumerate() {
                prop_assert_eq!(replica, &text, "client {} diverged", i);
                prop_assert!(cl.is_synchronized(), "client {} still has unacked ops", i);
                prop_assert_eq!(cl.rev(), sim.server.rev());
            }
            // Each local edit is one op, composed ops are fewer; duplicates never add revisions.
            prop_assert!(sim.applied <= edits);
            prop_assert_eq!(sim.server.rev() as usize, sim.applied);
            Ok(())
        })
        .unwrap();
}
