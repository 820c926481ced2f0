//! The NATS JetStream sink: each event is published to a stream (created if missing) under a
//! subject per tenant and document, with `Nats-Msg-Id` = the event id so the stream drops
//! redeliveries inside its duplicate window. A publish counts as delivered once JetStream
//! acknowledges it (stored, on the stream's replicas as the stream is configured).
//!
//! Subjects: `{prefix}.{tenant}.{document}` (`_` for no tenant or no document); `.` in a name
//! (allowed in document ids, a separator in subjects) is written `~2E` and `~` is `~7E`.
//! Headers: `Nats-Msg-Id`, `Coedit-Event-Type`.
//!
//! The connection is made on first use and kept; a failure is a failed attempt like a webhook's
//! (retried with the same schedule), so coedit starts and edits go on while NATS is away.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio::sync::OnceCell;

use super::retry::Attempt;
use super::Event;
use crate::nats_client::{connect, NatsAccess};

/// Default stream name.
pub const DEFAULT_STREAM: &str = "COEDIT_EVENTS";
/// Default subject prefix.
pub const DEFAULT_SUBJECT_PREFIX: &str = "coedit.events";
/// Default age after which the stream drops events.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The stream's duplicate window (redeliveries within it are dropped by id).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// The sink name of the JetStream sink (metrics, outbox, admin calls).
pub const SINK_NAME: &str = "jetstream";

/// Where and how events are published.
pub struct NatsTarget {
    /// Server URLs.
    pub urls: Vec<String>,
    /// Stream name.
    pub stream: String,
    /// Subject prefix.
    pub prefix: String,
    /// Stream replicas (when coedit creates it).
    pub replicas: usize,
    /// Stream max age (when coedit creates it).
    pub max_age: Duration,
    /// NATS credentials file (`.creds`).
    pub creds_file: Option<PathBuf>,
    /// CA certificate file for TLS to NATS (TLS required when given).
    pub tls_ca_file: Option<PathBuf>,
    js: OnceCell<jetstream::Context>,
}

impl std::fmt::Debug for NatsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTarget")
            .field("urls", &self.urls)
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsTarget {
    /// A target (nothing connects yet).
    pub fn new(urls: Vec<String>, stream: String, prefix: String) -> Self {
        NatsTarget {
            urls,
            stream,
            prefix,
            replicas: 1,
            max_age: DEFAULT_MAX_AGE,
            creds_file: None,
            tls_ca_file: None,
            js: OnceCell::new(),
        }
    }

    async fn context(&self, timeout: Duration) -> Result<&jetstream::Context, String> {
        self.js
            .get_or_try_init(|| async {
                let access = NatsAccess {
                    urls: self.urls.clone(),
                    creds_file: self.creds_file.clone(),
                    tls_ca_file: self.tls_ca_file.clone(),
                };
                let name = concat!("coedit/", env!("CARGO_PKG_VERSION"), " events");
                let client = connect(&access, name, timeout).await?;
                let js = jetstream::new(client);
                js.get_or_create_stream(stream::Config {
                    name: self.stream.clone(),
                    subjects: vec![format!("{}.>", self.prefix)],
                    storage: stream::StorageType::File,
                    num_replicas: self.replicas,
                    max_age: self.max_age,
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("JetStream stream {}: {e}", self.stream))?;
                Ok(js)
            })
            .await
    }

    /// Publishes `ev` and waits for JetStream's acknowledgement, at most `timeout`.
    pub async fn publish(&self, ev: &Event, timeout: Duration) -> Attempt {
        let work = async {
            let js = self.context(timeout).await?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", ev.id.as_str());
            headers.insert("Coedit-Event-Type", ev.kind.name());
            let ack = js
                .publish_with_headers(
                    subject(&self.prefix, ev),
                    headers,
                    bytes::Bytes::copy_from_slice(ev.json.as_bytes()),
                )
                .await
                .map_err(|e| format!("publishing: {e}"))?;
            ack.await
                .map_err(|e| format!("JetStream acknowledgement: {e}"))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(_)) => Attempt::Status {
                status: 200,
                retry_after: None,
            },
            Ok(Err(e)) => Attempt::Failed(e),
            Err(_) => Attempt::Failed(format!("no JetStream acknowledgement within {timeout:?}")),
        }
    }
}

/// `.` and `~` escaped for a subject token.
fn token(s: &str) -> String {
    s.replace('~', "~7E").replace('.', "~2E")
}

/// The subject of `ev` under `prefix`.
pub fn subject(prefix: &str, ev: &Event) -> String {
    let tenant = ev.tenant.as_deref().map_or_else(|| "_".to_string(), token);
    let doc = match (&ev.doc, &ev.tenant) {
        (Some(d), Some(t)) => token(d.strip_prefix(&format!("{t}:")[..]).unwrap_or(d)),
        (Some(d), None) => token(d),
        (None, _) => "_".to_string(),
    };
    format!("{prefix}.{tenant}.{doc}")
}

#[cfg(test)]
mod tests {
    use super::super::{EventData, EventType};
    use super::*;

    #[test]
    fn subjects_name_tenant_and_document_escaped() {
        let ev = |tenant: Option<&str>, doc: Option<&str>| {
            Event::new(
                "p",
                1,
                EventType::Changed,
                0,
                EventData {
                    tenant: tenant.map(str::to_string),
                    document: doc.map(str::to_string),
                    ..EventData::default()
                },
            )
        };
        assert_eq!(
            subject("c.e", &ev(Some("acme"), Some("notes"))),
            "c.e.acme.notes"
        );
        assert_eq!(subject("c.e", &ev(None, Some("a.b~c"))), "c.e._.a~2Eb~7Ec");
        assert_eq!(subject("c.e", &ev(Some("t"), None)), "c.e.t._");
    }
}
