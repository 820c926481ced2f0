//! The guard: what WebSocket sessions and the HTTP API use to authenticate callers, authorize
//! what they do, and audit it. Token signatures are checked on the verifier's threads; audit
//! events go to the store writer, which bounds what refusals may write (see
//! [`crate::security::refusals`]).
//!
//! Invariants:
//! - At most `max_pending` token checks wait for the verifier at a time; beyond that a check
//!   is refused at once (`AuthError::Busy`, "try again"), so a flood of tokens costs a counter,
//!   not memory or signature checks. The count is released however a check ends.
//! - Every refusal is counted in the `auth_refusals` metric and reported to the store writer
//!   with its source address; text the caller controls is clipped before it is recorded.
//! - Authorization always goes through [`crate::security::auth::authorize`] with the configured clock
//!   skew, so WebSocket and REST decide alike.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use crate::security::audit::AuditEvent;
use crate::security::auth::{authorize, now_s, Action, AuthError, Claims, Resolved};
use crate::security::refusals::{clip, UNKNOWN_SOURCE};
use crate::security::verifier::{TokenVerifier, VerifyToken};
use crate::store_actor::{AppendAudit, AuditRefusal, StoreActor};

/// Default bound on token checks waiting for the verifier.
pub const MAX_PENDING_TOKEN_CHECKS: usize = 1024;

/// What sessions and the HTTP API need to authenticate callers and audit what they do.
#[derive(Clone)]
pub struct Guard {
    /// Verifies tokens.
    pub verifier: Addr<TokenVerifier>,
    /// Records audit events.
    pub writer: Addr<StoreActor>,
    /// Whether a token is required.
    pub auth: bool,
    /// Clock skew tolerated for `iat`, `nbf` and `exp`, in seconds.
    pub skew_s: u64,
    /// Token checks waiting or running now.
    pending: Arc<AtomicUsize>,
    /// Most token checks allowed to wait or run at once.
    max_pending: usize,
}

/// Releases one pending check when dropped (also when its future is dropped).
struct PendingCheck(Arc<AtomicUsize>);

impl Drop for PendingCheck {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Guard {
    /// A guard checking tokens on `verifier` (when `auth`), auditing to `writer`, with at
    /// most [`MAX_PENDING_TOKEN_CHECKS`] checks waiting.
    pub fn new(
        verifier: Addr<TokenVerifier>,
        writer: Addr<StoreActor>,
        auth: bool,
        skew_s: u64,
    ) -> Self {
        Guard {
            verifier,
            writer,
            auth,
            skew_s,
            pending: Arc::new(AtomicUsize::new(0)),
            max_pending: MAX_PENDING_TOKEN_CHECKS,
        }
    }

    /// Sets the bound on waiting token checks.
    pub fn with_max_pending(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// Token checks waiting or running now.
    pub fn pending_checks(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// The caller's claims (`None` when authentication is off), checked on a verifier thread.
    /// A missing token is refused at once; so is any token while `max_pending` checks wait.
    pub async fn authenticate(&self, token: Option<String>) -> Result<Option<Claims>, AuthError> {
        if !self.auth {
            return Ok(None);
        }
        let token = token.ok_or(AuthError::Missing)?;
        let waiting = self.pending.fetch_add(1, Ordering::AcqRel);
        let _pending = PendingCheck(self.pending.clone());
        if waiting >= self.max_pending {
            crate::metrics::metrics().token_checks_shed.inc();
            return Err(AuthError::Busy);
        }
        let check = VerifyToken {
            token,
            now: now_s(),
            skew: self.skew_s,
        };
        match self.verifier.send(check).await {
            Ok(r) => r.map(Some),
            Err(e) => Err(AuthError::Invalid(format!("token check unavailable: {e}"))),
        }
    }

    /// Resolves `doc_ref` for `claims` and checks that `action` is allowed now.
    pub fn authorize(
        &self,
        claims: Option<&Claims>,
        doc_ref: &str,
        action: Action,
    ) -> Result<Resolved, AuthError> {
        authorize(claims, doc_ref, action, now_s(), self.skew_s)
    }

    /// Records an audit event.
    pub fn audit(&self, event: AuditEvent) {
        self.writer.do_send(AppendAudit(event));
    }

    /// Records a refused request from `source` (the peer address).
    pub fn refused(&self, refusal: Refusal<'_>, err: &AuthError) {
        let code = err.code().as_u16();
        crate::metrics::metrics()
            .auth_refusals
            .get_or_create(&crate::metrics::CodeLabel { code })
            .inc();
        let source = refusal
            .source
            .map_or_else(|| UNKNOWN_SOURCE.to_string(), |ip| ip.to_string());
        self.writer.do_send(AuditRefusal {
            source: source.clone(),
            event: AuditEvent::Refused {
                session: refusal.session,
                subject: refusal.claims.map(|c| clip(&c.sub)),
                action: clip(refusal.action),
                doc: refusal.doc.map(clip),
                code,
                reason: clip(&err.to_string()),
                source: Some(source),
            },
        });
    }
}

/// Who was refused what (for [`Guard::refused`]).
#[derive(Clone, Copy, Debug)]
pub struct Refusal<'a> {
    /// The peer's address, if known.
    pub source: Option<IpAddr>,
    /// The WebSocket session, if any.
    pub session: Option<u64>,
    /// The caller's claims, if its token was valid.
    pub claims: Option<&'a Claims>,
    /// What was attempted (`hello`, `join`, `op`, `GET /api/docs/…`).
    pub action: &'a str,
    /// The document reference, if any.
    pub doc: Option<&'a str>,
}
