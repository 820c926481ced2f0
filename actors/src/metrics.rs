//! Process-wide metrics, rendered in the Prometheus/OpenMetrics text format at `GET /metrics`
//! (with the `prometheus-client` crate).
//!
//! Invariants:
//! - One registry per process ([`metrics`]); every metric is registered once, with a `coedit_`
//!   prefix, and only ever counted up (counters) or set/moved (gauges).
//! - Label values come from fixed sets (never from client input), so the number of series is
//!   bounded.

use std::sync::LazyLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label `state` of sessions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `connected` (before `hello`) or `ready`.
    pub state: &'static str,
}

/// Label `result` of submitted ops.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `applied`, `duplicate` or `refused`.
    pub result: &'static str,
}

/// Label `op` of crypto operations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CryptoLabel {
    /// `seal_record`, `audit_hash`, `checkpoint_sign`, `token_verify`.
    pub op: &'static str,
}

/// Label `code` of refusals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The protocol error code.
    pub code: u16,
}

/// Label `sink` of the change-event metrics (a name from the configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// The sink's configured name.
    pub sink: String,
}

/// Label `version` of the build info.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// The crate version.
    pub version: &'static str,
}

/// The standard `process_*` metrics, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
            let gauges = [
                (
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes",
                    (stat.rss * procfs::page_size()) as i64,
                ),
                (
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes",
                    stat.vsize as i64,
                ),
                ("process_threads", "Number of OS threads", stat.num_threads),
            ];
            for (name, help, value) in gauges {
                let g = ConstGauge::new(value);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = ConstGauge::new(boot as f64 + stat.starttime as f64 / ticks);
                start.encode(encoder.encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since the Unix epoch in seconds",
                    None,
                    start.metric_type(),
                )?)?;
            }
        }
        if let Ok(n) = me.fd_count() {
            let g = ConstGauge::new(n as i64);
            g.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors",
                None,
                g.metric_type(),
            )?)?;
        }
        if let Some(max) = me
            .limits()
            .ok()
            .and_then(|l| match l.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => Some(v),
                procfs::process::LimitValue::Unlimited => None,
            })
        {
            let g = ConstGauge::new(max as i64);
            g.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                g.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// WebSocket upgrades refused because `max_connections` was reached.
    pub refused_connections: Counter,
    /// Sessions by state.
    pub sessions: Family<StateLabel, Gauge>,
    /// Open document actors.
    pub open_documents: Gauge,
    /// Submitted ops by result.
    pub ops: Family<ResultLabel, Counter>,
    /// Time to transform and apply one op in its document.
    pub op_apply_seconds: Histogram,
    /// Ops refused by the per-session rate limit.
    pub rate_limited: Counter,
    /// `auth` messages refused by the per-session refresh limit.
    pub auth_rate_limited: Counter,
    /// Token checks refused because too many were waiting.
    pub token_checks_shed: Counter,
    /// Frames queued to sessions by document actors.
    pub fanout_frames: Counter,
    /// Bytes of those frames.
    pub fanout_bytes: Counter,
    /// Frames queued to sessions and not yet written by them.
    pub outbound_queue: Gauge,
    /// Payload bytes of those frames.
    pub outbound_queue_bytes: Gauge,
    /// Sessions disconnected because their outbound queue was full.
    pub slow_consumers: Counter,
    /// Duration of store flushes (fsync).
    pub store_flush_seconds: Histogram,
    /// Writes covered by one flush (group commit batch size).
    pub store_flush_batch: Histogram,
    /// Cryptographic operations by kind.
    pub crypto_ops: Family<CryptoLabel, Counter>,
    /// Authentication and authorization refusals by error code.
    pub auth_refusals: Family<CodeLabel, Counter>,
    /// Refusals counted in a summary audit record instead of recorded one by one.
    pub audit_refusals_counted: Counter,
    /// Connections closed at a frame header announcing more than the frame limit.
    pub oversized_frames: Counter,
    /// Connections closed before authenticating: over the pre-hello byte or time budget.
    pub unauthenticated_closes: Counter,
    /// Free bytes on the data directory's file system (last check).
    pub storage_free_bytes: Gauge,
    /// 1 while the store accepts writes, 0 while they are refused for lack of disk space.
    pub storage_writable: Gauge,
    /// Documents that lost acknowledged revisions (found at startup or when opened).
    pub damaged_documents: Gauge,
    /// 1, labelled with the build's version.
    pub build_info: Family<BuildLabel, Gauge>,
    /// Cluster mode: document actors that stopped ordering their document (lease lost, not
    /// renewed in time, or another node's write refused theirs).
    pub cluster_step_downs: Counter,
    /// Cluster mode: documents whose writes another node's refused (the fence).
    pub cluster_fenced: Counter,
    /// Cluster mode: leases taken.
    pub cluster_leases_taken: Counter,
    /// Change events taken by a sink and not yet settled.
    pub events_pending: Family<SinkLabel, Gauge>,
    /// Change events delivered, per sink.
    pub events_delivered: Family<SinkLabel, Counter>,
    /// Failed delivery attempts (each retry counts), per sink.
    pub events_failed: Family<SinkLabel, Counter>,
    /// Change events dead-lettered, per sink.
    pub events_dead: Family<SinkLabel, Counter>,
    /// 1 while a sink is disabled (it answered 410).
    pub events_disabled: Family<SinkLabel, Gauge>,
    /// Time from an event being durable to its delivery (every sink).
    pub events_latency: Histogram,
    /// Change events written to the outbox.
    pub events_written: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("coedit");
        let m = Metrics {
            connections: Gauge::default(),
            refused_connections: Counter::default(),
            sessions: Family::default(),
            open_documents: Gauge::default(),
            ops: Family::default(),
            op_apply_seconds: Histogram::new(exponential_buckets(1e-6, 4.0, 10)),
            rate_limited: Counter::default(),
            auth_rate_limited: Counter::default(),
            token_checks_shed: Counter::default(),
            fanout_frames: Counter::default(),
            fanout_bytes: Counter::default(),
            outbound_queue: Gauge::default(),
            outbound_queue_bytes: Gauge::default(),
            slow_consumers: Counter::default(),
            store_flush_seconds: Histogram::new(exponential_buckets(1e-4, 2.0, 14)),
            store_flush_batch: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            crypto_ops: Family::default(),
            auth_refusals: Family::default(),
            audit_refusals_counted: Counter::default(),
            oversized_frames: Counter::default(),
            unauthenticated_closes: Counter::default(),
            storage_free_bytes: Gauge::default(),
            storage_writable: Gauge::default(),
            damaged_documents: Gauge::default(),
            build_info: Family::default(),
            cluster_step_downs: Counter::default(),
            cluster_fenced: Counter::default(),
            cluster_leases_taken: Counter::default(),
            events_pending: Family::default(),
            events_delivered: Family::default(),
            events_failed: Family::default(),
            events_dead: Family::default(),
            events_disabled: Family::default(),
            events_latency: Histogram::new(exponential_buckets(1e-3, 2.0, 16)),
            events_written: Counter::default(),
            registry: Registry::default(),
        };
        m.storage_writable.set(1);
        m.build_info
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The build: its version (value always 1)",
            m.build_info.clone(),
        );
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register(
            "refused_connections",
            "WebSocket upgrades refused at max_connections",
            m.refused_connections.clone(),
        );
        registry.register("sessions", "Sessions by state", m.sessions.clone());
        registry.register(
            "open_documents",
            "Open document actors",
            m.open_documents.clone(),
        );
        registry.register("ops", "Submitted ops by result", m.ops.clone());
        registry.register(
            "op_apply_seconds",
            "Time to transform and apply one op",
            m.op_apply_seconds.clone(),
        );
        registry.register(
            "rate_limited_ops",
            "Ops refused by the per-session rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "rate_limited_auth",
            "auth messages refused by the per-session token refresh limit",
            m.auth_rate_limited.clone(),
        );
        registry.register(
            "token_checks_shed",
            "Token checks refused because too many were waiting for the verifier",
            m.token_checks_shed.clone(),
        );
        registry.register(
            "fanout_frames",
            "Frames queued to sessions",
            m.fanout_frames.clone(),
        );
        registry.register(
            "fanout_bytes",
            "Bytes queued to sessions",
            m.fanout_bytes.clone(),
        );
        registry.register(
            "outbound_queue_frames",
            "Frames queued to sessions, not yet written",
            m.outbound_queue.clone(),
        );
        registry.register(
            "outbound_queue_bytes",
            "Payload bytes of the frames queued to sessions, not yet written",
            m.outbound_queue_bytes.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Sessions closed with 1013 because their queue was full",
            m.slow_consumers.clone(),
        );
        registry.register(
            "store_flush_seconds",
            "Duration of store flushes",
            m.store_flush_seconds.clone(),
        );
        registry.register(
            "store_flush_batch_writes",
            "Writes covered by one flush",
            m.store_flush_batch.clone(),
        );
        registry.register(
            "crypto_operations",
            "Cryptographic operations",
            m.crypto_ops.clone(),
        );
        registry.register(
            "auth_refusals",
            "Authentication and authorization refusals by code",
            m.auth_refusals.clone(),
        );
        registry.register(
            "audit_refusals_counted",
            "Refusals counted in a summary audit record instead of recorded one by one",
            m.audit_refusals_counted.clone(),
        );
        registry.register(
            "oversized_frames",
            "Connections closed at a frame header announcing more than the frame limit",
            m.oversized_frames.clone(),
        );
        registry.register(
            "unauthenticated_closes",
            "Connections closed over the pre-hello byte or time budget",
            m.unauthenticated_closes.clone(),
        );
        registry.register(
            "storage_free_bytes",
            "Free bytes on the data directory's file system",
            m.storage_free_bytes.clone(),
        );
        registry.register(
            "storage_writable",
            "1 while the store accepts writes, 0 while refused for lack of disk space",
            m.storage_writable.clone(),
        );
        registry.register(
            "damaged_documents",
            "Documents that lost acknowledged revisions",
            m.damaged_documents.clone(),
        );
        registry.register(
            "events_pending",
            "Change events taken by a sink and not yet settled",
            m.events_pending.clone(),
        );
        registry.register(
            "cluster_step_downs",
            "Document actors that stopped ordering their document (lease lost or not renewed, or fenced)",
            m.cluster_step_downs.clone(),
        );
        registry.register(
            "cluster_fenced",
            "Documents whose writes another node's refused (the conditional append)",
            m.cluster_fenced.clone(),
        );
        registry.register(
            "cluster_leases_taken",
            "Document leases this node took",
            m.cluster_leases_taken.clone(),
        );
        registry.register(
            "events_delivered",
            "Change events delivered, per sink",
            m.events_delivered.clone(),
        );
        registry.register(
            "events_failed_attempts",
            "Failed change-event delivery attempts, per sink",
            m.events_failed.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Change events dead-lettered, per sink",
            m.events_dead.clone(),
        );
        registry.register(
            "events_sink_disabled",
            "1 while a sink is disabled (it answered 410 Gone)",
            m.events_disabled.clone(),
        );
        registry.register(
            "events_delivery_seconds",
            "Time from a change event being durable to its delivery",
            m.events_latency.clone(),
        );
        registry.register(
            "events_written",
            "Change events written to the outbox",
            m.events_written.clone(),
        );
        Metrics {
            registry: root,
            ..m
        }
    }

    /// Counts a crypto operation.
    pub fn crypto(&self, op: &'static str, n: u64) {
        self.crypto_ops.get_or_create(&CryptoLabel { op }).inc_by(n);
    }

    /// Counts a submitted op.
    pub fn op(&self, result: &'static str) {
        self.ops.get_or_create(&ResultLabel { result }).inc();
    }

    /// Moves one session from one state to another (`None`: not counted).
    pub fn session_state(&self, from: Option<&'static str>, to: Option<&'static str>) {
        if let Some(state) = from {
            self.sessions.get_or_create(&StateLabel { state }).dec();
        }
        if let Some(state) = to {
            self.sessions.get_or_create(&StateLabel { state }).inc();
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_the_text_format() {
        let m = metrics();
        m.op("applied");
        m.crypto("seal_record", 3);
        m.session_state(None, Some("ready"));
        let text = m.render();
        for want in [
            "# TYPE coedit_ops counter",
            "coedit_ops_total{result=\"applied\"}",
            "coedit_crypto_operations_total{op=\"seal_record\"}",
            "coedit_sessions{state=\"ready\"}",
            "# TYPE coedit_store_flush_seconds histogram",
            "coedit_build_info{version=\"",
            "# TYPE process_cpu_seconds counter",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
