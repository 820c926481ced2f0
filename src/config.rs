//! Server configuration: defaults, overridden by a TOML file, overridden by command-line flags
//! and their `COEDIT_*` environment twins.
//!
//! Every limit and timeout has a named default in the crate that enforces it; this file only
//! gathers them. Unknown keys in the file are an error, so a typo never passes silently.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use coedit_actors::crypto_actor::DEFAULT_CRYPTO_THREADS;
use coedit_actors::document::{DEFAULT_SNAPSHOT_EVERY, DEFAULT_SNAPSHOT_INTERVAL};
use coedit_actors::store::SLED_CACHE_BYTES;
use coedit_actors::store_actor::{DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_RELAXED_FLUSH_INTERVAL};
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
    /// Seconds without subscribers before a document unloads.
    pub idle_timeout_s: Option<u64>,
}

/// `[session]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// Seconds between server pings.
    pub heartbeat_interval_s: Option<u64>,
    /// Seconds of client silence before the session is closed.
    pub client_timeout_s: Option<u64>,
    /// Outbound mailbox bound, in frames.
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
}

/// `[storage]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `sled` (default) or `memory`.
    pub backend: Option<Backend>,
    /// `strict` (default) or `relaxed`.
    pub durability: Option<DurabilityMode>,
    /// Flush interval in relaxed mode, milliseconds.
    pub relaxed_flush_ms: Option<u64>,
    /// Ops between snapshots.
    pub snapshot_every_ops: Option<u64>,
    /// Seconds between snapshots of an active document.
    pub snapshot_interval_s: Option<u64>,
    /// Ops kept in the log before the latest snapshot (absent: the whole history).
    pub retain_ops: Option<u64>,
    /// sled's page cache, MiB.
    pub cache_mb: Option<u64>,
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
    /// Crypto threads.
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
}

/// `[audit]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Record the audit log (default: true).
    pub enabled: Option<bool>,
    /// Seconds between signed checkpoints (needs `[crypto] signing_key_file`).
    pub checkpoint_interval_s: Option<u64>,
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
    /// Time allowed for a graceful shutdown.
    pub shutdown_timeout: Duration,
    /// Storage backend.
    pub backend: Backend,
    /// sled's page cache, bytes.
    pub sled_cache_bytes: u64,
    /// Settings of document actors.
    pub doc: DocActorConfig,
    /// Settings of sessions.
    pub session: SessionConfig,
    /// Encryption at rest.
    pub crypto_mode: CryptoMode,
    /// Master key ring file.
    pub master_key_file: Option<PathBuf>,
    /// SM2 key signing audit checkpoints.
    pub signing_key_file: Option<PathBuf>,
    /// Crypto threads.
    pub crypto_threads: usize,
    /// Token checking.
    pub auth_mode: AuthMode,
    /// HMAC-SM3 secret file.
    pub hmac_key_file: Option<PathBuf>,
    /// Token issuer's SM2 public key.
    pub public_key_file: Option<PathBuf>,
    /// Whether the audit log is recorded.
    pub audit: bool,
    /// Interval between signed audit checkpoints.
    pub checkpoint_interval: Duration,
}

impl Config {
    /// Resolves defaults ← file ← flags.
    pub fn resolve(
        file: FileConfig,
        bind: Option<SocketAddr>,
        data_dir: Option<PathBuf>,
    ) -> Result<Config> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let d = DocActorConfig::default();
        let dc = DocumentConfig::default();
        let s = SessionConfig::default();
        let secs = Duration::from_secs;
        let f = file;
        let default_bind: SocketAddr = DEFAULT_BIND.parse()?;
        Ok(Config {
            bind: bind.or(f.server.bind).unwrap_or(default_bind),
            data_dir: data_dir
                .or(f.server.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            workers: f.server.workers.unwrap_or(cores).max(1),
            doc_threads: f.server.doc_threads.unwrap_or(cores).max(1),
            shutdown_timeout: f
                .server
                .shutdown_timeout_s
                .map_or(DEFAULT_SHUTDOWN_TIMEOUT, secs),
            backend: f.storage.backend.unwrap_or_default(),
            sled_cache_bytes: f
                .storage
                .cache_mb
                .map_or(SLED_CACHE_BYTES, |mb| mb.max(1).saturating_mul(1024 * 1024)),
            doc: DocActorConfig {
                durability: match f.storage.durability.unwrap_or_default() {
                    DurabilityMode::Strict => Durability::Strict,
                    DurabilityMode::Relaxed => Durability::Relaxed {
                        interval: f
                            .storage
                            .relaxed_flush_ms
                            .map_or(DEFAULT_RELAXED_FLUSH_INTERVAL, Duration::from_millis),
                    },
                },
                snapshot_every: f
                    .storage
                    .snapshot_every_ops
                    .unwrap_or(DEFAULT_SNAPSHOT_EVERY)
                    .max(1),
                snapshot_interval: f
                    .storage
                    .snapshot_interval_s
                    .map_or(DEFAULT_SNAPSHOT_INTERVAL, secs),
                retain_ops: f.storage.retain_ops,
                fanout_tick: f
                    .document
                    .fanout_tick_ms
                    .map_or(d.fanout_tick, Duration::from_millis),
                idle_timeout: f.document.idle_timeout_s.map_or(d.idle_timeout, secs),
                document: DocumentConfig {
                    history_window: f
                        .document
                        .history_window
                        .unwrap_or(dc.history_window)
                        .max(1),
                    max_chars: f.document.max_chars.unwrap_or(dc.max_chars),
                    max_clients: f.document.max_clients.unwrap_or(dc.max_clients),
                    rope_seed: None,
                },
            },
            session: SessionConfig {
                heartbeat_interval: f
                    .session
                    .heartbeat_interval_s
                    .map_or(s.heartbeat_interval, secs),
                client_timeout: f.session.client_timeout_s.map_or(s.client_timeout, secs),
                outbound_capacity: f.session.outbound_capacity.unwrap_or(s.outbound_capacity),
                max_outbound_bytes: f
                    .session
                    .max_outbound_bytes
                    .unwrap_or(s.max_outbound_bytes)
                    .max(1),
                max_docs: f.session.max_docs.unwrap_or(s.max_docs),
                max_frame_bytes: f.session.max_frame_bytes.unwrap_or(s.max_frame_bytes),
                max_connections: f.session.max_connections.unwrap_or(s.max_connections),
                max_ops_per_s: f.session.max_ops_per_s.unwrap_or(s.max_ops_per_s),
                op_burst: f.session.op_burst.unwrap_or(s.op_burst),
            },
            crypto_mode: f.crypto.mode.unwrap_or_default(),
            master_key_file: f.crypto.master_key_file,
            signing_key_file: f.crypto.signing_key_file,
            crypto_threads: f.crypto.threads.unwrap_or(DEFAULT_CRYPTO_THREADS).max(1),
            auth_mode: f.auth.mode.unwrap_or_default(),
            hmac_key_file: f.auth.hmac_key_file,
            public_key_file: f.auth.public_key_file,
            audit: f.audit.enabled.unwrap_or(true),
            checkpoint_interval: f
                .audit
                .checkpoint_interval_s
                .map_or(DEFAULT_CHECKPOINT_INTERVAL, secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let file: FileConfig =
            toml::from_str("[server]\nbind = \"127.0.0.1:9000\"\n[document]\nfanout_tick_ms = 0\n")
                .unwrap();
        let c = Config::resolve(file, None, Some("/tmp/x".into())).unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.doc.durability, Durability::Strict);
        assert_eq!(c.backend, Backend::Sled);
        let relaxed: FileConfig =
            toml::from_str("[storage]\ndurability = \"relaxed\"\nrelaxed_flush_ms = 50\n").unwrap();
        let r = Config::resolve(relaxed, None, None).unwrap();
        assert_eq!(
            r.doc.durability,
            Durability::Relaxed {
                interval: Duration::from_millis(50)
            }
        );
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert!(c.doc.fanout_tick.is_zero());
        let c = Config::resolve(
            FileConfig::default(),
            Some("127.0.0.1:1".parse().unwrap()),
            None,
        )
        .unwrap();
        assert_eq!(c.bind.port(), 1);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn storage_and_window_limits_resolve() {
        let c = Config::resolve(FileConfig::default(), None, None).unwrap();
        assert_eq!(c.sled_cache_bytes, SLED_CACHE_BYTES);
        let file: FileConfig =
            toml::from_str("[storage]\ncache_mb = 64\n[document]\nhistory_window = 0\n").unwrap();
        let c = Config::resolve(file, None, None).unwrap();
        assert_eq!(c.sled_cache_bytes, 64 * 1024 * 1024);
        assert_eq!(
            c.doc.document.history_window, 1,
            "a zero window counts as one op"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("[server]\nbnd = 1\n").is_err());
        assert!(toml::from_str::<FileConfig>("[nope]\n").is_err());
    }
}
