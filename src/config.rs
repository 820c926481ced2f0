//! Server configuration: defaults, overridden by a TOML file, overridden by command-line flags
//! and their `COEDIT_*` environment twins.
//!
//! Every limit and timeout has a named default in the crate that enforces it; this file only
//! gathers them. Unknown keys in the file are an error, so a typo never passes silently.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use coedit_actors::document::{DEFAULT_SNAPSHOT_EVERY, DEFAULT_SNAPSHOT_INTERVAL};
use coedit_actors::security::auth::DEFAULT_CLOCK_SKEW_S;
use coedit_actors::security::verifier::DEFAULT_VERIFIER_THREADS;
use coedit_actors::storage::SLED_CACHE_BYTES;
use coedit_actors::store_actor::{
    DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_GROUP_COMMIT, DEFAULT_MIN_FREE_BYTES,
    DEFAULT_RELAXED_FLUSH_INTERVAL,
};
use coedit_actors::{DocActorConfig, Durability, SessionConfig};
use coedit_protocol::DocumentConfig;
use serde::Deserialize;

/// Default listening address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default time allowed for a graceful shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// `[server]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Listening address.
    pub bind: Option<SocketAddr>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Threads for document actors (default: one per core).
    pub doc_threads: Option<usize>,
    /// Seconds allowed for a graceful shutdown.
    pub shutdown_timeout_s: Option<u64>,
    /// Serve a non-loopback address with authentication off (a closed trial network only).
    pub allow_insecure: Option<bool>,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Vec<String>>,
}

/// `[document]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentSection {
    /// Ops kept in memory per document for late ops and catch-up.
    pub history_window: Option<usize>,
    /// Maximum document length in characters.
    pub max_chars: Option<usize>,
    /// Clients whose exactly-once state is kept per document.
    pub max_clients: Option<usize>,
    /// Fan-out coalescing tick in milliseconds (0: send every op at once).
    pub fanout_tick_ms: Option<u64>,
    /// Microseconds added to the fan-out tick per subscriber of a document (a crowded
    /// document sends fewer, larger rounds).
    pub fanout_tick_per_subscriber_us: Option<u64>,
    /// Seconds without subscribers before a document unloads.
    pub idle_timeout_s: Option<u64>,
}

/// `[yjs]` table: limits of Yjs documents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YjsSection {
    /// Largest Yjs update accepted (WebSocket or REST), in bytes.
    pub max_update_bytes: Option<usize>,
    /// Largest Yjs document, in bytes of its encoded state.
    pub max_doc_bytes: Option<usize>,
}

/// `[session]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// Seconds between server pings.
    pub heartbeat_interval_s: Option<u64>,
    /// Seconds of client silence before the session is closed.
    pub client_timeout_s: Option<u64>,
    /// Outbound mailbox bound, in messages (an answer or a fan-out round each).
    pub outbound_capacity: Option<usize>,
    /// Outbound queue bound, in bytes.
    pub max_outbound_bytes: Option<usize>,
    /// Documents one session may join.
    pub max_docs: Option<usize>,
    /// Largest accepted WebSocket frame or HTTP body, in bytes.
    pub max_frame_bytes: Option<usize>,
    /// Most open WebSocket connections (more are refused with 503).
    pub max_connections: Option<usize>,
    /// Sustained ops per second per session (token bucket rate).
    pub max_ops_per_s: Option<f64>,
    /// Ops per session in a burst above the rate (token bucket size).
    pub op_burst: Option<f64>,
    /// Seconds a new connection has to complete `hello`.
    pub hello_timeout_s: Option<u64>,
}

/// How ops become durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Acknowledge after the op is flushed to disk (group commit).
    #[default]
    Strict,
    /// Acknowledge after the op is written; flush every `relaxed_flush_ms`.
    Relaxed,
}

/// Where documents are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// sled in the data directory.
    #[default]
    Sled,
    /// Process memory (nothing survives a restart; for trials and tests).
    Memory,
    /// NATS JetStream key-value buckets (`[cluster]`, `docs/CLUSTER.md`).
    Jetstream,
}

/// `[storage]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `sled` (default), `memory` or `jetstream`.
    pub backend: Option<Backend>,
    /// `strict` (default) or `relaxed`.
    pub durability: Option<DurabilityMode>,
    /// Flush interval in relaxed mode, milliseconds.
    pub relaxed_flush_ms: Option<u64>,
    /// Strict mode: least time between the starts of two flushes (group commit window),
    /// milliseconds; 0 starts each flush as soon as the previous one is done.
    pub group_commit_ms: Option<u64>,
    /// Ops between snapshots.
    pub snapshot_every_ops: Option<u64>,
    /// Seconds between snapshots of an active document.
    pub snapshot_interval_s: Option<u64>,
    /// Ops kept in the log before the latest snapshot (absent: the whole history).
    pub retain_ops: Option<u64>,
    /// sled's page cache, MiB.
    pub cache_mb: Option<u64>,
    /// Free space (MiB) kept on the data directory's file system: below it, writes are refused
    /// (reads go on) until space returns.
    pub min_free_mb: Option<u64>,
}

/// Encryption at rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CryptoMode {
    /// Records are stored in the clear (with checksums).
    #[default]
    None,
    /// Records are sealed with SM4-GCM under per-document data keys.
    Sm,
}

/// `[crypto]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoSection {
    /// `none` (default) or `sm`.
    pub mode: Option<CryptoMode>,
    /// Master key ring file (mode 0600); else the `COEDIT_MASTER_KEY` environment variable.
    pub master_key_file: Option<PathBuf>,
    /// SM2 private key (PEM, mode 0600) that signs audit checkpoints.
    pub signing_key_file: Option<PathBuf>,
    /// Threads that check access-token signatures (the store's writing has its own).
    pub threads: Option<usize>,
}

/// How access tokens are checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// No authentication: anyone may do anything (local trial only).
    #[default]
    None,
    /// HMAC-SM3 tokens with a shared secret.
    HmacSm3,
    /// SM2-signed tokens (compliance mode).
    Sm2,
}

/// `[auth]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `none` (default), `hmac-sm3` or `sm2`.
    pub mode: Option<AuthMode>,
    /// Shared secret for `hmac-sm3` (file, mode 0600, at least 16 bytes).
    pub hmac_key_file: Option<PathBuf>,
    /// The token issuer's SM2 public key (PEM) for `sm2`.
    pub public_key_file: Option<PathBuf>,
    /// Clock skew tolerated between token issuers and this server, seconds.
    pub clock_skew_s: Option<u64>,
}

/// `[audit]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Record the audit log (default: true).
    pub enabled: Option<bool>,
    /// Seconds between signed checkpoints (needs `[crypto] signing_key_file`).
    pub checkpoint_interval_s: Option<u64>,
    /// Append-only file that every signed checkpoint is also written to (default:
    /// `audit-anchor.jsonl` in the data directory); keep it on other storage if you can.
    pub anchor_file: Option<PathBuf>,
}

/// The whole TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[document]`.
    #[serde(default)]
    pub document: DocumentSection,
    /// `[session]`.
    #[serde(default)]
    pub session: SessionSection,
    /// `[storage]`.
    #[serde(default)]
    pub storage: StorageSection,
    /// `[crypto]`.
    #[serde(default)]
    pub crypto: CryptoSection,
    /// `[auth]`.
    #[serde(default)]
    pub auth: AuthSection,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditSection,
    /// `[yjs]`.
    #[serde(default)]
    pub yjs: YjsSection,
    /// `[events]` and its `[[events.webhook]]` sinks.
    #[serde(default)]
    pub events: events::EventsSection,
    /// `[cluster]`: NATS JetStream.
    #[serde(default)]
    pub cluster: cluster::ClusterSection,
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listening address.
    pub bind: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP worker threads.
    pub workers: usize,
    /// Threads for document actors.
    pub doc_threads: usize,
    /// Serve a non-loopback address with authentication off.
    pub allow_insecure: bool,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::proxy::TrustedProxies,
    /// Time allowed for a graceful shutdown.
    pub shutdown_timeout: Duration,
    /// Storage backend.
    pub backend: Backend,
    /// sled's page cache, bytes.
    pub sled_cache_bytes: u64,
    /// Strict mode group commit window (`[storage] group_commit_ms`).
    pub group_commit: Duration,
    /// Free bytes kept on the data directory's file system.
    pub min_free_bytes: u64,
    /// Settings of document actors.
    pub doc: DocActorConfig,
    /// Settings of sessions.
    pub session: SessionConfig,
    /// Limits of Yjs documents.
    pub yjs: coedit_protocol::yjs::YDocConfig,
    /// Encryption at rest.
    pub crypto_mode: CryptoMode,
    /// Master key ring file.
    pub master_key_file: Option<PathBuf>,
    /// SM2 key signing audit checkpoints.
    pub signing_key_file: Option<PathBuf>,
    /// Token verifier threads (`[crypto] threads`).
    pub verifier_threads: usize,
    /// Token checking.
    pub auth_mode: AuthMode,
    /// HMAC-SM3 secret file.
    pub hmac_key_file: Option<PathBuf>,
    /// Token issuer's SM2 public key.
    pub public_key_file: Option<PathBuf>,
    /// Clock skew tolerated for token times, seconds.
    pub clock_skew_s: u64,
    /// Whether the audit log is recorded.
    pub audit: bool,
    /// Interval between signed audit checkpoints.
    pub checkpoint_interval: Duration,
    /// Where signed checkpoints are anchored (`None`: in the data directory).
    pub anchor_file: Option<PathBuf>,
    /// Change events and their sinks.
    pub events: events::EventsConfig,
    /// NATS JetStream, with `backend = "jetstream"`.
    pub cluster: Option<coedit_actors::storage::js_kv::JsConfig>,
    /// Cluster mode: the HTTP address other nodes forward REST calls for this node's
    /// documents to (`None`: derived from the bound address, unless that is a wildcard).
    pub advertise_url: Option<String>,
}

/// Bounds of every number in the configuration: `(lowest, highest)` accepted values. A value
/// outside them is a startup error naming the key and the range.
pub mod limits {
    /// `[server] workers`, `doc_threads`.
    pub const THREADS: (usize, usize) = (1, 512);
    /// `[server] shutdown_timeout_s`.
    pub const SHUTDOWN_TIMEOUT_S: (u64, u64) = (1, 3600);
    /// `[document] history_window`.
    pub const HISTORY_WINDOW: (usize, usize) = (1, 1 << 20);
    /// `[document] max_chars`.
    pub const MAX_CHARS: (usize, usize) = (1, 1 << 30);
    /// `[document] max_clients`.
    pub const MAX_CLIENTS: (usize, usize) = (1, 1 << 20);
    /// `[document] fanout_tick_ms`.
    pub const FANOUT_TICK_MS: (u64, u64) = (0, 1000);
    /// `[document] fanout_tick_per_subscriber_us`.
    pub const FANOUT_TICK_PER_SUBSCRIBER_US: (u64, u64) = (0, 10_000);
    /// `[document] idle_timeout_s`.
    pub const IDLE_TIMEOUT_S: (u64, u64) = (1, 86_400);
    /// `[session] heartbeat_interval_s`.
    pub const HEARTBEAT_S: (u64, u64) = (1, 3600);
    /// `[session] client_timeout_s`.
    pub const CLIENT_TIMEOUT_S: (u64, u64) = (1, 86_400);
    /// `[session] outbound_capacity`.
    pub const OUTBOUND_CAPACITY: (usize, usize) = (16, 1 << 20);
    /// `[session] max_outbound_bytes`.
    pub const MAX_OUTBOUND_BYTES: (usize, usize) = (64 * 1024, 1 << 32);
    /// `[session] max_docs`.
    pub const MAX_DOCS: (usize, usize) = (1, 65_536);
    /// `[session] max_frame_bytes`.
    pub const MAX_FRAME_BYTES: (usize, usize) =
        (4096, coedit_protocol::wire::MAX_SERVER_FRAME_BYTES);
    /// `[session] hello_timeout_s`.
    pub const HELLO_TIMEOUT_S: (u64, u64) = (1, 300);
    /// `[session] max_connections`.
    pub const MAX_CONNECTIONS: (usize, usize) = (1, 10_000_000);
    /// `[session] max_ops_per_s`.
    pub const MAX_OPS_PER_S: (f64, f64) = (0.001, 1e6);
    /// `[session] op_burst`.
    pub const OP_BURST: (f64, f64) = (1.0, 1e6);
    /// `[storage] relaxed_flush_ms`.
    pub const RELAXED_FLUSH_MS: (u64, u64) = (1, 60_000);
    /// `[storage] group_commit_ms`.
    pub const GROUP_COMMIT_MS: (u64, u64) = (0, 1_000);
    /// `[storage] snapshot_every_ops`.
    pub const SNAPSHOT_EVERY_OPS: (u64, u64) = (1, 100_000_000);
    /// `[storage] snapshot_interval_s`.
    pub const SNAPSHOT_INTERVAL_S: (u64, u64) = (1, 86_400);
    /// `[storage] cache_mb`.
    pub const CACHE_MB: (u64, u64) = (1, 1 << 20);
    /// `[storage] min_free_mb`.
    pub const MIN_FREE_MB: (u64, u64) = (0, 1 << 20);
    /// `[crypto] threads`.
    pub const CRYPTO_THREADS: (usize, usize) = (1, 64);
    /// `[audit] checkpoint_interval_s`.
    pub const CHECKPOINT_INTERVAL_S: (u64, u64) = (1, 86_400);
    /// `[yjs] max_update_bytes`.
    pub const YJS_UPDATE_BYTES: (usize, usize) = (1024, 64 << 20);
    /// `[yjs] max_doc_bytes`.
    pub const YJS_DOC_BYTES: (usize, usize) = (4096, 1 << 32);
    /// `[auth] clock_skew_s`.
    pub const CLOCK_SKEW_S: (u64, u64) = (0, coedit_actors::security::auth::MAX_CLOCK_SKEW_S);
}

/// `value` (or `default` when absent), if within `(lo, hi)`; else an error naming `key`.
fn ranged<T>(key: &str, value: Option<T>, default: T, (lo, hi): (T, T)) -> Result<T>
where
    T: PartialOrd + Copy + std::fmt::Display,
{
    let Some(v) = value else {
        return Ok(default);
    };
    // NaN fails both comparisons' negations: `!(v >= lo)` catches it.
    if !(v >= lo && v <= hi) {
        anyhow::bail!("configuration: {key} = {v} is out of range (allowed: {lo} to {hi})");
    }
    Ok(v)
}

impl Config {
    /// `backend = "jetstream"` and `[cluster] nats` go together.
    pub fn check_cluster(&self) -> Result<()> {
        match (self.backend, &self.cluster) {
            (Backend::Jetstream, None) => anyhow::bail!(
                "configuration: [storage] backend = \"jetstream\" needs [cluster] nats = [URLs]"
            ),
            (Backend::Sled | Backend::Memory, Some(_)) => anyhow::bail!(
                "configuration: [cluster] is set: also set [storage] backend = \"jetstream\" \
                 (or remove [cluster])"
            ),
            (Backend::Jetstream, Some(_))
                if self.doc.durability != coedit_actors::storage::Durability::Strict =>
            {
                anyhow::bail!(
                    "configuration: [storage] backend = \"jetstream\" needs durability = \
                     \"strict\": an owner that shows an edit before the store has it could show \
                     an edit another node's write then refuses"
                )
            }
            _ => Ok(()),
        }
    }

    /// Refuses to serve a non-loopback address with authentication off, unless
    /// `[server] allow_insecure = true`: anyone who could reach it could read, edit and delete
    /// every document.
    pub fn check_exposure(&self) -> Result<()> {
        if self.auth_mode != AuthMode::None || self.bind.ip().is_loopback() || self.allow_insecure {
            return Ok(());
        }
        anyhow::bail!(
            "refusing to listen on {} with authentication off: anyone who can reach it could \
             read, edit and delete every document. Set [auth] mode (docs/SECURITY.md), or bind \
             127.0.0.1 (behind a reverse proxy), or set [server] allow_insecure = true for a \
             closed trial network",
            self.bind
        )
    }

    /// Where audit checkpoints are anchored.
    pub fn anchor_path(&self) -> PathBuf {
        self.anchor_file.clone().unwrap_or_else(|| {
            self.data_dir
                .join(coedit_actors::security::anchor::ANCHOR_FILE)
        })
    }

    /// Resolves defaults ← file ← flags, range-checking every number.
    pub fn resolve(
        file: FileConfig,
        bind: Option<SocketAddr>,
        data_dir: Option<PathBuf>,
    ) -> Result<Config> {
        use limits::*;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let d = DocActorConfig::default();
        let dc = DocumentConfig::default();
        let s = SessionConfig::default();
        let secs = Duration::from_secs;
        let f = file;
        let default_bind: SocketAddr = DEFAULT_BIND.parse()?;
        let heartbeat = ranged(
            "[session] heartbeat_interval_s",
            f.session.heartbeat_interval_s,
            s.heartbeat_interval.as_secs(),
            HEARTBEAT_S,
        )?;
        let client_timeout = ranged(
            "[session] client_timeout_s",
            f.session.client_timeout_s,
            s.client_timeout.as_secs(),
            CLIENT_TIMEOUT_S,
        )?;
        if client_timeout <= heartbeat {
            anyhow::bail!(
                "configuration: [session] client_timeout_s ({client_timeout}) must be longer than \
                 heartbeat_interval_s ({heartbeat})"
            );
        }
        let relaxed_ms = ranged(
            "[storage] relaxed_flush_ms",
            f.storage.relaxed_flush_ms,
            DEFAULT_RELAXED_FLUSH_INTERVAL.as_millis() as u64,
            RELAXED_FLUSH_MS,
        )?;
        Ok(Config {
            bind: bind.or(f.server.bind).unwrap_or(default_bind),
            data_dir: data_dir
                .or(f.server.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            workers: ranged("[server] workers", f.server.workers, cores, THREADS)?,
            doc_threads: ranged("[server] doc_threads", f.server.doc_threads, cores, THREADS)?,
            allow_insecure: f.server.allow_insecure.unwrap_or(false),
            trusted_proxies: crate::proxy::TrustedProxies::parse(
                f.server.trusted_proxies.as_deref().unwrap_or_default(),
            )?,
            shutdown_timeout: secs(ranged(
                "[server] shutdown_timeout_s",
                f.server.shutdown_timeout_s,
                DEFAULT_SHUTDOWN_TIMEOUT.as_secs(),
                SHUTDOWN_TIMEOUT_S,
            )?),
            backend: f.storage.backend.unwrap_or_default(),
            sled_cache_bytes: ranged(
                "[storage] cache_mb",
                f.storage.cache_mb,
                SLED_CACHE_BYTES / (1024 * 1024),
                CACHE_MB,
            )? * 1024
                * 1024,
            group_commit: Duration::from_millis(ranged(
                "[storage] group_commit_ms",
                f.storage.group_commit_ms,
                DEFAULT_GROUP_COMMIT.as_millis() as u64,
                GROUP_COMMIT_MS,
            )?),
            min_free_bytes: ranged(
                "[storage] min_free_mb",
                f.storage.min_free_mb,
                DEFAULT_MIN_FREE_BYTES / (1024 * 1024),
                MIN_FREE_MB,
            )? * 1024
                * 1024,
            doc: DocActorConfig {
                durability: match f.storage.durability.unwrap_or_default() {
                    DurabilityMode::Strict => Durability::Strict,
                    DurabilityMode::Relaxed => Durability::Relaxed {
                        interval: Duration::from_millis(relaxed_ms),
                    },
                },
                snapshot_every: ranged(
                    "[storage] snapshot_every_ops",
                    f.storage.snapshot_every_ops,
                    DEFAULT_SNAPSHOT_EVERY,
                    SNAPSHOT_EVERY_OPS,
                )?,
                snapshot_interval: secs(ranged(
                    "[storage] snapshot_interval_s",
                    f.storage.snapshot_interval_s,
                    DEFAULT_SNAPSHOT_INTERVAL.as_secs(),
                    SNAPSHOT_INTERVAL_S,
                )?),
                retain_ops: f.storage.retain_ops,
                fanout_tick: Duration::from_millis(ranged(
                    "[document] fanout_tick_ms",
                    f.document.fanout_tick_ms,
                    d.fanout_tick.as_millis() as u64,
                    FANOUT_TICK_MS,
                )?),
                fanout_tick_per_subscriber: Duration::from_micros(ranged(
                    "[document] fanout_tick_per_subscriber_us",
                    f.document.fanout_tick_per_subscriber_us,
                    d.fanout_tick_per_subscriber.as_micros() as u64,
                    FANOUT_TICK_PER_SUBSCRIBER_US,
                )?),
                idle_timeout: secs(ranged(
                    "[document] idle_timeout_s",
                    f.document.idle_timeout_s,
                    d.idle_timeout.as_secs(),
                    IDLE_TIMEOUT_S,
                )?),
                document: DocumentConfig {
                    history_window: ranged(
                        "[document] history_window",
                        f.document.history_window,
                        dc.history_window,
                        HISTORY_WINDOW,
                    )?,
                    max_chars: ranged(
                        "[document] max_chars",
                        f.document.max_chars,
                        dc.max_chars,
                        MAX_CHARS,
                    )?,
                    max_clients: ranged(
                        "[document] max_clients",
                        f.document.max_clients,
                        dc.max_clients,
                        MAX_CLIENTS,
                    )?,
                    rope_seed: None,
                },
            },
            yjs: coedit_protocol::yjs::YDocConfig {
                max_update_bytes: ranged(
                    "[yjs] max_update_bytes",
                    f.yjs.max_update_bytes,
                    coedit_protocol::yjs::document::DEFAULT_MAX_UPDATE_BYTES,
                    YJS_UPDATE_BYTES,
                )?,
                max_doc_bytes: ranged(
                    "[yjs] max_doc_bytes",
                    f.yjs.max_doc_bytes,
                    coedit_protocol::yjs::document::DEFAULT_MAX_DOC_BYTES,
                    YJS_DOC_BYTES,
                )?,
            },
            session: SessionConfig {
                heartbeat_interval: secs(heartbeat),
                client_timeout: secs(client_timeout),
                outbound_capacity: ranged(
                    "[session] outbound_capacity",
                    f.session.outbound_capacity,
                    s.outbound_capacity,
                    OUTBOUND_CAPACITY,
                )?,
                max_outbound_bytes: ranged(
                    "[session] max_outbound_bytes",
                    f.session.max_outbound_bytes,
                    s.max_outbound_bytes,
                    MAX_OUTBOUND_BYTES,
                )?,
                max_docs: ranged(
                    "[session] max_docs",
                    f.session.max_docs,
                    s.max_docs,
                    MAX_DOCS,
                )?,
                max_frame_bytes: ranged(
                    "[session] max_frame_bytes",
                    f.session.max_frame_bytes,
                    s.max_frame_bytes,
                    MAX_FRAME_BYTES,
                )?,
                max_connections: ranged(
                    "[session] max_connections",
                    f.session.max_connections,
                    s.max_connections,
                    MAX_CONNECTIONS,
                )?,
                max_ops_per_s: ranged(
                    "[session] max_ops_per_s",
                    f.session.max_ops_per_s,
                    s.max_ops_per_s,
                    MAX_OPS_PER_S,
                )?,
                op_burst: ranged(
                    "[session] op_burst",
                    f.session.op_burst,
                    s.op_burst,
                    OP_BURST,
                )?,
                hello_timeout: secs(ranged(
                    "[session] hello_timeout_s",
                    f.session.hello_timeout_s,
                    s.hello_timeout.as_secs(),
                    HELLO_TIMEOUT_S,
                )?),
            },
            crypto_mode: f.crypto.mode.unwrap_or_default(),
            master_key_file: f.crypto.master_key_file,
            signing_key_file: f.crypto.signing_key_file,
            verifier_threads: ranged(
                "[crypto] threads",
                f.crypto.threads,
                DEFAULT_VERIFIER_THREADS,
                CRYPTO_THREADS,
            )?,
            auth_mode: f.auth.mode.unwrap_or_default(),
            hmac_key_file: f.auth.hmac_key_file,
            public_key_file: f.auth.public_key_file,
            clock_skew_s: ranged(
                "[auth] clock_skew_s",
                f.auth.clock_skew_s,
                DEFAULT_CLOCK_SKEW_S,
                CLOCK_SKEW_S,
            )?,
            audit: f.audit.enabled.unwrap_or(true),
            checkpoint_interval: secs(ranged(
                "[audit] checkpoint_interval_s",
                f.audit.checkpoint_interval_s,
                DEFAULT_CHECKPOINT_INTERVAL.as_secs(),
                CHECKPOINT_INTERVAL_S,
            )?),
            anchor_file: f.audit.anchor_file,
            events: f.events.resolve()?,
            advertise_url: f.cluster.advertise_url()?,
            cluster: f.cluster.resolve()?,
        })
    }
}

pub mod cluster;
pub mod events;
#[cfg(test)]
mod tests;
