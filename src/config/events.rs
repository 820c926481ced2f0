//! `[events]` and `[[events.webhook]]`: change events and their sinks (see `docs/EVENTS.md`).
//! Every number is range-checked, every sink named once, every secret parsed, when the
//! configuration is read.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use coedit_actors::dispatcher::DEFAULT_RETAIN_EVENTS;
use coedit_actors::events::outbox::valid_sink_name;
use coedit_actors::events::retry::{
    RetryPolicy, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BASE, DEFAULT_RETRY_MAX,
};
use coedit_actors::events::sign::Secret;
use coedit_actors::events::sinks::{Sink, Target, DEFAULT_MAX_IN_FLIGHT, DEFAULT_WEBHOOK_TIMEOUT};
use coedit_actors::events::{nats, EventType};
use serde::Deserialize;

use super::ranged;

/// Default least time between two `document.changed` of one document.
pub const DEFAULT_CHANGED_INTERVAL: Duration = Duration::from_secs(1);

/// Bounds of the `[events]` numbers.
pub mod limits {
    /// `changed_interval_ms`.
    pub const CHANGED_INTERVAL_MS: (u64, u64) = (10, 3_600_000);
    /// `retain_events`.
    pub const RETAIN_EVENTS: (u64, u64) = (0, 100_000_000);
    /// `max_attempts`.
    pub const MAX_ATTEMPTS: (u32, u32) = (1, 100);
    /// `retry_base_ms`.
    pub const RETRY_BASE_MS: (u64, u64) = (10, 3_600_000);
    /// `retry_max_s`.
    pub const RETRY_MAX_S: (u64, u64) = (1, 86_400);
    /// A webhook's `timeout_ms`.
    pub const TIMEOUT_MS: (u64, u64) = (100, 120_000);
    /// A webhook's `max_in_flight`.
    pub const MAX_IN_FLIGHT: (usize, usize) = (1, 64);
    /// `nats_replicas`.
    pub const NATS_REPLICAS: (usize, usize) = (1, 5);
    /// `nats_max_age_s` (0: kept until removed by the operator).
    pub const NATS_MAX_AGE_S: (u64, u64) = (0, 10 * 365 * 86_400);
}

/// Parses a list of event type names (`None`: the document events).
fn event_types(key: &str, list: Option<Vec<String>>) -> Result<HashSet<EventType>> {
    let types = match list {
        None => EventType::DEFAULT.into_iter().collect(),
        Some(list) => list
            .iter()
            .map(|e| {
                EventType::parse(e).with_context(|| {
                    format!(
                        "configuration: {key}: unknown event type {e:?} (known: {})",
                        EventType::ALL.map(EventType::name).join(", ")
                    )
                })
            })
            .collect::<Result<HashSet<_>>>()?,
    };
    if types.is_empty() {
        bail!("configuration: {key}: events lists no type");
    }
    Ok(types)
}

/// A NATS stream name (one token) or subject prefix (dot-separated tokens) of
/// `[A-Za-z0-9_-]`.
fn nats_name(s: &str, dots: bool) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    s.len() <= 128 && (dots || !s.contains('.')) && s.split('.').all(token)
}

/// `[events]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// Least time between two `document.changed` of one document, ms.
    pub changed_interval_ms: Option<u64>,
    /// Events kept behind every sink for `events replay`.
    pub retain_events: Option<u64>,
    /// Attempts before an event is dead-lettered.
    pub max_attempts: Option<u32>,
    /// First retry delay, ms.
    pub retry_base_ms: Option<u64>,
    /// Longest retry delay, s.
    pub retry_max_s: Option<u64>,
    /// NATS server URLs: events are also published to a JetStream stream.
    pub nats: Option<Vec<String>>,
    /// The stream (created if missing).
    pub nats_stream: Option<String>,
    /// Subject prefix (`{prefix}.{tenant}.{document}`).
    pub nats_subject_prefix: Option<String>,
    /// Event types published (default: the document events).
    pub nats_events: Option<Vec<String>>,
    /// Tenants published (default: all).
    pub nats_tenants: Option<Vec<String>>,
    /// Replicas of the stream when coedit creates it.
    pub nats_replicas: Option<usize>,
    /// Age after which the stream drops events (when coedit creates it), s.
    pub nats_max_age_s: Option<u64>,
    /// Time allowed per publish (connect included), ms.
    pub nats_timeout_ms: Option<u64>,
    /// NATS credentials file (`.creds`).
    pub nats_creds_file: Option<PathBuf>,
    /// CA certificate (PEM) for TLS to NATS; TLS is required when given.
    pub nats_tls_ca_file: Option<PathBuf>,
    /// Webhook endpoints.
    #[serde(default)]
    pub webhook: Vec<WebhookSection>,
}

/// One `[[events.webhook]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Unique name (`[A-Za-z0-9_-]`, at most 64): metrics, admin calls, the outbox.
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Signing secret, `whsec_` + base64 (or `secret_file`).
    pub secret: Option<String>,
    /// File holding the signing secret.
    pub secret_file: Option<PathBuf>,
    /// Event types (default: `document.created`, `document.changed`, `document.deleted`).
    pub events: Option<Vec<String>>,
    /// Tenants (default: all).
    pub tenants: Option<Vec<String>>,
    /// Time allowed per attempt, ms.
    pub timeout_ms: Option<u64>,
    /// Deliveries in flight at once (to different documents).
    pub max_in_flight: Option<usize>,
}

/// The resolved `[events]`.
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// Least time between two `document.changed` of one document.
    pub changed_interval: Duration,
    /// Events kept behind every sink.
    pub retain_events: u64,
    /// The sinks (empty: change events are off).
    pub sinks: Vec<Arc<Sink>>,
}

impl EventsSection {
    /// Checks and resolves the section.
    pub fn resolve(self) -> Result<EventsConfig> {
        use limits::*;
        let changed_ms = ranged(
            "[events] changed_interval_ms",
            self.changed_interval_ms,
            DEFAULT_CHANGED_INTERVAL.as_millis() as u64,
            CHANGED_INTERVAL_MS,
        )?;
        let retry = RetryPolicy {
            max_attempts: ranged(
                "[events] max_attempts",
                self.max_attempts,
                DEFAULT_MAX_ATTEMPTS,
                MAX_ATTEMPTS,
            )?,
            base: Duration::from_millis(ranged(
                "[events] retry_base_ms",
                self.retry_base_ms,
                DEFAULT_RETRY_BASE.as_millis() as u64,
                RETRY_BASE_MS,
            )?),
            max_delay: Duration::from_secs(ranged(
                "[events] retry_max_s",
                self.retry_max_s,
                DEFAULT_RETRY_MAX.as_secs(),
                RETRY_MAX_S,
            )?),
        };
        let mut names = HashSet::new();
        let mut sinks = Vec::new();
        for w in self.webhook {
            let key = format!("[[events.webhook]] {:?}", w.name);
            if !valid_sink_name(&w.name) {
                bail!("configuration: {key}: a name is 1 to 64 of [A-Za-z0-9_-]");
            }
            if w.name == nats::SINK_NAME || !names.insert(w.name.clone()) {
                bail!("configuration: {key}: two sinks have this name");
            }
            let url = w.url.trim().to_string();
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.parse::<ureq::http::Uri>().is_err()
            {
                bail!("configuration: {key}: url {url:?} is not an http:// or https:// URL");
            }
            let secret_text = match (w.secret, &w.secret_file) {
                (Some(s), None) => s,
                (None, Some(f)) => std::fs::read_to_string(f)
                    .with_context(|| format!("{key}: reading secret_file {}", f.display()))?,
                _ => bail!("configuration: {key}: give one of secret and secret_file"),
            };
            let secret = Secret::parse(&secret_text).with_context(|| key.clone())?;
            let events = event_types(&key, w.events)?;
            let timeout = Duration::from_millis(ranged(
                &format!("{key} timeout_ms"),
                w.timeout_ms,
                DEFAULT_WEBHOOK_TIMEOUT.as_millis() as u64,
                TIMEOUT_MS,
            )?);
            let max_in_flight = ranged(
                &format!("{key} max_in_flight"),
                w.max_in_flight,
                DEFAULT_MAX_IN_FLIGHT,
                MAX_IN_FLIGHT,
            )?;
            sinks.push(Arc::new(Sink {
                name: w.name,
                target: Target::Webhook { url, secret },
                events,
                tenants: w.tenants.map(|t| t.into_iter().collect()),
                timeout,
                max_in_flight,
                retry,
            }));
        }
        if let Some(urls) = self.nats {
            let key = "[events] nats";
            if urls.is_empty() {
                bail!("configuration: {key}: list at least one nats:// URL");
            }
            for u in &urls {
                if u.parse::<async_nats::ServerAddr>().is_err() {
                    bail!("configuration: {key}: {u:?} is not a NATS URL");
                }
            }
            let stream = self
                .nats_stream
                .unwrap_or_else(|| nats::DEFAULT_STREAM.into());
            if !nats_name(&stream, false) {
                bail!("configuration: [events] nats_stream {stream:?}: one token of [A-Za-z0-9_-]");
            }
            let prefix = self
                .nats_subject_prefix
                .unwrap_or_else(|| nats::DEFAULT_SUBJECT_PREFIX.into());
            if !nats_name(&prefix, true) {
                bail!(
                    "configuration: [events] nats_subject_prefix {prefix:?}: dot-separated \
                     tokens of [A-Za-z0-9_-]"
                );
            }
            let mut target = nats::NatsTarget::new(urls, stream, prefix);
            target.replicas = ranged(
                "[events] nats_replicas",
                self.nats_replicas,
                1,
                NATS_REPLICAS,
            )?;
            target.max_age = Duration::from_secs(ranged(
                "[events] nats_max_age_s",
                self.nats_max_age_s,
                nats::DEFAULT_MAX_AGE.as_secs(),
                NATS_MAX_AGE_S,
            )?);
            target.creds_file = self.nats_creds_file;
            target.tls_ca_file = self.nats_tls_ca_file;
            sinks.push(Arc::new(Sink {
                name: nats::SINK_NAME.into(),
                target: Target::Nats(Arc::new(target)),
                events: event_types("[events] nats_events", self.nats_events)?,
                tenants: self.nats_tenants.map(|t| t.into_iter().collect()),
                timeout: Duration::from_millis(ranged(
                    "[events] nats_timeout_ms",
                    self.nats_timeout_ms,
                    DEFAULT_WEBHOOK_TIMEOUT.as_millis() as u64,
                    TIMEOUT_MS,
                )?),
                max_in_flight: MAX_IN_FLIGHT.1,
                retry,
            }));
        }
        Ok(EventsConfig {
            changed_interval: Duration::from_millis(changed_ms),
            retain_events: ranged(
                "[events] retain_events",
                self.retain_events,
                DEFAULT_RETAIN_EVENTS,
                RETAIN_EVENTS,
            )?,
            sinks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<EventsConfig> {
        let f: super::super::FileConfig = toml::from_str(toml_text)?;
        f.events.resolve()
    }

    #[test]
    fn a_webhook_resolves_with_defaults_and_filters() {
        let secret = Secret::generate();
        let c = parse(&format!(
            "[events]\nchanged_interval_ms = 250\n[[events.webhook]]\nname = \"search\"\nurl = \
             \"http://127.0.0.1:9/hook\"\nsecret = \"{secret}\"\n[[events.webhook]]\nname = \
             \"audit\"\nurl = \"https://example.com/x\"\nsecret = \"{secret}\"\nevents = \
             [\"session.joined\", \"access.denied\"]\ntenants = [\"acme\"]\ntimeout_ms = 500\n"
        ))
        .expect("valid");
        assert_eq!(c.changed_interval, Duration::from_millis(250));
        assert_eq!(c.sinks.len(), 2);
        assert_eq!(c.sinks[0].events, EventType::DEFAULT.into_iter().collect());
        assert_eq!(c.sinks[0].timeout, DEFAULT_WEBHOOK_TIMEOUT);
        assert!(c.sinks[1].events.contains(&EventType::AccessDenied));
        assert_eq!(c.sinks[1].timeout, Duration::from_millis(500));
        assert!(c.sinks[1]
            .tenants
            .as_ref()
            .is_some_and(|t| t.contains("acme")));
        assert!(parse("").expect("empty").sinks.is_empty());
    }

    #[test]
    fn bad_sinks_are_refused_with_their_key() {
        let secret = Secret::generate();
        let hook = |extra: &str| {
            format!("[[events.webhook]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n{extra}\n")
        };
        for (text, want) in [
            (hook(""), "give one of secret"),
            (hook("secret = \"nope\""), "whsec_"),
            (
                hook(&format!("secret = \"{secret}\"\nevents = [\"document.read\"]")),
                "unknown event type",
            ),
            (
                hook(&format!("secret = \"{secret}\"\ntimeout_ms = 5")),
                "out of range",
            ),
            (
                format!("{}{}", hook(&format!("secret = \"{secret}\"")), hook(&format!("secret = \"{secret}\""))),
                "two sinks",
            ),
            (
                format!("[[events.webhook]]\nname = \"a b\"\nurl = \"http://x/\"\nsecret = \"{secret}\"\n"),
                "a name is",
            ),
            (
                format!("[[events.webhook]]\nname = \"a\"\nurl = \"ftp://x/\"\nsecret = \"{secret}\"\n"),
                "not an http",
            ),
            ("[events]\nmax_attempts = 0\n".to_string(), "out of range"),
            (
                format!("[[events.webhook]]\nname = \"jetstream\"\nurl = \"http://x/\"\nsecret = \"{secret}\"\n"),
                "two sinks",
            ),
            ("[events]\nnats = []\n".to_string(), "at least one"),
            (
                "[events]\nnats = [\"nats://127.0.0.1:4222\"]\nnats_stream = \"a.b\"\n".to_string(),
                "one token",
            ),
            (
                "[events]\nnats = [\"nats://127.0.0.1:4222\"]\nnats_replicas = 7\n".to_string(),
                "out of range",
            ),
        ] {
            let e = format!("{:#}", parse(&text).expect_err(&text));
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
