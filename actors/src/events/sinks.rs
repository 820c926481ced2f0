//! Where events go: the sinks' configuration ([`Sink`]) and the blocking call that delivers
//! one event to a webhook ([`post_webhook`]), run on blocking threads, never on an actor's
//! (the JetStream sink's publish is asynchronous: `super::nats`).
//!
//! A webhook delivery is one HTTP POST of the event's JSON with the Standard Webhooks headers
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`), bounded by the sink's timeout
//! (connect, send and answer together); redirects are not followed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::retry::{parse_retry_after, Attempt, RetryPolicy};
use super::sign::{signature_header, Secret};
use super::{Event, EventType};

/// Default time allowed for one webhook delivery (connect, send, answer).
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deliveries in flight per sink (each to a different document: one document's events
/// go one at a time, in order).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Most bytes of a sink's answer read (the answer is not used; reading a little lets the
/// connection be reused).
pub const MAX_ANSWER_BYTES: u64 = 4096;

/// How a sink is reached.
#[derive(Clone, Debug)]
pub enum Target {
    /// An HTTP(S) endpoint.
    Webhook {
        /// The URL events are POSTed to.
        url: String,
        /// The signing secret.
        secret: Secret,
    },
    /// A NATS JetStream stream.
    Nats(Arc<super::nats::NatsTarget>),
}

impl Target {
    /// `webhook` or `jetstream`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::Nats(_) => "jetstream",
        }
    }
}

/// One sink: where, which events, how hard to try.
#[derive(Clone, Debug)]
pub struct Sink {
    /// Its name (metrics label, outbox keys, admin calls).
    pub name: String,
    /// Where.
    pub target: Target,
    /// The kinds it takes.
    pub events: HashSet<EventType>,
    /// The tenants it takes (`None`: all, and events without tenant).
    pub tenants: Option<HashSet<String>>,
    /// Time allowed per attempt.
    pub timeout: Duration,
    /// Deliveries in flight at once (different documents).
    pub max_in_flight: usize,
    /// The retry schedule.
    pub retry: RetryPolicy,
}

impl Sink {
    /// Whether `ev` goes to this sink.
    pub fn matches(&self, ev: &Event) -> bool {
        self.events.contains(&ev.kind)
            && match &self.tenants {
                None => true,
                Some(t) => ev.tenant.as_ref().is_some_and(|x| t.contains(x)),
            }
    }
}

/// The event kinds some sink takes: the others are not even recorded.
pub fn wanted(sinks: &[Arc<Sink>]) -> HashSet<EventType> {
    sinks
        .iter()
        .flat_map(|s| s.events.iter().copied())
        .collect()
}

/// An HTTP agent for one sink: its timeout, no redirects, statuses read as answers.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("coedit/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// POSTs `ev` to `url`, signed with `secret` at the current time. Blocking.
pub fn post_webhook(agent: &ureq::Agent, url: &str, secret: &Secret, ev: &Event) -> Attempt {
    let now = SystemTime::now();
    let ts = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let body = ev.json.as_bytes();
    let sig = signature_header(secret, &ev.id, ts, body);
    let sent = agent
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &ev.id)
        .header("webhook-timestamp", &ts.to_string())
        .header("webhook-signature", &sig)
        .send(body);
    match sent {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            let _ = resp
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_vec();
            Attempt::Status {
                status,
                retry_after,
            }
        }
        Err(e) => Attempt::Failed(e.to_string()),
    }
}
