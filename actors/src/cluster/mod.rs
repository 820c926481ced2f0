//! Cluster mode (`docs/CLUSTER.md`): several nodes on one NATS JetStream, any node serving any
//! document, one node at a time ordering each document's ops.
//!
//! # Layout
//! - [`lease`]: the lease bucket: who orders a document.
//! - [`wire`]: the messages nodes send each other.
//! - [`owner`]: an owning document actor's lease: renewal, step-down, release; finding a
//!   document's owner (or taking its lease) before a load.
//! - [`remote_doc`]: the `RemoteDoc` actor, a node's stand-in for a document another node
//!   owns: its sessions' joins, ops, presence and leaves (text), or sync, updates and
//!   awareness (Yjs, `remote_doc/yjs.rs`) go to the owner; the owner's frames come back
//!   through [`Cluster`]'s inbox.
//! - [`gateway`]: the owner's side: a document actor's subscription to its requests, and the
//!   `RemoteSink` actor standing in for a remote session in the document's subscriber table.
//! - This file: [`Cluster`], the node's NATS connection for routing: one ordered publisher
//!   (messages leave in the order they were handed over), the node's inbox
//!   (`{prefix}.node.{node}.>`: frames for its sessions, replies to its requests), subjects.
//!
//! Invariants:
//! - Everything a node publishes goes through one queue and one task, so two messages handed
//!   over in one order reach a subscriber in that order (NATS keeps a connection's order). The
//!   queue is bounded ([`PUBLISH_QUEUE`]): a message that does not fit is dropped, which the
//!   numbering turns into a resumed session, never into unbounded memory while NATS is away.
//! - A session's frames from an owner are delivered in sequence or the session is closed with
//!   1012 (the client resumes by revision): a lost NATS message never becomes a silent gap.

pub mod gateway;
pub mod lease;
pub mod owner;
pub mod remote_doc;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::frame::Frame;
use crate::outbox::Outbox;
use crate::storage::js_kv::JsConfig;

pub use lease::{Acquired, LeaseError, Leases};

/// Default lease time (`[cluster] lease_ms`).
pub const DEFAULT_LEASE: Duration = Duration::from_millis(5_000);
/// Default renewal interval (`[cluster] renew_ms`).
pub const DEFAULT_RENEW: Duration = Duration::from_millis(1_000);
/// How often a node tells an owner which of its sessions are still there.
pub const PING_INTERVAL: Duration = Duration::from_millis(1_000);
/// How long a node waits for an owner's answer to a ping or a join.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(2_000);
/// An owner drops a remote session its node has not mentioned for this long.
pub const REMOTE_SILENCE: Duration = Duration::from_millis(5_000);
/// Pause before asking again for a document whose owner did not answer (its lease has not
/// expired yet).
pub const OWNER_RETRY: Duration = Duration::from_millis(200);

/// Messages waiting for the publisher at most (beyond, new ones are dropped: see
/// `Cluster::enqueue`).
pub const PUBLISH_QUEUE: usize = 65_536;

/// Routing errors.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// NATS refused or did not answer.
    #[error("NATS: {0}")]
    Nats(String),
    /// The owner did not answer in time, or nobody serves the document's requests.
    #[error("the node owning the document did not answer")]
    NoOwner,
    /// A lease call failed.
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// A local session reached through an owner on another node.
struct Route {
    out: Outbox,
    /// Sequence number of the last frame message delivered.
    seq: u64,
}

/// This node's routing connection. See the module documentation.
pub struct Cluster {
    /// This node's id.
    pub node: Arc<str>,
    /// The lease bucket.
    pub leases: Leases,
    /// Lease time.
    pub lease: Duration,
    /// Renewal interval.
    pub renew: Duration,
    client: async_nats::Client,
    prefix: String,
    out: mpsc::Sender<Outgoing>,
    replies: Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, ClusterError>>>>,
    next_reply: AtomicU64,
    /// Joins of local sessions to documents owned elsewhere, by route id.
    routes: Mutex<HashMap<u64, Route>>,
    next_route: AtomicU64,
}

/// One message waiting in the ordered publisher.
struct Outgoing {
    subject: String,
    reply: Option<String>,
    payload: Bytes,
}

impl Cluster {
    /// Connects (a connection of its own, apart from the store's), opens the lease bucket,
    /// and starts the publisher and the inbox on the current runtime.
    pub async fn connect(cfg: &JsConfig) -> Result<Arc<Self>, ClusterError> {
        let access = crate::nats_client::NatsAccess {
            urls: cfg.urls.clone(),
            creds_file: cfg.creds_file.clone(),
            tls_ca_file: cfg.tls_ca_file.clone(),
        };
        let name = format!(
            "coedit/{} node {} routing",
            env!("CARGO_PKG_VERSION"),
            cfg.node
        );
        let client = crate::nats_client::connect(&access, &name, REQUEST_TIMEOUT * 5)
            .await
            .map_err(ClusterError::Nats)?;
        let js = jetstream::new(client.clone());
        let leases = Leases::open(&js, &cfg.prefix, &cfg.node, cfg.replicas, cfg.lease).await?;
        let prefix = cfg.prefix.clone();
        let inbox = client
            .subscribe(format!("{prefix}.node.{}.>", cfg.node))
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))?;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let cluster = Arc::new(Cluster {
            node: Arc::from(cfg.node.as_str()),
            leases,
            lease: cfg.lease,
            renew: cfg.renew,
            client: client.clone(),
            prefix,
            out: tx,
            replies: Mutex::new(HashMap::new()),
            next_reply: AtomicU64::new(1),
            routes: Mutex::new(HashMap::new()),
            next_route: AtomicU64::new(1),
        });
        tokio::spawn(publish_loop(client, rx));
        tokio::spawn(inbox_loop(Arc::downgrade(&cluster), inbox));
        Ok(cluster)
    }

    /// Whether the routing connection is up.
    pub fn connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    /// The subject of document `doc`'s requests.
    pub fn doc_subject(&self, doc: &str) -> String {
        format!("{}.doc.{}.req", self.prefix, hex::encode(doc.as_bytes()))
    }

    /// The subject of node `node`'s frames.
    fn frames_subject(&self, node: &str) -> String {
        format!("{}.node.{node}.f", self.prefix)
    }

    /// Subscribes to document `doc`'s requests (the owner, while it holds the lease).
    pub async fn subscribe_doc(&self, doc: &str) -> Result<async_nats::Subscriber, ClusterError> {
        self.client
            .subscribe(self.doc_subject(doc))
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))
    }

    /// Publishes, in order with everything else this node publishes.
    pub fn publish(&self, subject: String, payload: Vec<u8>) {
        self.enqueue(Outgoing {
            subject,
            reply: None,
            payload: payload.into(),
        });
    }

    /// Queues a message for the publisher. With [`PUBLISH_QUEUE`] messages waiting (NATS away
    /// or too slow) it is dropped: numbered messages then show a gap (the session is closed and
    /// resumes), requests time out; memory stays bounded.
    fn enqueue(&self, m: Outgoing) {
        if self.out.try_send(m).is_err() {
            debug!("cluster publish queue full: message dropped");
        }
    }

    /// Answers a request.
    pub fn answer(&self, reply: Option<async_nats::Subject>, payload: Vec<u8>) {
        if let Some(r) = reply {
            self.publish(r.to_string(), payload);
        }
    }

    /// Sends a request in order with everything else, now (it is queued before this returns,
    /// so a message handed over after this call leaves after it), and returns its answer.
    pub fn request(
        self: &Arc<Self>,
        subject: String,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Bytes, ClusterError>> + 'static {
        let id = self.next_reply.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut r) = self.replies.lock() {
            r.insert(id, tx);
        }
        self.enqueue(Outgoing {
            subject,
            reply: Some(format!("{}.node.{}.r.{id}", self.prefix, self.node)),
            payload: payload.into(),
        });
        let this = self.clone();
        async move {
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, rx).await;
            if let Ok(mut r) = this.replies.lock() {
                r.remove(&id);
            }
            match answer {
                Ok(Ok(a)) => a,
                _ => Err(ClusterError::NoOwner),
            }
        }
    }

    /// Sends frames to session `session` of node `node`.
    pub fn send_frames(&self, node: &str, session: u64, seq: u64, frames: &[Frame]) {
        let m = wire::ToSession {
            v: wire::WIRE_VERSION,
            session,
            seq,
            frames: frames.iter().map(wire::WireFrame::from).collect(),
        };
        self.publish(self.frames_subject(node), wire::encode(&m));
    }

    /// Routes frames from an owner to a local session's join of one document through `out`;
    /// the route's id names that join between the nodes.
    pub fn add_route(&self, out: Outbox) -> u64 {
        let id = self.next_route.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.routes.lock() {
            r.insert(id, Route { out, seq: 0 });
        }
        id
    }

    /// Stops routing to `route`.
    pub fn remove_route(&self, route: u64) {
        if let Ok(mut r) = self.routes.lock() {
            r.remove(&route);
        }
    }

    /// Delivers frames from an owner to a local session, in sequence, or closes it.
    fn deliver(&self, m: wire::ToSession) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let Some(route) = routes.get_mut(&m.session) else {
            return;
        };
        if m.seq != route.seq + 1 {
            warn!(
                session = m.session,
                expected = route.seq + 1,
                got = m.seq,
                "frames from the owner were lost: closing the session"
            );
            route.out.force(Frame::Close(
                crate::errors::CLOSE_RESTART,
                "messages between servers were lost: reconnect and resume".into(),
            ));
            routes.remove(&m.session);
            return;
        }
        route.seq = m.seq;
        let frames: Vec<Frame> = m.frames.into_iter().map(Frame::from).collect();
        if route.out.try_send_all(frames).is_err() {
            route.out.force(Frame::Close(
                crate::errors::CLOSE_TRY_AGAIN,
                "too slow: reconnect and resume".into(),
            ));
            routes.remove(&m.session);
        }
    }
}

/// Publishes everything handed over, in order.
async fn publish_loop(client: async_nats::Client, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(m) = rx.recv().await {
        let r = match m.reply {
            Some(reply) => client.publish_with_reply(m.subject, reply, m.payload).await,
            None => client.publish(m.subject, m.payload).await,
        };
        if let Err(e) = r {
            debug!(error = %e, "cluster publish failed");
        }
    }
}

/// Routes the node's inbox: frames to sessions, replies to requests.
async fn inbox_loop(cluster: std::sync::Weak<Cluster>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(c) = cluster.upgrade() else {
            return;
        };
        let tail = msg.subject.rsplit('.').next().unwrap_or("");
        if msg.subject.ends_with(".f") {
            match wire::decode::<wire::ToSession>(&msg.payload) {
                Some(m) if m.v == wire::WIRE_VERSION => c.deliver(m),
                _ => warn!("undecodable frames from another node"),
            }
        } else if let Ok(id) = tail.parse::<u64>() {
            let tx = c.replies.lock().ok().and_then(|mut r| r.remove(&id));
            if let Some(tx) = tx {
                let no_one = msg.status == Some(async_nats::StatusCode::NO_RESPONDERS);
                let _ = tx.send(if no_one {
                    Err(ClusterError::NoOwner)
                } else {
                    Ok(msg.payload)
                });
            }
        }
    }
}
