//! coedit's load generator and trace replay, as a library (used by the `coedit-loadtest`
//! binary and by the server's integration tests).
//!
//! # Layout
//! - [`trace`]: loading sequential and concurrent editing traces.
//! - [`baseline`]: `baseline-server`, a bare broadcast server on the same stack (the ceiling).
//! - [`engine`]: `replay --engine`, the document core against a bare rope.
//! - [`net_replay`]: `replay --url`, a trace typed through a real server.
//! - [`open_storm`]: `open-storm`, many documents opened at once (a mass reconnect).
//! - [`run`]: `run`, real OT clients over WebSocket against text documents.
//! - [`yjs_run`]: `run --kind yjs`, real Yjs clients over the Hocuspocus protocol.
//! - [`harness`]: what both runs share: the timeline (ramp, stop, drain), latency histograms,
//!   server CPU and memory, the convergence check, the report.
//! - [`procstat`]: CPU and memory of local processes from /proc.

pub mod baseline;
pub mod engine;
pub mod harness;
pub mod net_replay;
pub mod open_storm;
pub mod procstat;
pub mod run;
pub mod trace;
pub mod yjs_run;
