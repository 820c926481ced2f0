//! Leases (`docs/CLUSTER.md`, "Leases"): which node orders a document's ops. One key per
//! document in the `{prefix}_LEASES` key-value bucket, whose `max_age` is the lease time: a
//! lease the holder stops renewing disappears on the NATS server's clock, and the next node to
//! need the document creates it.
//!
//! Invariants:
//! - Acquiring is a `create` (refused if anyone holds the key); renewing and releasing carry
//!   the revision of the holder's last write (refused if anyone else wrote since). No node
//!   ever overwrites another live node's lease.
//! - A lease is a routing hint, not the safety: two nodes that both believe they own a
//!   document are kept apart by the store's conditional append (`storage::js_kv`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use coedit_protocol::DocKind;

/// What a lease key holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The node that orders the document.
    pub node: String,
    /// The document's kind (a node routing to the owner answers the right kind).
    pub kind: DocKind,
    /// The owner's advertised HTTP address (REST calls reaching another node are forwarded
    /// there); absent if it advertises none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The answer to [`Leases::acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// This node holds the lease; renew with this revision.
    Owned(u64),
    /// Another node holds it.
    Held(LeaseValue),
}

/// Lease calls that failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else wrote the key since our last write: the lease is lost.
    #[error("the lease of {0} was taken by another node")]
    Lost(String),
    /// NATS did not answer.
    #[error("NATS, lease of {doc}: {msg}")]
    Nats {
        /// The document.
        doc: String,
        /// What failed.
        msg: String,
    },
}

/// The lease bucket.
#[derive(Clone)]
pub struct Leases {
    bucket: kv::Store,
    node: String,
    /// This node's advertised HTTP address, once known (set after the listener binds).
    url: Arc<OnceLock<String>>,
}

impl Leases {
    /// Opens (or creates) `{prefix}_LEASES` with `lease` as its `max_age`. A bucket created
    /// with another lease time is an error: every node must use the same.
    pub async fn open(
        js: &jetstream::Context,
        prefix: &str,
        node: &str,
        replicas: usize,
        lease: Duration,
    ) -> Result<Self, LeaseError> {
        let name = format!("{prefix}_LEASES");
        let err = |msg: String| LeaseError::Nats {
            doc: String::new(),
            msg,
        };
        let bucket = match js.get_key_value(&name).await {
            Ok(b) => b,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    max_age: lease,
                    num_replicas: replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| err(format!("bucket {name}: {e}")))?,
        };
        let mut stream = js
            .get_stream(format!("KV_{name}"))
            .await
            .map_err(|e| err(format!("bucket {name}: {e}")))?;
        let info = stream
            .info()
            .await
            .map_err(|e| err(format!("bucket {name}: {e}")))?;
        if info.config.max_age != lease {
            return Err(err(format!(
                "bucket {name} was created with a lease of {:?}, this node is configured with \
                 {lease:?}: every node must use the same [cluster] lease_ms",
                info.config.max_age
            )));
        }
        Ok(Leases {
            bucket,
            node: node.to_string(),
            url: Arc::new(OnceLock::new()),
        })
    }

    /// Sets this node's advertised HTTP address (written in every lease it takes or renews
    /// from now on); the first call wins.
    pub fn advertise(&self, url: String) {
        let _ = self.url.set(url);
    }

    /// What this node writes in a lease of kind `kind`.
    fn value(&self, doc: &str, kind: DocKind) -> Result<Vec<u8>, LeaseError> {
        serde_json::to_vec(&LeaseValue {
            node: self.node.clone(),
            kind,
            url: self.url.get().cloned(),
        })
        .map_err(|e| Self::nats(doc, e))
    }

    fn key(doc: &str) -> String {
        format!("d.{}", hex::encode(doc.as_bytes()))
    }

    fn nats(doc: &str, e: impl std::fmt::Display) -> LeaseError {
        LeaseError::Nats {
            doc: doc.to_string(),
            msg: e.to_string(),
        }
    }

    /// Takes the lease of `doc` if nobody holds it (or this node's id does: a previous run of
    /// this node, which is gone), else says who does.
    pub async fn acquire(&self, doc: &str, kind: DocKind) -> Result<Acquired, LeaseError> {
        let key = Self::key(doc);
        let value = self.value(doc, kind)?;
        match self.bucket.create(&key, value.clone().into()).await {
            Ok(rev) => return Ok(Acquired::Owned(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(Self::nats(doc, e)),
        }
        let Some(entry) = self
            .bucket
            .entry(&key)
            .await
            .map_err(|e| Self::nats(doc, e))?
        else {
            // Expired between the two calls: try once more next time.
            return Err(Self::nats(doc, "lease changed while reading it"));
        };
        let held: LeaseValue = match serde_json::from_slice(&entry.value) {
            Ok(v) => v,
            Err(_) if entry.operation != kv::Operation::Put => {
                return Err(Self::nats(doc, "lease released while reading it"))
            }
            Err(e) => return Err(Self::nats(doc, e)),
        };
        if held.node != self.node {
            return Ok(Acquired::Held(held));
        }
        // Our own id: written by an earlier run of this node (this run's registry never asks
        // twice for a document it holds). Take it over, still conditionally.
        self.bucket
            .update(&key, value.into(), entry.revision)
            .await
            .map(Acquired::Owned)
            .map_err(|e| Self::nats(doc, e))
    }

    /// Renews the lease written at `revision`; the answer is the new revision.
    pub async fn renew(&self, doc: &str, kind: DocKind, revision: u64) -> Result<u64, LeaseError> {
        let value = self.value(doc, kind)?;
        match self
            .bucket
            .update(Self::key(doc), value.into(), revision)
            .await
        {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(LeaseError::Lost(doc.to_string()))
            }
            Err(e) => Err(Self::nats(doc, e)),
        }
    }

    /// Gives the lease up (others acquire at once instead of waiting for it to expire); does
    /// nothing if someone else holds it now.
    pub async fn release(&self, doc: &str, revision: u64) -> Result<(), LeaseError> {
        self.bucket
            .delete_expect_revision(Self::key(doc), Some(revision))
            .await
            .map_err(|e| Self::nats(doc, e))
    }
}
