//! [`JsKv`]: the [`Kv`] backend on NATS JetStream key-value buckets, for `[storage] backend =
//! "jetstream"` (`docs/CLUSTER.md`). Everything above it (records, sealing, verification, Yjs,
//! audit, outbox) is the same [`super::RecordStore`] code as on sled.
//!
//! Layout: one bucket per key space, `{prefix}_{TREE}` (`COEDIT_OPS`, `COEDIT_SNAPSHOTS`, …),
//! with the configured replicas. Keys are hex so that any byte string is a valid KV key:
//! `{hex doc}.r{hex revision}` in `ops` and `snapshots` (so one document's keys share a subject
//! prefix and are listed alone), `n{hex node}.{hex key}` in the node's own `audit` and `events`
//! spaces (each node keeps its own audit chain and outbox), except the documents' event cursors,
//! one per document for the cluster: `c.{hex key}` in `events` ([`SHARED_EVENTS_PREFIX`]);
//! `k.{hex key}` in `meta` and `keys`.
//!
//! Its read path (listings, value reads, retries) is in `js_kv/read.rs`, its write path (a
//! flush's writes in order, the conditional create) in `js_kv/write.rs`.
//!
//! Invariants:
//! - Writes are buffered in the process and become durable together at [`Kv::flush`], which
//!   returns once JetStream acknowledged every one (stored on the bucket's quorum). Reads see
//!   buffered and flushing writes first, as sled's reads see its unflushed writes.
//! - An op record is written with `create`: JetStream refuses it if that revision of that
//!   document exists. Two writers can never both write one revision: a writer that was not
//!   the document's only one learns it at its flush: the document is *fenced*
//!   ([`Kv::take_fenced`]), nothing more of it is written (not its later revisions, not its
//!   snapshots) until its actor stepped down and [`Kv::unfence`] is called, and the other
//!   documents of the flush are written as usual.
//! - Calls block the calling thread (the store is synchronous, like sled); the NATS connection
//!   runs on the backend's own runtime thread, so calls are safe from any thread.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::{StreamExt, TryStreamExt};

use super::kv::{tree_index, TREES};
use super::*;

mod read;
mod write;
use write::{random_tag, write_all, Outgoing};

/// Default bucket name prefix.
pub const DEFAULT_BUCKET_PREFIX: &str = "COEDIT";
/// Time allowed for one call to NATS (connect, read, or a whole flush).
pub const NATS_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one try at creating a key listing's consumer may take (see `JsKv::kv_keys`).
pub const KEYS_TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between tries at a key listing.
const KEYS_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long a read keeps being asked again while NATS fails it (a stream leader election
/// after a server died takes seconds: a read inside a write batch — a range deletion, the
/// events outbox — must wait it out, not stop the process).
pub const READ_RETRY_FOR: Duration = Duration::from_secs(30);
/// Pause between tries at a read.
const READ_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How long a flush keeps sending writes NATS did not acknowledge (NATS restarting, a leader
/// election) before it fails.
pub const FLUSH_RETRY_FOR: Duration = Duration::from_secs(120);
/// Pause between two tries of a flush.
const FLUSH_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Value reads in flight at once when listing a range.
const READS_AT_ONCE: usize = 64;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct JsConfig {
    /// NATS server URLs.
    pub urls: Vec<String>,
    /// This node's id (its audit chain and outbox keys).
    pub node: String,
    /// Bucket replicas when coedit creates the buckets.
    pub replicas: usize,
    /// Bucket name prefix.
    pub prefix: String,
    /// NATS credentials file.
    pub creds_file: Option<PathBuf>,
    /// CA certificate for TLS to NATS (TLS required when given).
    pub tls_ca_file: Option<PathBuf>,
    /// Cluster mode: how long a document's lease lasts without renewal.
    pub lease: Duration,
    /// Cluster mode: how often an owner renews its leases.
    pub renew: Duration,
}

/// Buffered writes: `(key space, key)` → value, `None` deleting.
type Buffer = BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>>;

/// The JetStream backend. See the module documentation.
pub struct JsKv {
    /// The runtime of the NATS connection (`None` only while dropping).
    rt: Option<tokio::runtime::Runtime>,
    client: async_nats::Client,
    js: jetstream::Context,
    buckets: Vec<kv::Store>,
    names: Vec<String>,
    node_token: String,
    /// Names this connection's creates (random, per process start).
    write_tag: String,
    /// Numbers them.
    writes: std::sync::atomic::AtomicU64,
    /// Writes not flushed yet: `None` deletes.
    pending: Mutex<Buffer>,
    /// Writes being flushed (read until JetStream acknowledged them).
    flushing: Mutex<Buffer>,
    /// One flush at a time.
    flush_lock: Mutex<()>,
    /// Documents another node wrote first: nothing more of theirs is written until
    /// [`Kv::unfence`] (their actor stepped down and a new one loads them).
    fenced: Mutex<HashSet<String>>,
    /// Documents fenced since the last [`Kv::take_fenced`].
    newly_fenced: Mutex<Vec<Fenced>>,
    /// Buffered writes to make with `create` besides op records ([`Kv::put_new`]).
    creates: Mutex<HashSet<(usize, Vec<u8>)>>,
}

fn tree_name(t: Tree) -> &'static str {
    match t {
        Tree::Ops => "OPS",
        Tree::Snapshots => "SNAPSHOTS",
        Tree::Meta => "META",
        Tree::Keys => "KEYS",
        Tree::Audit => "AUDIT",
        Tree::Events => "EVENTS",
    }
}

const ALL_TREES: [Tree; TREES] = [
    Tree::Ops,
    Tree::Snapshots,
    Tree::Meta,
    Tree::Keys,
    Tree::Audit,
    Tree::Events,
];

fn doc_tree(t: Tree) -> bool {
    matches!(t, Tree::Ops | Tree::Snapshots)
}

fn node_tree(t: Tree) -> bool {
    matches!(t, Tree::Audit | Tree::Events)
}

/// First byte of the `events` keys the nodes share instead of keeping their own: the
/// documents' event cursors (`events::outbox`), one per document for the whole cluster (a
/// document's owner tells its changes; its next owner starts where the cursor stands).
pub const SHARED_EVENTS_PREFIX: u8 = b'C';
/// KV key token of the shared `events` keys: `c.{hex key}`.
const SHARED_TOKEN: &str = "c";

/// Whether `key` of `tree` is shared by every node.
fn shared_key(tree: Tree, key: &[u8]) -> bool {
    tree == Tree::Events && key.first() == Some(&SHARED_EVENTS_PREFIX)
}

/// Whether the range `[from, to)` of `tree` lies within the shared keys.
fn shared_range(tree: Tree, from: &[u8], to: &[u8]) -> bool {
    shared_key(tree, from) && (shared_key(tree, to) || to == [SHARED_EVENTS_PREFIX + 1])
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("NATS JetStream, {what}: {e}"))
}

impl JsKv {
    /// Connects, and creates the buckets that do not exist yet.
    pub fn connect(cfg: &JsConfig) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("coedit-nats")
            .enable_all()
            .build()
            .map_err(backend)?;
        let c = cfg.clone();
        let connected = run(&rt, async move {
            let access = crate::nats_client::NatsAccess {
                urls: c.urls.clone(),
                creds_file: c.creds_file.clone(),
                tls_ca_file: c.tls_ca_file.clone(),
            };
            let name = format!("coedit/{} node {}", env!("CARGO_PKG_VERSION"), c.node);
            let client = crate::nats_client::connect(&access, &name, NATS_CALL_TIMEOUT)
                .await
                .map_err(StoreError::Backend)?;
            let js = jetstream::new(client.clone());
            let mut buckets = Vec::new();
            for t in ALL_TREES {
                let bucket = format!("{}_{}", c.prefix, tree_name(t));
                let store = match js.get_key_value(&bucket).await {
                    Ok(s) => s,
                    Err(_) => js
                        .create_key_value(kv::Config {
                            bucket: bucket.clone(),
                            history: 1,
                            num_replicas: c.replicas,
                            storage: jetstream::stream::StorageType::File,
                            max_value_size: -1,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| nats_err(&format!("bucket {bucket}"), e))?,
                };
                buckets.push(store);
            }
            Ok::<_, StoreError>((client, js, buckets))
        });
        let (client, js, buckets) = match connected {
            Ok(Ok(c)) => c,
            // Stopped without waiting: this may run on an async thread (a failed start-up).
            Ok(Err(e)) | Err(e) => {
                rt.shutdown_background();
                return Err(e);
            }
        };
        let names = ALL_TREES
            .iter()
            .map(|t| format!("{}_{}", cfg.prefix, tree_name(*t)))
            .collect();
        Ok(JsKv {
            rt: Some(rt),
            client,
            js,
            buckets,
            names,
            node_token: format!("n{}", hex::encode(cfg.node.as_bytes())),
            write_tag: format!("{}-{}", cfg.node, random_tag()?),
            writes: std::sync::atomic::AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
            flushing: Mutex::new(BTreeMap::new()),
            flush_lock: Mutex::new(()),
            fenced: Mutex::new(HashSet::new()),
            newly_fenced: Mutex::new(Vec::new()),
            creates: Mutex::new(HashSet::new()),
        })
    }

    /// The KV key of a store key.
    fn encode(&self, tree: Tree, key: &[u8]) -> String {
        if doc_tree(tree) {
            match key.iter().position(|&b| b == 0) {
                Some(i) => format!("{}.r{}", hex::encode(&key[..i]), hex::encode(&key[i + 1..])),
                None => format!("x.{}", hex::encode(key)),
            }
        } else if shared_key(tree, key) {
            format!("{SHARED_TOKEN}.{}", hex::encode(key))
        } else if node_tree(tree) {
            format!("{}.{}", self.node_token, hex::encode(key))
        } else {
            format!("k.{}", hex::encode(key))
        }
    }

    /// The store key of a KV key (`None`: not one this backend wrote, or another node's).
    fn decode(&self, tree: Tree, kv_key: &str) -> Option<Vec<u8>> {
        let (head, tail) = kv_key.split_once('.')?;
        if doc_tree(tree) {
            if head == "x" {
                return hex::decode(tail).ok();
            }
            let mut k = hex::decode(head).ok()?;
            k.push(0);
            k.extend(hex::decode(tail.strip_prefix('r')?).ok()?);
            Some(k)
        } else if node_tree(tree) {
            let key = hex::decode(tail).ok()?;
            let mine = if head == SHARED_TOKEN {
                shared_key(tree, &key)
            } else {
                head == self.node_token && !shared_key(tree, &key)
            };
            mine.then_some(key)
        } else {
            (head == "k").then(|| hex::decode(tail).ok()).flatten()
        }
    }

    /// The subject filter covering the store keys in `[from, to)` of `tree` (narrowed to one
    /// document when the range lies within one).
    fn filter(&self, tree: Tree, from: &[u8], to: &[u8]) -> String {
        let bucket = &self.names[tree_index(tree)];
        let token = if doc_tree(tree) {
            match from.iter().position(|&b| b == 0) {
                Some(i) if to.len() > i && to[..i] == from[..i] && (to[i] <= 1) => {
                    hex::encode(&from[..i])
                }
                _ => "*".to_string(),
            }
        } else if shared_range(tree, from, to) {
            SHARED_TOKEN.to_string()
        } else if node_tree(tree) {
            self.node_token.clone()
        } else {
            "k".to_string()
        };
        format!("$KV.{bucket}.{token}.>")
    }

    /// The buffered state of a key, if it has one (`Some(None)`: deleted).
    fn buffered(&self, tree: Tree, key: &[u8]) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let k = (tree_index(tree), key.to_vec());
        if let Some(v) = self.pending.lock().map_err(backend)?.get(&k) {
            return Ok(Some(v.clone()));
        }
        Ok(self.flushing.lock().map_err(backend)?.get(&k).cloned())
    }
}

impl JsKv {
    /// Runs `fut` on the backend's runtime and waits for it (see [`run`]).
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        match &self.rt {
            Some(rt) => run(rt, fut),
            None => Err(StoreError::Backend("the NATS connection is closed".into())),
        }
    }
}

impl Drop for JsKv {
    /// Stops the connection's runtime without waiting (it may be dropped on an async thread).
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `fut` on the backend's runtime and waits for it, from any thread, at most
/// [`NATS_CALL_TIMEOUT`].
fn run<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let r = tokio::time::timeout(NATS_CALL_TIMEOUT, fut).await;
        let _ = tx.send(r);
    });
    match rx.recv() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(StoreError::Backend(format!(
            "NATS JetStream did not answer within {NATS_CALL_TIMEOUT:?}"
        ))),
        Err(e) => Err(backend(e)),
    }
}

impl Kv for JsKv {
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.pending
            .lock()
            .map_err(backend)?
            .insert((tree_index(tree), key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn put_new(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.creates
            .lock()
            .map_err(backend)?
            .insert((tree_index(tree), key.to_vec()));
        self.put(tree, key, value)
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.buffered(tree, key)? {
            return Ok(v);
        }
        let k = self.encode(tree, key);
        self.read_retrying("reading", || {
            let (bucket, k) = (self.buckets[tree_index(tree)].clone(), k.clone());
            async move { read::leader_get(&bucket, &k).await }
        })
    }

    fn delete_range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<(), StoreError> {
        let keys: Vec<Vec<u8>> = self
            .list(tree, from, to)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut pending = self.pending.lock().map_err(backend)?;
        for k in keys {
            pending.insert((tree_index(tree), k), None);
        }
        Ok(())
    }

    fn range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.list(tree, from, to)
    }

    fn range_bounded(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        let keys = self.candidates(tree, from, to)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        // Values are read a page at a time, so a bounded read reads about what it returns.
        for chunk in keys.chunks(READS_AT_ONCE) {
            for ((k, _), v) in chunk.iter().zip(self.values(tree, chunk)?) {
                let Some(v) = v else { continue };
                if out.len() >= max_count || bytes >= max_bytes {
                    return Ok(out);
                }
                bytes += v.len();
                out.push((k.clone(), v));
            }
        }
        Ok(out)
    }

    fn first_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.edge(tree, from, to, false)
    }

    fn first_key_in(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.first_in(tree, from, to)?.map(|(k, _)| k))
    }

    fn last_in(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.edge(tree, from, to, true)
    }

    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError> {
        let names = self.kv_keys(tree)?;
        let mut out: std::collections::BTreeSet<Vec<u8>> =
            names.iter().filter_map(|n| self.decode(tree, n)).collect();
        let t = tree_index(tree);
        for map in [&self.flushing, &self.pending] {
            for ((mt, k), v) in map.lock().map_err(backend)?.iter() {
                if *mt == t {
                    match v {
                        Some(_) => out.insert(k.clone()),
                        None => out.remove(k),
                    };
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn reachable(&self) -> Result<(), StoreError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            other => Err(StoreError::Backend(format!(
                "NATS is not reachable ({other:?})"
            ))),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        let _one = self.flush_lock.lock().map_err(backend)?;
        let batch = std::mem::take(&mut *self.pending.lock().map_err(backend)?);
        if batch.is_empty() {
            return Ok(());
        }
        self.flushing.lock().map_err(backend)?.extend(batch.clone());
        let mut creates = self.creates.lock().map_err(backend)?;
        let mut left: Vec<Outgoing> = batch
            .into_iter()
            .map(|((t, k), value)| {
                let tree = ALL_TREES[t];
                let n = self
                    .writes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Outgoing {
                    bucket: self.buckets[t].clone(),
                    key: self.encode(tree, &k),
                    tree,
                    create: tree == Tree::Ops || creates.remove(&(t, k.clone())),
                    value,
                    raw: k,
                    id: format!("{}-{n}", self.write_tag),
                    js: self.js.clone(),
                }
            })
            .collect();
        drop(creates);
        // NATS away (a restart, a leader election, a network blip): the writes that did not get
        // their acknowledgement are sent again, until FLUSH_RETRY_FOR has passed. Every write is
        // idempotent: a put or purge again is the same, and a create whose first try was stored
        // finds its own value there.
        let deadline = std::time::Instant::now() + FLUSH_RETRY_FOR;
        let result = loop {
            let fenced = self.fenced.lock().map_err(backend)?.clone();
            let attempt = std::mem::take(&mut left);
            let outcome = self.run(write_all(attempt.clone(), fenced));
            // No answer at all within the call timeout: everything is tried again.
            let (retry, refused) = outcome.unwrap_or((attempt, Vec::new()));
            left = retry;
            if !refused.is_empty() {
                let mut set = self.fenced.lock().map_err(backend)?;
                let mut news = self.newly_fenced.lock().map_err(backend)?;
                for (doc, from_rev) in refused {
                    tracing::warn!(doc = %doc, from_rev, "another node wrote this document first: fenced");
                    if set.insert(doc.clone()) {
                        news.push(Fenced { doc, from_rev });
                    }
                }
            }
            if left.is_empty() {
                break Ok(());
            }
            if std::time::Instant::now() >= deadline {
                break Err(StoreError::Backend(format!(
                    "NATS JetStream did not store {} writes within {FLUSH_RETRY_FOR:?}",
                    left.len()
                )));
            }
            tracing::warn!(
                writes = left.len(),
                "NATS JetStream did not acknowledge writes; retrying"
            );
            std::thread::sleep(FLUSH_RETRY_PAUSE);
        };
        self.flushing.lock().map_err(backend)?.clear();
        result
    }

    fn take_fenced(&self) -> Vec<Fenced> {
        self.newly_fenced
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    fn unfence(&self, doc: &str) {
        if let Ok(mut set) = self.fenced.lock() {
            set.remove(doc);
        }
    }

    fn is_fenced(&self, doc: &str) -> bool {
        self.fenced.lock().map(|s| s.contains(doc)).unwrap_or(true)
    }
}

/// The store on NATS JetStream.
pub type JetStreamStore = RecordStore<JsKv>;

impl JetStreamStore {
    /// The ids of every node with an audit chain in the store (cluster `coedit check`).
    pub fn audit_nodes(&self) -> Result<Vec<String>, StoreError> {
        let names = self.kv.kv_keys(Tree::Audit)?;
        let nodes: std::collections::BTreeSet<String> = names
            .iter()
            .filter_map(|k| k.split_once('.'))
            .filter_map(|(head, _)| head.strip_prefix('n'))
            .filter_map(|h| hex::decode(h).ok())
            .filter_map(|b| String::from_utf8(b).ok())
            .collect();
        Ok(nodes.into_iter().collect())
    }

    /// Connects to NATS (creating the buckets on first use) and checks the store's format and
    /// encryption mode as [`super::SledStore::open_with`] does: with a master key ring, an
    /// encrypted store.
    pub fn connect(cfg: &JsConfig, ring: Option<MasterKeyring>) -> Result<Self, StoreError> {
        let store = RecordStore {
            kv: JsKv::connect(cfg)?,
            keys: ring.map(DataKeys::new),
        };
        store.check_format()?;
        store.check_crypto_mode()?;
        Ok(store)
    }
}
