//! `coedit-loadtest`: the command line over the `coedit_loadtest` library: load generation
//! against a server, trace replay, storage benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use coedit_loadtest::{baseline, engine, net_replay, open_storm, run, trace, yjs_run};

/// Default number of timed runs per trace; the median is reported.
const DEFAULT_RUNS: usize = 5;

#[derive(Parser)]
#[command(
    name = "coedit-loadtest",
    version,
    about = "Load generator and trace replay for coedit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open real WebSocket clients against a server and measure latency and convergence.
    Run(RunArgs),
    /// Serve the bare broadcast baseline (same stack, no OT, storage or crypto).
    BaselineServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090", env = "COEDIT_BASELINE_BIND")]
        bind: std::net::SocketAddr,
    },
    /// Replay editing traces and check the final text against `endContent`.
    Replay {
        /// Replay through the document core in this process (no server), timing it against the
        /// bare rope.
        #[arg(long, env = "COEDIT_LOADTEST_ENGINE", conflicts_with = "url")]
        engine: bool,
        /// Replay through the server at this WebSocket URL, one new document per trace.
        #[arg(long, env = "COEDIT_LOADTEST_URL")]
        url: Option<String>,
        /// Timed runs per trace (median reported).
        #[arg(long, default_value_t = DEFAULT_RUNS, env = "COEDIT_LOADTEST_RUNS")]
        runs: usize,
        /// Trace files (`.json.gz`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Many documents opened at once, as when every client reconnects after a restart.
    OpenStorm {
        /// Server WebSocket URL.
        #[arg(
            long,
            default_value = "ws://127.0.0.1:8080/ws",
            env = "COEDIT_LOADTEST_URL"
        )]
        url: String,
        /// Documents (one connection each).
        #[arg(long, default_value_t = 2000, env = "COEDIT_LOADTEST_DOCS")]
        docs: usize,
        /// Document id prefix.
        #[arg(long, default_value = "storm-", env = "COEDIT_LOADTEST_PREFIX")]
        prefix: String,
        /// Ops to write into each document after joining (to fill a store for a later run).
        #[arg(long, default_value_t = 0, env = "COEDIT_LOADTEST_OPS")]
        ops: u64,
    },
}

/// The kind of document `run` edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// Plain text with OT (`/ws`).
    Text,
    /// Yjs documents over the Hocuspocus protocol (`/hocuspocus`), typing into `Y.Text`
    /// "text".
    Yjs,
}

/// Flags of `run`.
#[derive(clap::Args)]
struct RunArgs {
    /// Document kind: `text` (give the `/ws` URL) or `yjs` (give the `/hocuspocus` URL).
    #[arg(long, value_enum, default_value_t = Kind::Text, env = "COEDIT_LOADTEST_KIND")]
    kind: Kind,
    /// Server WebSocket URL; repeat (or separate with commas) for a cluster's nodes: clients
    /// are spread over them, and one that is disconnected reconnects to the next.
    #[arg(
        long,
        default_value = "ws://127.0.0.1:8080/ws",
        env = "COEDIT_LOADTEST_URL",
        value_delimiter = ','
    )]
    url: Vec<String>,
    /// Number of clients.
    #[arg(long, default_value_t = 50, env = "COEDIT_LOADTEST_CLIENTS")]
    clients: usize,
    /// Number of documents the clients are spread over.
    #[arg(long, default_value_t = 5, env = "COEDIT_LOADTEST_DOCS")]
    docs: usize,
    /// Put every client on one document.
    #[arg(long, env = "COEDIT_LOADTEST_HOT")]
    hot: bool,
    /// Edits per second per client.
    #[arg(long, default_value_t = 5.0, env = "COEDIT_LOADTEST_RATE")]
    rate: f64,
    /// Presence updates per second per client.
    #[arg(long, default_value_t = 1.0, env = "COEDIT_LOADTEST_PRESENCE_RATE")]
    presence_rate: f64,
    /// Seconds over which clients connect.
    #[arg(long, default_value_t = 2.0, env = "COEDIT_LOADTEST_RAMP")]
    ramp: f64,
    /// Seconds of typing after the ramp.
    #[arg(long, default_value_t = 10.0, env = "COEDIT_LOADTEST_DURATION")]
    duration: f64,
    /// Only this many clients keep full replicas (and are checked); the others track length.
    #[arg(long, env = "COEDIT_LOADTEST_FULL")]
    full: Option<usize>,
    /// The server's process id (found from the port when the server is local).
    #[arg(long, env = "COEDIT_LOADTEST_SERVER_PID")]
    server_pid: Option<i32>,
    /// Errors tolerated before the run fails.
    #[arg(long, default_value_t = 0, env = "COEDIT_LOADTEST_MAX_ERRORS")]
    max_errors: u64,
    /// Hard bound on the whole run, seconds (default: ramp + duration + 120).
    #[arg(long, env = "COEDIT_LOADTEST_TIMEOUT")]
    timeout: Option<f64>,
    /// Prefix of document ids (default `load-` for text, `yload-` for Yjs: a document's kind
    /// is fixed when it is created).
    #[arg(long, env = "COEDIT_LOADTEST_DOC_PREFIX")]
    doc_prefix: Option<String>,
    /// Seed of the clients' random choices (printed; random when absent).
    #[arg(long, env = "SEED")]
    seed: Option<u64>,
    /// The server is `baseline-server`: do not apply remote ops or check convergence.
    #[arg(long, env = "COEDIT_LOADTEST_BASELINE")]
    baseline: bool,
    /// Access token for servers with authentication on (text: sent in `hello`; Yjs: in each
    /// channel's `Auth`; and on REST reads).
    #[arg(long, env = "COEDIT_LOADTEST_TOKEN")]
    token: Option<String>,
    /// Write the JSON report here.
    #[arg(long, env = "COEDIT_LOADTEST_JSON")]
    json: Option<PathBuf>,
    /// Write an SVG plot of latency percentiles over time here.
    #[arg(long, env = "COEDIT_LOADTEST_PLOT")]
    plot: Option<PathBuf>,
}

/// Slack added to ramp + duration for the hard time bound, seconds.
const DEFAULT_TIMEOUT_SLACK_S: f64 = 120.0;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command; `Ok(false)` when a check failed.
fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Run(a) => run_load(a),
        Command::BaselineServer { bind } => baseline::serve(bind).map(|()| true),
        Command::Replay {
            engine,
            url,
            runs,
            files,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let nonce: u32 = rand::random();
            let mut all_match = true;
            for f in &files {
                let name = trace::Trace::name(f);
                let t = trace::Trace::load(f)?;
                let (matches, line) = match (&url, engine) {
                    (_, true) => {
                        let r = engine::replay(&name, &t, runs)?;
                        (r.matches_end, serde_json::to_string(&r)?)
                    }
                    (Some(url), false) => {
                        let doc = format!("replay-{name}-{nonce:08x}");
                        let r = if t.is_concurrent() {
                            rt.block_on(net_replay::replay_concurrent(url, &doc, &name, &t))?
                        } else {
                            rt.block_on(net_replay::replay_sequential(url, &doc, &name, &t))?
                        };
                        (r.matches_end, serde_json::to_string(&r)?)
                    }
                    (None, false) => anyhow::bail!("give --engine or --url"),
                };
                all_match &= matches;
                println!("{line}");
            }
            Ok(all_match)
        }
        Command::OpenStorm {
            url,
            docs,
            prefix,
            ops,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = rt.block_on(open_storm::run(&url, docs, &prefix, ops))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(true)
        }
    }
}

/// `run`: drives the load, prints the summary, writes the report and plot.
fn run_load(a: RunArgs) -> Result<bool> {
    let seed = a.seed.unwrap_or_else(rand::random);
    let limit = a
        .timeout
        .unwrap_or(a.ramp + a.duration + DEFAULT_TIMEOUT_SLACK_S);
    let cfg = run::RunConfig {
        urls: a.url,
        clients: a.clients,
        docs: a.docs,
        hot: a.hot,
        rate: a.rate,
        presence_rate: a.presence_rate,
        ramp: Duration::from_secs_f64(a.ramp),
        duration: Duration::from_secs_f64(a.duration),
        full: a.full,
        server_pid: a.server_pid,
        doc_prefix: a.doc_prefix.unwrap_or_else(|| {
            match a.kind {
                Kind::Text => "load-",
                Kind::Yjs => "yload-",
            }
            .to_string()
        }),
        seed,
        baseline: a.baseline,
        token: a.token,
    };
    eprintln!("SEED={seed}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let load = async {
            match a.kind {
                Kind::Text => run::run(cfg).await,
                Kind::Yjs => yjs_run::run(cfg).await,
            }
        };
        tokio::time::timeout(Duration::from_secs_f64(limit), load).await
    });
    let report = match report {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the run exceeded its time bound of {limit} s"),
    };
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
    println!(
        "{} clients, {} {} docs, {:.0} s: {} edits typed, {} {} acked ({:.0}/s), errors {}, reconnects {}, converged {}",
        report.clients,
        report.docs,
        report.kind,
        report.duration_s,
        report.edits_typed,
        report.ops_acked,
        if report.kind == "yjs" { "updates" } else { "ops" },
        report.ops_per_s,
        report.errors,
        report.reconnects,
        report.converged
    );
    for (name, p) in [
        ("op → ack", &report.ack_ms),
        ("op → visible", &report.visible_ms),
    ] {
        println!(
            "{name:>13} ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            p.p50, p.p90, p.p99, p.p999, p.max
        );
    }
    println!(
        "server: cpu {}% ({} ms/edit), rss {} MB; load generator: cpu {}%, bound {:?}",
        opt(report.server_cpu_pct),
        report
            .server_cpu_ms_per_edit
            .map_or("n/a".to_string(), |v| format!("{v:.3}")),
        opt(report.server_rss_mb),
        opt(report.loadgen_cpu_pct),
        report.loadgen_bound
    );
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(path) = &a.plot {
        std::fs::write(path, run::plot_svg(&report))?;
    }
    if !report.convergence_checked {
        println!("convergence not checked (baseline server)");
    }
    Ok(report.converged && report.errors <= a.max_errors)
}
