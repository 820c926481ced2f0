//! The `coedit` binary: a real-time collaborative document server.
//!
//! # Layout
//! - `main.rs`: the command line and the wiring of actors and HTTP server.
//! - `config.rs`: defaults ← TOML file ← flags and `COEDIT_*` environment variables.
//! - `http.rs`: health, WebSocket and REST routes, and the JSON error mapping.

mod config;
mod http;

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use coedit_actors::registry::ShutdownAll;
use coedit_actors::store::check_document;
use coedit_actors::{MemoryStore, Registry, SledStore, Store, StoreActor};
use tracing::{info, warn};

use crate::config::{Backend, Config, FileConfig};
use crate::http::AppState;

/// Command line. Every flag has a `COEDIT_*` environment twin.
#[derive(Parser, Debug)]
#[command(
    name = "coedit",
    version,
    about = "Real-time collaborative document server"
)]
struct Cli {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, global = true, env = "COEDIT_BIND")]
    bind: Option<std::net::SocketAddr>,
    /// Directory for the server's data.
    #[arg(long, global = true, env = "COEDIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file for everything else.
    #[arg(long, global = true, env = "COEDIT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Verify a whole store offline (the server must not be running): every record's
    /// checksum, revisions without gaps, every op replaying, every snapshot equal to the
    /// replay. Exits non-zero on any fault.
    Check,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COEDIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let file = match &cli.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let config = Config::resolve(file, cli.bind, cli.data_dir)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Check => check(&config),
    }
}

/// `coedit check`: verifies every document in the data directory.
fn check(config: &Config) -> Result<()> {
    let store = SledStore::open(&config.data_dir)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let docs = store.documents()?;
    let mut faults = 0;
    for doc in &docs {
        match check_document(&store, doc) {
            Ok((ops, snapshots)) => println!("ok      {doc}: {ops} ops, {snapshots} snapshots"),
            Err(e) => {
                faults += 1;
                println!("FAULT   {e}");
            }
        }
    }
    println!("{} documents checked, {faults} faulty", docs.len());
    if faults > 0 {
        anyhow::bail!("{faults} of {} documents are faulty", docs.len());
    }
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM, then saves every open document.
fn serve(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // Every connection is a file descriptor: allow as many as the hard limit does.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(open_files = n, "file descriptor limit"),
        Err(e) => warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let system = actix::System::new();
    system.block_on(async move {
        let arbiters: Vec<Arbiter> = (0..config.doc_threads).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(|a| a.handle()).collect();
        let store: Arc<dyn Store> = match config.backend {
            Backend::Sled => Arc::new(SledStore::open(&config.data_dir).with_context(|| {
                format!("opening the store in {}", config.data_dir.display())
            })?),
            Backend::Memory => {
                warn!("storage is in memory: documents do not survive a restart");
                Arc::new(MemoryStore::new())
            }
        };
        let writer_thread = Arbiter::new();
        let writer = StoreActor::start_in_arbiter(&writer_thread.handle(), {
            let (store, durability) = (store.clone(), config.doc.durability);
            move |_| StoreActor::new(store, durability)
        });
        let registry = Registry::new(config.doc.clone(), store, writer, handles).start();
        let state = web::Data::new(AppState {
            registry: registry.clone(),
            session: config.session.clone(),
        });
        let max_body = config.session.max_frame_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .configure(http::routes)
        })
        .on_connect(disable_nagle)
        .workers(config.workers)
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .bind(config.bind)
        .with_context(|| format!("binding {}", config.bind))?;
        for addr in server.addrs() {
            info!(%addr, data_dir = %config.data_dir.display(), durability = ?config.doc.durability, "coedit listening");
            println!("coedit listening on {addr}");
        }
        let server = server.run();
        let handle = server.handle();
        let running = actix::spawn(server);
        let signal = shutdown_signal().await?;
        info!(signal, "shutting down: saving documents, telling clients to reconnect");
        handle.pause().await;
        let saved = match tokio::time::timeout(config.shutdown_timeout, registry.send(ShutdownAll))
            .await
        {
            Ok(Ok(saved)) => saved,
            Ok(Err(e)) => {
                warn!(error = %e, "registry gone at shutdown");
                0
            }
            Err(_) => {
                warn!(timeout = ?config.shutdown_timeout, "documents not all saved in time");
                0
            }
        };
        handle.stop(true).await;
        running
            .await
            .context("HTTP server task")?
            .context("running the HTTP server")?;
        info!(saved, "documents saved; exiting");
        for a in arbiters {
            a.stop();
        }
        writer_thread.stop();
        Ok(())
    })
}

/// Sends small frames at once: without `TCP_NODELAY`, Nagle's algorithm holds a small
/// WebSocket frame until the previous one is acknowledged, and delayed ACKs make that ~40 ms.
fn disable_nagle(conn: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Err(e) = tcp.set_nodelay(true) {
            warn!(error = %e, "cannot set TCP_NODELAY");
        }
    }
}

/// Waits for SIGINT or SIGTERM and names it.
async fn shutdown_signal() -> Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
