//! The token verifier: a pool of threads (actix `SyncArbiter`) that checks access-token
//! signatures (SM2 or HMAC-SM3) for sessions and the HTTP API.
//!
//! It is separate from the write pool ([`crate::write_pool`]) so that token checks, which
//! anyone who can open a connection or send a request can cause, never queue in front of the
//! store's writes and flushes: a flood of tokens slows logins, not acknowledgements. The guard
//! ([`crate::security::guard`]) bounds how many checks may wait here.

use actix::prelude::*;

use crate::metrics::metrics;
use crate::security::auth::{AuthError, Claims, TokenKey};

/// Default number of verifier threads.
pub const DEFAULT_VERIFIER_THREADS: usize = 2;

/// The verifier. See the module documentation.
pub struct TokenVerifier {
    tokens: Option<TokenKey>,
}

impl TokenVerifier {
    /// Starts `threads` verifier threads checking tokens with `tokens` (`None`: authentication
    /// off, every check refused).
    pub fn start(threads: usize, tokens: Option<TokenKey>) -> Addr<TokenVerifier> {
        SyncArbiter::start(threads.max(1), move || TokenVerifier {
            tokens: tokens.clone(),
        })
    }
}

impl Actor for TokenVerifier {
    type Context = SyncContext<Self>;
}

/// Check an access token.
#[derive(Message)]
#[rtype(result = "Result<Claims, AuthError>")]
pub struct VerifyToken {
    /// The token.
    pub token: String,
    /// Current time, Unix seconds.
    pub now: u64,
    /// Clock skew tolerated, seconds.
    pub skew: u64,
}

impl Handler<VerifyToken> for TokenVerifier {
    type Result = Result<Claims, AuthError>;

    /// Verifies form, algorithm, signature and expiry.
    fn handle(&mut self, m: VerifyToken, _: &mut SyncContext<Self>) -> Self::Result {
        let key = self
            .tokens
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("authentication is off".into()))?;
        metrics().crypto("token_verify", 1);
        key.verify(&m.token, m.now, m.skew)
    }
}

/// Test probe: holds a verifier thread until the sender is dropped or sends.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Hold(pub(crate) std::sync::mpsc::Receiver<()>);

#[cfg(test)]
impl Handler<Hold> for TokenVerifier {
    type Result = ();

    fn handle(&mut self, m: Hold, _: &mut SyncContext<Self>) {
        let _ = m.0.recv();
    }
}
