//! Offline store tools: `coedit check` (verify everything the store holds against itself and
//! against what was acknowledged; on sled, or on NATS JetStream with `backend = "jetstream"`) and `coedit recover --accept-loss` (after damage, accept the
//! store as it is: record the loss in the audit chain and write a new manifest).
//!
//! Invariants:
//! - `check` changes nothing and exits non-zero on any fault: a damaged record, a document or
//!   audit chain shorter than the manifest says was acknowledged, a damaged, missing or foreign
//!   manifest, an anchored checkpoint the chain no longer holds.
//! - `recover` writes only with `--accept-loss`, and records what it accepted in the audit
//!   chain (a gap record for lost audit records, an admin record naming the documents).

use anyhow::{bail, Context, Result};
use coedit_actors::security::anchor;
use coedit_actors::security::audit::{self, AuditChain, AuditEvent, Expectations};
use coedit_actors::storage::check_document;
use coedit_actors::storage::js_kv::JetStreamStore;
use coedit_actors::storage::manifest::{self, Manifest, ManifestState};
use coedit_actors::storage::{Kv, RecordStore};
use coedit_actors::{SledStore, Store};

use crate::config::{Backend, Config};
use crate::security;

/// Opens the store of `config` (with its master key).
fn open(config: &Config) -> Result<SledStore> {
    SledStore::open_with(&config.data_dir, security::master_ring(config)?)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))
}

/// The audit length that was durable: the manifest's, or the last anchored checkpoint's.
fn expected_audit(config: &Config, state: Option<&ManifestState>) -> Result<u64> {
    let anchored = anchor::read(&config.anchor_path())?
        .last()
        .map_or(0, |a| a.seq);
    Ok(state.map_or(0, |s| s.audit).max(anchored))
}

/// `coedit check`: verifies every document in the data directory and compares the store with
/// its manifest and audit anchors; with `[storage] backend = "jetstream"`, every document in
/// NATS JetStream and this node's audit chain (there is no manifest: JetStream's
/// acknowledgements stand for it).
pub fn check(config: &Config) -> Result<()> {
    match (config.backend, &config.cluster) {
        (Backend::Jetstream, Some(c)) => {
            let ring = security::master_ring(config)?;
            let store = JetStreamStore::connect(c, ring.clone())
                .context("opening the store on NATS JetStream")?;
            let here = check_in(config, &store);
            // A cluster: every other node's audit chain too.
            let mut faults = 0;
            for node in store.audit_nodes()? {
                if node == c.node {
                    continue;
                }
                let mut other = c.clone();
                other.node = node.clone();
                let theirs = JetStreamStore::connect(&other, ring.clone())
                    .context("opening the store on NATS JetStream")?;
                match audit::verify(&theirs.audit_all()?, Expectations::default()) {
                    Ok(r) => println!("ok      audit log of node {node}: {} records", r.records),
                    Err(f) => {
                        faults += 1;
                        println!("FAULT   audit log of node {node}: {f}");
                    }
                }
            }
            here?;
            if faults > 0 {
                bail!("{faults} nodes' audit logs are faulty");
            }
            Ok(())
        }
        _ => check_in(config, &open(config)?),
    }
}

/// [`check`] on an opened store.
fn check_in<K: Kv>(config: &Config, store: &RecordStore<K>) -> Result<()> {
    let mut faults = 0;
    let state = if config.backend == Backend::Jetstream {
        None
    } else {
        match manifest::read_for(&config.data_dir, store) {
            Ok(s) => s,
            Err(e) => {
                faults += 1;
                println!("FAULT   {e}");
                None
            }
        }
    };
    if state.is_none() && faults == 0 && config.backend != Backend::Jetstream {
        println!("note    no manifest yet (the server writes one when it starts)");
    }
    let docs = store.documents()?;
    for doc in &docs {
        match check_document(store, doc) {
            Ok((ops, snapshots)) => {
                let have = store.last_rev(doc)?;
                match state.as_ref().and_then(|s| s.expected_rev(doc)) {
                    Some(expected) if have < expected => {
                        faults += 1;
                        println!("FAULT   {}", lost(doc, have, expected));
                    }
                    _ => println!("ok      {doc}: {ops} ops, {snapshots} snapshots"),
                }
            }
            Err(e) => {
                faults += 1;
                println!("FAULT   {e}");
            }
        }
    }
    // Documents the manifest knows that the store no longer holds at all.
    let missing: Vec<(String, u64)> = state
        .as_ref()
        .map(|s| s.documents())
        .unwrap_or_default()
        .into_iter()
        .filter(|(d, _)| docs.binary_search(d).is_err())
        .collect();
    for (doc, expected) in &missing {
        faults += 1;
        println!("FAULT   {}", lost(doc, 0, *expected));
    }
    let chain = AuditChain::resume(store)?.len();
    let expected = if config.backend == Backend::Jetstream {
        0
    } else {
        expected_audit(config, state.as_ref())?
    };
    if chain < expected {
        faults += 1;
        println!(
            "FAULT   the audit log lost records {}..={expected} (the store holds {chain})",
            chain + 1
        );
    } else {
        // The chain's links and anchors (signatures: `coedit audit verify --pubkey`).
        let anchors = if config.backend == Backend::Jetstream {
            Vec::new()
        } else {
            anchor::read(&config.anchor_path())?
        };
        let expect = Expectations {
            anchors: &anchors,
            min_len: state.as_ref().map(|s| s.audit),
            ..Expectations::default()
        };
        match audit::verify(&store.audit_all()?, expect) {
            Ok(r) => println!("ok      audit log: {} records", r.records),
            Err(f) => {
                faults += 1;
                println!("FAULT   {f}");
            }
        }
    }
    // The change-events outbox, if the server ever wrote one.
    if coedit_actors::events::outbox::state(store)
        .ok()
        .flatten()
        .is_some()
    {
        match coedit_actors::events::outbox::check(store) {
            Ok((events, dead)) => {
                println!("ok      events outbox: {events} events, {dead} dead letters")
            }
            Err(e) => {
                faults += 1;
                println!("FAULT   events outbox: {e}");
            }
        }
    }
    let checked = docs.len() + missing.len();
    println!("{checked} documents checked, {faults} faulty");
    if faults > 0 {
        bail!(
            "{faults} faults: restore the data directory from a backup, or accept the store as \
             it is with `coedit recover --accept-loss`"
        );
    }
    Ok(())
}

fn lost(doc: &str, have: u64, expected: u64) -> String {
    format!(
        "document {doc:?} lost acknowledged revisions {}..={expected} (the store has revision \
         {have})",
        have + 1
    )
}

/// `coedit recover`: reports what was lost; with `accept`, records the loss in the audit chain
/// and writes a new manifest from the store as it is.
pub fn recover(config: &Config, accept: bool) -> Result<()> {
    let store = open(config)?;
    let state = match manifest::read_for(&config.data_dir, &store) {
        Ok(s) => s,
        Err(e) => {
            println!("manifest: {e}");
            None
        }
    };
    let mut losses = Vec::new();
    if let Some(s) = &state {
        for (doc, expected) in s.documents() {
            let have = store.last_rev(&doc)?;
            if have < expected {
                println!("lost    {}", lost(&doc, have, expected));
                losses.push(format!("{doc} {}..={expected}", have + 1));
            }
        }
    }
    let mut chain = AuditChain::resume(&store)?;
    let expected = expected_audit(config, state.as_ref())?;
    if chain.len() < expected {
        println!(
            "lost    audit records {}..={expected} (the store holds {})",
            chain.len() + 1,
            chain.len()
        );
    }
    if !accept {
        println!("nothing written: run again with --accept-loss to accept the store as it is");
        return Ok(());
    }
    let reason = format!(
        "coedit recover --accept-loss ({} documents with lost revisions)",
        losses.len()
    );
    if let Some(seq) = chain.accept_loss(&store, expected, &reason)? {
        println!("audit   gap record {seq} written");
    }
    chain.append(
        &store,
        AuditEvent::Admin {
            subject: "cli".into(),
            action: "recover-accept-loss".into(),
            target: losses.join(", "),
            outcome: "the store was accepted as it is; a new manifest was written".into(),
        },
    )?;
    store.flush()?;
    Manifest::create(&config.data_dir, &store)?;
    println!(
        "accepted: {} documents at their stored revisions; new manifest written",
        losses.len()
    );
    Ok(())
}
