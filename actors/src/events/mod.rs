//! Change events: what happened to documents, told to webhooks and (optionally) a NATS
//! JetStream stream, at least once, from the same durable pipeline as the edits.
//!
//! How an event is born and travels (see `docs/EVENTS.md`):
//! 1. The store actor hears an op is durable (its flush covered it) and notes it in the
//!    [`coalesce::Coalescer`]; ops that were never flushed are never noted, so no event ever
//!    describes an edit that is not durable.
//! 2. At most once per `changed_interval` per document the coalescer yields a change; the store
//!    actor gives it a sequence number and queues it as a write ([`outbox`]): the event record
//!    and the document's event cursor go into the `events` tree in the same batch.
//! 3. Once the flush covering that write returns, the store actor hands the event to the
//!    dispatcher (`crate::dispatcher`), which delivers it to every sink whose filter matches,
//!    in order per document, with retries ([`retry`]), signatures ([`sign`]) and dead letters.
//! 4. After a crash, changes that were durable but not yet evented are found at start-up by
//!    comparing each document's stored revision with its event cursor ([`outbox::catch_up`]).
//!
//! # Layout
//! - this file: the event types and their JSON schema ([`EventBody`], version
//!   [`EVENT_SCHEMA`]), [`EventsError`].
//! - [`coalesce`]: the pure coalescer (durable ops in, at most one change per interval out).
//! - [`outbox`]: the `events` tree: event records, cursors, delivery marks, dead letters,
//!   low-water marks, disabled endpoints; start-up catch-up.
//! - [`sign`]: Standard Webhooks signatures (HMAC-SHA256 `v1`, HMAC-SM3 `v1sm3`).
//! - [`retry`]: what a delivery attempt's outcome means and when to try again.
//! - [`schedule`]: one sink's pure delivery schedule (order per document, in-flight bound,
//!   retries, disabling, spilling to the outbox, the low-water mark).
//! - [`sinks`]: the sinks' configuration and the blocking HTTP POST that delivers one event to
//!   a webhook.
//! - [`nats`]: the NATS JetStream sink (connection, stream, subjects, publish).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod coalesce;
pub mod nats;
pub mod outbox;
pub mod retry;
pub mod schedule;
pub mod sign;
pub mod sinks;

/// Version of the event JSON (`"schema"` in every event). Additive changes keep it; a field
/// removed or changed in meaning raises it.
pub const EVENT_SCHEMA: u32 = 1;

/// Most authors listed in one `document.changed` (the rest are counted in `more_authors`).
pub const MAX_AUTHORS: usize = 32;

/// The kinds of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// A document's first revision became durable.
    #[serde(rename = "document.created")]
    Created,
    /// Revisions of a document became durable (coalesced: at most one per interval).
    #[serde(rename = "document.changed")]
    Changed,
    /// A document was deleted.
    #[serde(rename = "document.deleted")]
    Deleted,
    /// A session joined a document (opt-in).
    #[serde(rename = "session.joined")]
    SessionJoined,
    /// A session left a document (opt-in).
    #[serde(rename = "session.left")]
    SessionLeft,
    /// A request was refused by authentication or authorization (opt-in).
    #[serde(rename = "access.denied")]
    AccessDenied,
}

impl EventType {
    /// Every kind, in a fixed order.
    pub const ALL: [EventType; 6] = [
        EventType::Created,
        EventType::Changed,
        EventType::Deleted,
        EventType::SessionJoined,
        EventType::SessionLeft,
        EventType::AccessDenied,
    ];
    /// The kinds a sink gets when its filter names none.
    pub const DEFAULT: [EventType; 3] =
        [EventType::Created, EventType::Changed, EventType::Deleted];

    /// The name on the wire (`document.changed`…).
    pub fn name(self) -> &'static str {
        match self {
            EventType::Created => "document.created",
            EventType::Changed => "document.changed",
            EventType::Deleted => "document.deleted",
            EventType::SessionJoined => "session.joined",
            EventType::SessionLeft => "session.left",
            EventType::AccessDenied => "access.denied",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// A revision range, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revs {
    /// First revision covered.
    pub from: u64,
    /// Last revision covered.
    pub to: u64,
}

/// What an event is about (`data` in the JSON). Fields that do not apply to a kind are
/// omitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// The tenant (authentication on), or `null`.
    pub tenant: Option<String>,
    /// The document as clients name it (without the tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// `text` or `yjs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Revisions covered (changed: the new revisions; created: revision 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revs: Option<Revs>,
    /// Token subjects of the authors of those revisions (changed), at most [`MAX_AUTHORS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authors: Option<Vec<String>>,
    /// Authors not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_authors: u32,
    /// Who did it: the token subject (the last author of a change, the deleter, the session's
    /// subject, the refused subject), `null` when unknown (authentication off, recovered).
    pub actor: Option<String>,
    /// Found at start-up after a crash rather than seen as it happened (authors unknown).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
    /// The session (session events, refusals on a WebSocket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// The role the session's token grants (session.joined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What was refused (`join`, `op`, `GET /api/docs/…`; access.denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The protocol error code sent (access.denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Why (access.denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One event as POSTed and published: the JSON body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBody {
    /// [`EVENT_SCHEMA`].
    pub schema: u32,
    /// Unique and stable across redeliveries (also the `webhook-id` header and the NATS
    /// `Nats-Msg-Id`): deduplicate on it.
    pub id: String,
    /// The kind.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// What it is about.
    pub data: EventData,
}

/// An event in the outbox: its sequence number, what routing needs, and its JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the outbox (grows by one per event, never reused).
    pub seq: u64,
    /// The kind.
    pub kind: EventType,
    /// Storage id of the document (ordering key), if any.
    pub doc: Option<Arc<str>>,
    /// The tenant, if any.
    pub tenant: Option<String>,
    /// The id (as in the body).
    pub id: String,
    /// The JSON body, exactly as sent (signatures cover these bytes).
    pub json: Arc<str>,
}

impl Event {
    /// Builds an event: its id from the store's `prefix` and `seq`, the body's JSON.
    pub fn new(prefix: &str, seq: u64, kind: EventType, at_ms: u64, data: EventData) -> Event {
        let id = event_id(prefix, seq);
        let tenant = data.tenant.clone();
        let doc = storage_id(&data);
        let body = EventBody {
            schema: EVENT_SCHEMA,
            id: id.clone(),
            kind,
            timestamp: rfc3339_ms(at_ms),
            data,
        };
        let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
        Event {
            seq,
            kind,
            doc,
            tenant,
            id,
            json: Arc::from(json),
        }
    }

    /// Reads an event back from its JSON (the outbox's records).
    pub fn from_json(seq: u64, json: &str) -> Result<Event, EventsError> {
        let body: EventBody =
            serde_json::from_str(json).map_err(|e| EventsError::Record(e.to_string()))?;
        let doc = body
            .data
            .document
            .as_ref()
            .map(|d| match &body.data.tenant {
                Some(t) => Arc::from(format!("{t}:{d}")),
                None => Arc::from(d.as_str()),
            });
        Ok(Event {
            seq,
            kind: body.kind,
            doc,
            tenant: body.data.tenant,
            id: body.id,
            json: Arc::from(json),
        })
    }
}

/// The storage id of the document an event is about (`tenant:name`, or the name).
fn storage_id(data: &EventData) -> Option<Arc<str>> {
    data.document.as_ref().map(|d| match &data.tenant {
        Some(t) => Arc::from(format!("{t}:{d}")),
        None => Arc::from(d.as_str()),
    })
}

/// The id of event `seq` of a store whose outbox prefix is `prefix`.
pub fn event_id(prefix: &str, seq: u64) -> String {
    format!("evt_{prefix}_{seq:012}")
}

/// The tenant and the name of a storage id (`tenant:name`, or a name without tenant).
pub fn split_storage_id(doc: &str) -> (Option<String>, String) {
    match doc.split_once(':') {
        Some((t, n)) => (Some(t.to_string()), n.to_string()),
        None => (None, doc.to_string()),
    }
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// An events failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EventsError {
    /// An outbox record does not decode.
    #[error("event record: {0}")]
    Record(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    /// The configuration of a sink is not usable.
    #[error("events configuration: {0}")]
    Config(String),
}
