//! `coedit-loadtest`: replays editing traces and (with the server) generates load.
//!
//! # Layout
//! - `trace`: loading sequential and concurrent traces.
//! - `engine`: `replay --engine`, the document core against a bare rope.
//! - `open_bench`: `open-bench`, the time to open a document with a long op log.

mod engine;
mod open_bench;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    /// Replay editing traces and check the final text against `endContent`.
    Replay {
        /// Replay through the document core in this process (no server), timing it against the
        /// bare rope.
        #[arg(long, env = "COEDIT_LOADTEST_ENGINE")]
        engine: bool,
        /// Timed runs per trace (median reported).
        #[arg(long, default_value_t = DEFAULT_RUNS, env = "COEDIT_LOADTEST_RUNS")]
        runs: usize,
        /// Trace files (`.json.gz`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Time to open a document whose log holds many ops (sled store in a temp directory).
    OpenBench {
        /// Ops in the log.
        #[arg(long, default_value_t = 100_000, env = "COEDIT_LOADTEST_OPS")]
        ops: u64,
        /// Snapshot every this many ops (0: none; the whole log is replayed).
        #[arg(long, default_value_t = 1000, env = "COEDIT_LOADTEST_SNAPSHOT_EVERY")]
        snapshot_every: u64,
        /// Timed opens (median reported).
        #[arg(long, default_value_t = DEFAULT_RUNS, env = "COEDIT_LOADTEST_RUNS")]
        runs: usize,
    },
}

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
        Command::Replay {
            engine,
            runs,
            files,
        } => {
            if !engine {
                anyhow::bail!("replay over the network (--url) is not available yet; use --engine");
            }
            let mut all_match = true;
            for f in &files {
                let name = trace::Trace::name(f);
                let t = trace::Trace::load(f)?;
                let report = engine::replay(&name, &t, runs)?;
                all_match &= report.matches_end;
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(all_match)
        }
        Command::OpenBench {
            ops,
            snapshot_every,
            runs,
        } => {
            let report = open_bench::run(ops, snapshot_every, runs)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(true)
        }
    }
}
