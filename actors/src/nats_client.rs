//! The one way coedit connects to NATS (the JetStream store, the cluster's routing, the
//! change-events sink): server URLs (user and password may be in them), a client name,
//! optional credentials file and TLS CA, a connection timeout.

use std::path::PathBuf;
use std::time::Duration;

/// How to reach NATS.
#[derive(Clone, Debug, Default)]
pub struct NatsAccess {
    /// Server URLs (`nats://`, `tls://`).
    pub urls: Vec<String>,
    /// NATS credentials file (`.creds`).
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) for TLS; TLS is required when given.
    pub tls_ca_file: Option<PathBuf>,
}

/// Connects as `name`, waiting at most `timeout` per attempt; the error says what failed.
pub async fn connect(
    access: &NatsAccess,
    name: &str,
    timeout: Duration,
) -> Result<async_nats::Client, String> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(timeout);
    if let Some(f) = &access.creds_file {
        opts = opts
            .credentials_file(f)
            .await
            .map_err(|e| format!("NATS credentials {}: {e}", f.display()))?;
    }
    if let Some(ca) = &access.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    let addrs: Vec<async_nats::ServerAddr> = access
        .urls
        .iter()
        .map(|u| u.parse().map_err(|e| format!("NATS URL {u}: {e}")))
        .collect::<Result<_, String>>()?;
    // `nats://user:password@host` (the client library does not read a URL's credentials by
    // itself): the first URL that carries them names the user.
    if let Some(a) = addrs.iter().find(|a| a.has_user_pass()) {
        if let (Some(user), Some(pass)) = (a.username(), a.password()) {
            opts = opts.user_and_password(user.to_string(), pass.to_string());
        }
    }
    async_nats::connect_with_options(addrs, opts)
        .await
        .map_err(|e| format!("connecting to NATS: {e}"))
}
