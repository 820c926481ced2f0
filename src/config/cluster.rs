//! `[cluster]`: the NATS JetStream a node keeps its documents in, with `[storage] backend =
//! "jetstream"` (`docs/CLUSTER.md`). Checked when the configuration is read.

use std::path::PathBuf;

use anyhow::{bail, Result};
use coedit_actors::storage::js_kv::{JsConfig, DEFAULT_BUCKET_PREFIX};
use serde::Deserialize;

use super::ranged;

/// Default bucket replicas (a 3-server NATS cluster).
pub const DEFAULT_REPLICAS: usize = 3;
/// Bounds of `replicas`.
pub const REPLICAS: (usize, usize) = (1, 5);

/// `[cluster]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// NATS server URLs.
    pub nats: Option<Vec<String>>,
    /// This node's id (default: the host name).
    pub node: Option<String>,
    /// Replicas of the buckets coedit creates.
    pub replicas: Option<usize>,
    /// Bucket name prefix (several coedit clusters on one NATS).
    pub bucket_prefix: Option<String>,
    /// NATS credentials file (`.creds`).
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) for TLS to NATS; TLS is required when given.
    pub tls_ca_file: Option<PathBuf>,
}

/// A node id or bucket prefix: `[A-Za-z0-9_-]`, 1 to 64.
fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A node id from a host name: `localhost.localdomain` → `localhost-localdomain` (characters
/// outside `[A-Za-z0-9_-]` become `-`, at most 64).
fn node_from_host(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}

impl ClusterSection {
    /// The connection settings, when `nats` is given (`None`: no cluster configured).
    pub fn resolve(self) -> Result<Option<JsConfig>> {
        let Some(urls) = self.nats else {
            return Ok(None);
        };
        if urls.is_empty() {
            bail!("configuration: [cluster] nats: list at least one nats:// URL");
        }
        for u in &urls {
            if u.parse::<async_nats::ServerAddr>().is_err() {
                bail!("configuration: [cluster] nats: {u:?} is not a NATS URL");
            }
        }
        let node = match self.node {
            Some(n) => n,
            None => node_from_host(&rustix::system::uname().nodename().to_string_lossy()),
        };
        if !name_ok(&node) {
            bail!("configuration: [cluster] node {node:?}: 1 to 64 of [A-Za-z0-9_-]");
        }
        let prefix = self
            .bucket_prefix
            .unwrap_or_else(|| DEFAULT_BUCKET_PREFIX.into());
        if !name_ok(&prefix) {
            bail!("configuration: [cluster] bucket_prefix {prefix:?}: 1 to 64 of [A-Za-z0-9_-]");
        }
        Ok(Some(JsConfig {
            urls,
            node,
            replicas: ranged(
                "[cluster] replicas",
                self.replicas,
                DEFAULT_REPLICAS,
                REPLICAS,
            )?,
            prefix,
            creds_file: self.creds_file,
            tls_ca_file: self.tls_ca_file,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_node_id_is_the_host_name_made_valid() {
        assert_eq!(
            node_from_host("localhost.localdomain"),
            "localhost-localdomain"
        );
        assert_eq!(node_from_host("kylin-01"), "kylin-01");
        assert!(name_ok(&node_from_host(&"h.".repeat(50))));
        let c = ClusterSection {
            nats: Some(vec!["nats://127.0.0.1:4222".into()]),
            ..ClusterSection::default()
        }
        .resolve()
        .expect("valid")
        .expect("a cluster");
        assert!(name_ok(&c.node), "{}", c.node);
        assert_eq!(c.replicas, DEFAULT_REPLICAS);
        let bad = ClusterSection {
            nats: Some(vec!["nats://127.0.0.1:4222".into()]),
            node: Some("a.b".into()),
            ..ClusterSection::default()
        };
        assert!(bad.resolve().is_err());
        assert!(ClusterSection::default().resolve().expect("none").is_none());
    }
}
