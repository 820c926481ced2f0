//! The `coedit` binary: a real-time collaborative document server.
//!
//! # Layout
//! - `main.rs`: the wiring of actors and HTTP server.
//! - `cli.rs`: the command line.
//! - `config.rs`: defaults ← TOML file ← flags and `COEDIT_*` environment variables.
//! - `http.rs`: health, WebSocket and REST routes, and the JSON error mapping.
//! - `yjs_http.rs`: the Yjs routes (y-websocket and Hocuspocus endpoints, state and updates).
//! - `admin.rs`: administrative routes (key rotation, the audit log of a running server).
//! - `events_http.rs`: the change-event admin routes (sinks, dead letters, replay, enable).
//! - `events_cli.rs`: `coedit events …`, the same calls from the command line.
//! - `security.rs`: keys from the configuration; `keygen`, `token`, `rotate-master-key`,
//!   `audit` subcommands.
//! - `recovery.rs`: `check` and `recover`, the offline store tools.
//! - `proxy.rs`: the client's address behind trusted reverse proxies.

mod admin;
mod cli;
mod config;
mod doc_list;
mod events_cli;
mod events_http;
mod forward;
mod http;
mod proxy;
mod query;
mod recovery;
mod security;
mod yjs_http;

use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use anyhow::{Context, Result};
use clap::Parser;
use coedit_actors::cluster::Cluster;
use coedit_actors::dispatcher::{Dispatcher, UseWriter};
use coedit_actors::errors::CLOSE_RESTART;
use coedit_actors::events::{outbox, sinks, EventType};
use coedit_actors::registry::ShutdownAll;
use coedit_actors::security::anchor::{self, AnchorLog};
use coedit_actors::security::audit::AuditEvent;
use coedit_actors::security::guard::Guard;
use coedit_actors::security::verifier::TokenVerifier;
use coedit_actors::session::CloseAll;
use coedit_actors::storage::disk::DiskSpace;
use coedit_actors::storage::js_kv::JetStreamStore;
use coedit_actors::storage::manifest::Manifest;
use coedit_actors::store_actor::{AppendAudit, EventsSetup, Ledger};
use coedit_actors::write_pool::WritePool;
use coedit_actors::{MemoryStore, Registry, SledStore, Store, StoreActor};
use tracing::{info, warn};

use crate::cli::{AuditCommand, Cli, Command, LogFormat, ServeArgs, TokenCommand};
use crate::config::events::EventsConfig;
use crate::config::{Backend, Config};
use crate::http::AppState;

/// Static (musl) builds allocate with mimalloc: musl's own malloc takes a global lock and is
/// several times slower for a server with many threads (measured in docs/PERFORMANCE.md).
#[cfg(all(target_env = "musl", not(feature = "musl-malloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Colours only for a person at a terminal, never in files, pipes or journald.
    let ansi = stderr_is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COEDIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args.store.resolve(args.bind)?),
        Command::Check(store) => recovery::check(&store.resolve(None)?),
        Command::Recover { accept_loss, store } => {
            recovery::recover(&store.resolve(None)?, accept_loss)
        }
        Command::Keygen { out } => security::keygen(&out),
        Command::Token {
            command:
                TokenCommand::Issue {
                    sub,
                    tenant,
                    grants,
                    ttl,
                    admin,
                    name,
                    color,
                    sm2_key,
                    hmac_key,
                },
        } => {
            let grants = grants
                .iter()
                .map(|g| security::parse_grant(g))
                .collect::<Result<Vec<_>>>()?;
            let req = security::TokenRequest {
                sub,
                tenant,
                grants,
                ttl_s: ttl,
                admin,
                name,
                color,
            };
            println!(
                "{}",
                security::issue_token(req, sm2_key.as_deref(), hmac_key.as_deref())?
            );
            Ok(())
        }
        Command::RotateMasterKey {
            key_file,
            url,
            token,
            store,
        } => {
            let online = url.as_deref().zip(token.as_deref());
            let data_dir = store.resolve(None)?.data_dir;
            let n = security::rotate_master_key(&key_file, online, &data_dir)?;
            println!("{n} data keys re-wrapped; old master key versions retired");
            Ok(())
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    pubkey,
                    anchor,
                    online,
                    store,
                },
        } => match online.url.as_deref().zip(online.token.as_deref()) {
            Some((url, token)) => security::audit_verify_online(url, token, pubkey.as_ref()),
            None => {
                let config = store.resolve(None)?;
                security::audit_verify(
                    &config.data_dir,
                    pubkey.as_ref(),
                    &anchor.unwrap_or_else(|| config.anchor_path()),
                )
            }
        },
        Command::Events { command } => events_cli::run(command),
        Command::Audit {
            command: AuditCommand::Export { out, online, store },
        } => {
            let n = match online.url.as_deref().zip(online.token.as_deref()) {
                Some((url, token)) => security::audit_export_online(url, token, out.as_ref())?,
                None => security::audit_export(&store.resolve(None)?.data_dir, out.as_ref())?,
            };
            eprintln!("{n} audit records exported");
            Ok(())
        }
    }
}

/// Runs the server until SIGINT or SIGTERM, then saves every open document.
fn serve(config: Config) -> Result<()> {
    config.check_exposure()?;
    config.check_cluster()?;
    let sled = config.backend == Backend::Sled;
    if sled {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    }
    // Every connection is a file descriptor: allow as many as the hard limit does.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(open_files = n, "file descriptor limit"),
        Err(e) => warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let system = actix::System::new();
    system.block_on(async move {
        let arbiters: Vec<Arbiter> = (0..config.doc_threads).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(|a| a.handle()).collect();
        let ring = security::master_ring(&config)?;
        let store: Arc<dyn Store> = match (config.backend, ring) {
            (Backend::Sled, ring) => Arc::new(
                SledStore::open_cached(&config.data_dir, ring, config.sled_cache_bytes)
                    .with_context(|| {
                    format!("opening the store in {}", config.data_dir.display())
                })?,
            ),
            (Backend::Jetstream, ring) => {
                let cluster = config.cluster.as_ref().context("[cluster] nats")?;
                info!(nats = ?cluster.urls, node = %cluster.node, "storage: NATS JetStream");
                Arc::new(
                    JetStreamStore::connect(cluster, ring)
                        .context("opening the store on NATS JetStream")?,
                )
            }
            (Backend::Memory, ring) => {
                warn!("storage is in memory: documents do not survive a restart");
                Arc::new(match ring {
                    Some(r) => MemoryStore::encrypted(r),
                    None => MemoryStore::new(),
                })
            }
        };
        let (manifest, disk) = if sled {
            let manifest = Manifest::open(&config.data_dir, &*store)?;
            spawn_loss_scan(manifest.clone(), store.clone());
            (manifest, DiskSpace::new(&config.data_dir, config.min_free_bytes))
        } else {
            (Manifest::disabled(), DiskSpace::unlimited())
        };
        let anchor_path = config.anchor_path();
        let (anchors, anchored) = if sled && config.audit {
            let last = anchor::read(&anchor_path)?.last().map_or(0, |a| a.seq);
            (AnchorLog::open(&anchor_path)?, last)
        } else {
            (AnchorLog::disabled(), 0)
        };
        let (close_all_tx, close_all) = CloseAll::channel();
        let signer = security::checkpoint_signer(&config)?;
        let tokens = security::token_key(&config)?;
        let auth = tokens.is_some();
        if !auth {
            warn!("AUTHENTICATION IS OFF: anyone who can reach this server can read, edit and delete every document ([auth] mode = \"none\"; for local trials only)");
        }
        if config.audit && signer.is_none() {
            warn!("audit checkpoints are not signed: set [crypto] signing_key_file to an SM2 key");
        }
        // Cluster mode: other nodes store and tell revisions of the same documents.
        let shared = config.backend == Backend::Jetstream;
        let events = start_events(&config.events, &store, shared)?;
        let crypto = WritePool::start(store.clone(), manifest.clone(), signer.clone());
        let verifier = TokenVerifier::start(config.verifier_threads, tokens);
        let checkpoints = signer.as_ref().map(|_| config.checkpoint_interval);
        let ledger = Ledger {
            manifest: manifest.clone(),
            anchors: Arc::new(anchors),
            disk: disk.clone(),
            close_all: Some(close_all_tx.clone()),
        };
        let writer_actor = StoreActor::new(
            store.clone(),
            config.doc.durability,
            crypto.clone(),
            config.audit,
            checkpoints,
            ledger,
            anchored,
        )
        .context("continuing the audit log")?
        .with_group_commit(config.group_commit);
        let (writer_actor, dispatcher) = match events {
            Some((dispatcher, setup)) => (writer_actor.with_events(setup), Some(dispatcher)),
            None => (writer_actor, None),
        };
        let writer_thread = Arbiter::new();
        let writer = StoreActor::start_in_arbiter(&writer_thread.handle(), move |_| writer_actor);
        if let Some(d) = &dispatcher {
            d.do_send(UseWriter(writer.clone()));
        }
        writer.do_send(AppendAudit(AuditEvent::ServerStart {
            version: env!("CARGO_PKG_VERSION").into(),
            encrypted: store.encrypted(),
            auth: format!("{:?}", config.auth_mode),
        }));
        let store_for_checks = store.clone();
        let (audit_store, audit_manifest) = (store.clone(), manifest.clone());
        let mut registry = Registry::new(config.doc.clone(), store, writer.clone(), handles)
            .with_ledger(manifest, disk)
            .with_yjs(config.yjs.clone());
        let mut cluster = None;
        if let (Backend::Jetstream, Some(c)) = (config.backend, &config.cluster) {
            let joined = Cluster::connect(c)
                .await
                .context("joining the cluster (NATS routing connection, lease bucket)")?;
            info!(node = %joined.node, lease = ?c.lease, renew = ?c.renew, "cluster mode: documents are ordered under leases");
            registry = registry.with_cluster(joined.clone());
            cluster = Some(joined);
        }
        let registry = registry.start();
        let accepting = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let state = web::Data::new(AppState {
            accepting: accepting.clone(),
            store: store_for_checks,
            registry: registry.clone(),
            session: config.session.clone(),
            guard: Guard::new(verifier, writer.clone(), auth, config.clock_skew_s),
            master_key_file: config.master_key_file.clone(),
            close_all,
            proxies: config.trusted_proxies.clone(),
            audit_check: admin::AuditCheck {
                store: audit_store,
                manifest: audit_manifest,
                anchor_path: anchor_path.clone(),
                verifier: signer.as_ref().map(|s| s.verifier()),
            },
            max_body: config.session.max_frame_bytes,
            max_update: config.yjs.max_update_bytes,
            history_reads: Arc::new(tokio::sync::Semaphore::new(http::HISTORY_READS_AT_ONCE)),
            dispatcher,
            clustered: cluster.is_some(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(forward::forward_to_owner))
                .configure(http::routes)
        })
        .on_connect(disable_nagle)
        .workers(config.workers)
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .bind(config.bind)
        .with_context(|| format!("binding {}", config.bind))?;
        let stop = shutdown_signal()?;
        for addr in server.addrs() {
            match config.backend {
                Backend::Sled => info!(%addr, data_dir = %config.data_dir.display(), durability = ?config.doc.durability, crypto = ?config.crypto_mode, auth = ?config.auth_mode, "coedit listening"),
                Backend::Jetstream => info!(%addr, storage = "NATS JetStream", durability = ?config.doc.durability, crypto = ?config.crypto_mode, auth = ?config.auth_mode, "coedit listening"),
                Backend::Memory => info!(%addr, storage = "memory (nothing survives a restart)", crypto = ?config.crypto_mode, auth = ?config.auth_mode, "coedit listening"),
            }
            println!("coedit listening on {addr}");
        }
        if let Some(c) = &cluster {
            advertise(c, config.advertise_url.clone(), &server.addrs());
        }
        let server = server.run();
        let handle = server.handle();
        let running = actix::spawn(server);
        let signal = stop.await;
        info!(signal, "shutting down: saving documents, telling clients to reconnect");
        accepting.store(false, std::sync::atomic::Ordering::SeqCst);
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
        // Sessions that joined no document were not closed by their documents.
        close_all_tx.close_all(
            CLOSE_RESTART,
            "server restarting: reconnect and rejoin with your revision",
        );
        handle.stop(true).await;
        running
            .await
            .context("HTTP server task")?
            .context("running the HTTP server")?;
        if config.backend == Backend::Memory {
            info!(documents = saved, "exiting; the memory backend keeps nothing");
        } else {
            info!(saved, "documents saved; exiting");
        }
        for a in arbiters {
            a.stop();
        }
        writer_thread.stop();
        Ok(())
    })
}

/// Opens the change-events outbox (telling what a crash left untold) and starts the
/// dispatcher, when a sink is configured; the store writer gets the returned setup.
fn start_events(
    config: &EventsConfig,
    store: &Arc<dyn Store>,
    shared: bool,
) -> Result<Option<(Addr<Dispatcher>, EventsSetup)>> {
    if config.sinks.is_empty() {
        return Ok(None);
    }
    let wanted = sinks::wanted(&config.sinks);
    let tell = wanted.contains(&EventType::Created) || wanted.contains(&EventType::Changed);
    let caught = outbox::catch_up(
        &**store,
        coedit_actors::security::audit::now_ms(),
        tell,
        shared,
    )
    .context("opening the change-events outbox")?;
    if !caught.recovered.is_empty() {
        info!(
            events = caught.recovered.len(),
            "document changes that were durable but not yet told at the last stop are told now"
        );
    }
    let dispatcher = Dispatcher::new(
        store.clone(),
        config.sinks.clone(),
        caught.state.last_seq,
        config.retain_events,
    )
    .context("reading what the event sinks have pending")?
    .start();
    let setup = EventsSetup {
        changed_interval: config.changed_interval,
        wanted,
        state: caught.state,
        dispatcher: dispatcher.clone().recipient(),
        shared,
    };
    Ok(Some((dispatcher, setup)))
}

/// Whether standard error is a terminal. Asked only of character devices: pipes and files
/// (journald, log collectors, CI) are never terminals, and that spares them the `isatty` ioctl,
/// which qemu-loongarch64 mis-emulates (the static LoongArch build crashed in it under qemu).
fn stderr_is_terminal() -> bool {
    let stderr = std::io::stderr();
    let char_device = rustix::fs::fstat(&stderr).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
    });
    char_device && std::io::IsTerminal::is_terminal(&stderr)
}

/// Compares every document the manifest knows with the store, in the background, and logs
/// each one that lost acknowledged revisions (each is also refused when opened).
fn spawn_loss_scan(manifest: Arc<Manifest>, store: Arc<dyn Store>) {
    std::thread::spawn(move || match manifest.losses(&*store) {
        Ok(losses) => {
            for l in losses {
                manifest.note_damaged(&l.doc);
                tracing::error!(
                    doc = %l.doc,
                    have = l.have,
                    expected = l.expected,
                    "document lost acknowledged revisions; it is refused until restored from a \
                     backup (or the loss is accepted with `coedit recover --accept-loss`)"
                );
            }
        }
        Err(e) => warn!(error = %e, "cannot compare the store with its manifest"),
    });
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
/// Installs the SIGTERM and SIGINT handlers (before the server says it is listening, so a
/// stop sent right after start is a clean shutdown, not a kill) and returns the future that
/// completes with the first signal's name.
fn shutdown_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Cluster mode: writes this node's HTTP address in the leases it takes, so other nodes can
/// forward REST calls for its documents (`forward.rs`): `[cluster] advertise_url`, else the
/// first bound address that is not a wildcard.
fn advertise(cluster: &Cluster, configured: Option<String>, bound: &[std::net::SocketAddr]) {
    let derived = configured.is_none();
    let url = configured.or_else(|| {
        bound
            .iter()
            .find(|a| !a.ip().is_unspecified())
            .map(|a| format!("http://{a}"))
    });
    if derived && bound.iter().all(|a| a.ip().is_loopback()) {
        warn!(
            "cluster: advertising a loopback address: only nodes on this machine can forward \
             REST calls to it; set [cluster] advertise_url on a multi-machine cluster"
        );
    }
    match url {
        Some(url) => {
            info!(%url, "cluster: other nodes forward REST calls for this node's documents here");
            cluster.leases.advertise(url);
        }
        None => warn!(
            "cluster: bound to a wildcard address and no [cluster] advertise_url: REST calls \
             for this node's documents that reach other nodes answer 503 naming this node"
        ),
    }
}
