//! `[cluster]`: the NATS JetStream a node keeps its documents in, with `[storage] backend =
//! "jetstream"` (`docs/CLUSTER.md`). Checked when the configuration is read.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use coedit_actors::cluster::{DEFAULT_LEASE, DEFAULT_RENEW};
use coedit_actors::storage::js_kv::{JsConfig, DEFAULT_BUCKET_PREFIX};
use serde::Deserialize;

use super::ranged;

/// Default bucket replicas (a 3-server NATS cluster).
pub const DEFAULT_REPLICAS: usize = 3;
/// Bounds of `replicas`.
pub const REPLICAS: (usize, usize) = (1, 5);
/// Bounds of `lease_ms`.
pub const LEASE_MS: (u64, u64) = (1_000, 600_000);
/// Bounds of `renew_ms` (and at most half of `lease_ms`).
pub const RENEW_MS: (u64, u64) = (100, 300_000);

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
    /// How long a document's lease lasts without renewal, in milliseconds.
    pub lease_ms: Option<u64>,
    /// How often an owner renews its leases, in milliseconds (at most half of `lease_ms`).
    pub renew_ms: Option<u64>,
    /// The `http://host:port` or `https://…` other nodes forward REST calls for this node's
    /// documents to (default: the bound address, unless it is a wildcard).
    pub advertise_url: Option<String>,
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
    /// `advertise_url`, checked: an absolute `http` or `https` URL with a host and no path,
    /// query or credentials (it is prefixed to the forwarded request's path).
    pub fn advertise_url(&self) -> Result<Option<String>> {
        let Some(u) = &self.advertise_url else {
            return Ok(None);
        };
        let bad = || {
            anyhow::anyhow!(
                "configuration: [cluster] advertise_url {u:?}: an http:// or https:// URL with a \
                 host and port, nothing after them (for instance \"http://10.0.0.11:8080\")"
            )
        };
        let uri: ureq::http::Uri = u.parse().map_err(|_| bad())?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        let no_user = uri.authority().is_some_and(|a| !a.as_str().contains('@'));
        if !scheme_ok || uri.host().is_none() || !bare || !no_user {
            return Err(bad());
        }
        Ok(Some(u.trim_end_matches('/').to_string()))
    }

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
        let lease_ms = ranged(
            "[cluster] lease_ms",
            self.lease_ms,
            DEFAULT_LEASE.as_millis() as u64,
            LEASE_MS,
        )?;
        let renew_ms = ranged(
            "[cluster] renew_ms",
            self.renew_ms,
            DEFAULT_RENEW.as_millis() as u64,
            RENEW_MS,
        )?;
        if renew_ms * 2 > lease_ms {
            bail!(
                "configuration: [cluster] renew_ms = {renew_ms} must be at most half of lease_ms = \
                 {lease_ms} (an owner steps down after lease_ms - renew_ms without a renewal)"
            );
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
            lease: Duration::from_millis(lease_ms),
            renew: Duration::from_millis(renew_ms),
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
        let renew_too_slow = ClusterSection {
            nats: Some(vec!["nats://127.0.0.1:4222".into()]),
            lease_ms: Some(2_000),
            renew_ms: Some(1_500),
            ..ClusterSection::default()
        };
        assert!(renew_too_slow.resolve().is_err());
        assert_eq!(c.lease, DEFAULT_LEASE);
        assert!(ClusterSection::default().resolve().expect("none").is_none());
        let url = |u: &str| {
            ClusterSection {
                advertise_url: Some(u.into()),
                ..ClusterSection::default()
            }
            .advertise_url()
        };
        assert_eq!(
            url("http://10.0.0.11:8080/").expect("valid").as_deref(),
            Some("http://10.0.0.11:8080")
        );
        assert!(url("https://node-1.example:443").is_ok());
        for bad in [
            "10.0.0.11:8080",
            "ftp://h:1",
            "http://h:1/api",
            "http://u:p@h:1",
            "http://h:1/?x=1",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }
}
