//! The command line (clap derive). Every flag has a `COEDIT_*` environment twin; each
//! subcommand takes only the flags it uses (`keygen` knows nothing of the server's address).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::{Config, FileConfig};

/// Command line. Every flag has a `COEDIT_*` environment twin.
#[derive(Parser, Debug)]
#[command(
    name = "coedit",
    version,
    about = "Real-time collaborative document server"
)]
pub struct Cli {
    /// Log format on standard error: `text` or `json` (one JSON object per line).
    #[arg(long, global = true, env = "COEDIT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the store is and how it is configured (the commands that open it).
#[derive(clap::Args, Debug, Default)]
pub struct StoreArgs {
    /// Directory for the server's data.
    #[arg(long, env = "COEDIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file for everything else.
    #[arg(long, env = "COEDIT_CONFIG")]
    pub config: Option<PathBuf>,
}

impl StoreArgs {
    /// The configuration: defaults ← the TOML file ← these flags (and `bind`).
    pub fn resolve(&self, bind: Option<SocketAddr>) -> Result<Config> {
        let file = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Config::resolve(file, bind, self.data_dir.clone())
    }
}

/// `coedit serve`.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, env = "COEDIT_BIND")]
    pub bind: Option<SocketAddr>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Verify a whole store offline (the server must not be running): every record's
    /// checksum, revisions without gaps, every op replaying, every snapshot equal to the
    /// replay, and nothing acknowledged missing (the manifest and the audit anchors). Exits
    /// non-zero on any fault.
    Check(StoreArgs),
    /// After damage: report what was lost; with --accept-loss, accept the store as it is
    /// (record the loss in the audit chain, write a new manifest). Offline.
    Recover {
        /// Accept the loss and write.
        #[arg(long, env = "COEDIT_ACCEPT_LOSS")]
        accept_loss: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create a master key ring, an SM2 key pair and an HMAC-SM3 secret (never overwrites).
    Keygen {
        /// Directory for the key files.
        #[arg(long, env = "COEDIT_KEY_DIR", default_value = "./keys")]
        out: PathBuf,
    },
    /// Access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Add a master key version, re-wrap every data key under it (online through a running
    /// server with --url, else offline in the data directory), then retire the old versions.
    RotateMasterKey {
        /// The master key ring file (the one the server is configured with).
        #[arg(long, env = "COEDIT_MASTER_KEY_FILE")]
        key_file: PathBuf,
        /// A running server's base URL (e.g. http://127.0.0.1:8080).
        #[arg(long, env = "COEDIT_URL", requires = "token")]
        url: Option<String>,
        /// An admin token for the running server.
        #[arg(long, env = "COEDIT_TOKEN")]
        token: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The audit log: offline in the data directory (the server stopped), or from a running
    /// server with --url and an admin --token.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Change events of a running server: sinks, dead letters, replays (docs/EVENTS.md).
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

/// A running server and an admin token for it (needed with authentication on).
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, env = "COEDIT_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin token.
    #[arg(long, env = "COEDIT_TOKEN")]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Every sink's state (pending, in flight, disabled); with --dead, the dead letters.
    List {
        /// List dead letters instead.
        #[arg(long, env = "COEDIT_EVENTS_DEAD")]
        dead: bool,
        /// Only this sink's dead letters.
        #[arg(long, env = "COEDIT_EVENTS_SINK")]
        sink: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Deliver events again: to the sinks that dead-lettered them, else to every sink that
    /// takes them.
    Replay {
        /// Event ids (`evt_…`, as `list --dead` prints them).
        #[arg(required = true, env = "COEDIT_EVENTS_IDS", value_delimiter = ',')]
        ids: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enable a sink that was disabled because it answered 410 Gone.
    Enable {
        /// The sink's name.
        #[arg(env = "COEDIT_EVENTS_SINK")]
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a fresh webhook signing secret (`whsec_` + base64 of 32 random bytes).
    Secret,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a signed access token.
    Issue {
        /// Subject (user id).
        #[arg(long, env = "COEDIT_TOKEN_SUB")]
        sub: String,
        /// Tenant.
        #[arg(long, env = "COEDIT_TOKEN_TENANT")]
        tenant: String,
        /// Grant `PATTERN=ROLE` (id or `prefix*`; viewer, commenter, editor, owner); repeat.
        #[arg(long = "grant", env = "COEDIT_TOKEN_GRANTS", value_delimiter = ',')]
        grants: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, env = "COEDIT_TOKEN_TTL", default_value_t = 3600)]
        ttl: u64,
        /// Server administrator (key rotation).
        #[arg(long, env = "COEDIT_TOKEN_ADMIN")]
        admin: bool,
        /// Display name shown with the user's caret.
        #[arg(long, env = "COEDIT_TOKEN_NAME")]
        name: Option<String>,
        /// Caret colour, `#rrggbb`.
        #[arg(long, env = "COEDIT_TOKEN_COLOR")]
        color: Option<String>,
        /// Sign with this SM2 private key (PEM).
        #[arg(long, env = "COEDIT_TOKEN_SM2_KEY")]
        sm2_key: Option<PathBuf>,
        /// Sign with this HMAC-SM3 secret file.
        #[arg(long, env = "COEDIT_TOKEN_HMAC_KEY")]
        hmac_key: Option<PathBuf>,
    },
}

/// A running server to ask instead of the data directory.
#[derive(clap::Args, Debug)]
pub struct OnlineArgs {
    /// A running server's base URL (e.g. http://127.0.0.1:8080).
    #[arg(long, env = "COEDIT_URL", requires = "token")]
    pub url: Option<String>,
    /// An admin token for the running server.
    #[arg(long, env = "COEDIT_TOKEN")]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the chain and report the first bad record; exits non-zero on any fault.
    Verify {
        /// SM2 public key (PEM) whose signatures the checkpoints must carry.
        #[arg(long, env = "COEDIT_AUDIT_PUBKEY")]
        pubkey: Option<PathBuf>,
        /// The file of anchored checkpoints (default: `[audit] anchor_file`, else
        /// audit-anchor.jsonl in the data directory); every one must be in the chain.
        #[arg(long, env = "COEDIT_AUDIT_ANCHOR")]
        anchor: Option<PathBuf>,
        #[command(flatten)]
        online: OnlineArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the chain as JSON lines.
    Export {
        /// Output file (default: standard output).
        #[arg(long, env = "COEDIT_AUDIT_OUT")]
        out: Option<PathBuf>,
        #[command(flatten)]
        online: OnlineArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
}
