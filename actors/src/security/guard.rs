//! The guard: what WebSocket sessions and the HTTP API use to authenticate callers, authorize
//! what they do, and audit it. Token signatures are checked on the crypto threads; audit events
//! go to the store writer, which bounds what refusals may write (see [`crate::security::refusals`]).
//!
//! Invariants:
//! - Every refusal is counted in the `auth_refusals` metric and reported to the store writer
//!   with its source address; text the caller controls is clipped before it is recorded.
//! - Authorization always goes through [`crate::security::auth::authorize`] with the configured clock
//!   skew, so WebSocket and REST decide alike.

use std::net::IpAddr;

use actix::prelude::*;

use crate::security::audit::AuditEvent;
use crate::security::auth::{authorize, now_s, Action, AuthError, Claims, Resolved};
use crate::security::refusals::{clip, UNKNOWN_SOURCE};
use crate::store_actor::{AppendAudit, AuditRefusal, StoreActor};
use crate::write_pool::{VerifyToken, WritePool};

/// What sessions and the HTTP API need to authenticate callers and audit what they do.
#[derive(Clone)]
pub struct Guard {
    /// Verifies tokens.
    pub crypto: Addr<WritePool>,
    /// Records audit events.
    pub writer: Addr<StoreActor>,
    /// Whether a token is required.
    pub auth: bool,
    /// Clock skew tolerated for `iat`, `nbf` and `exp`, in seconds.
    pub skew_s: u64,
}

impl Guard {
    /// The caller's claims (`None` when authentication is off), checked on a crypto thread.
    pub async fn authenticate(&self, token: Option<String>) -> Result<Option<Claims>, AuthError> {
        if !self.auth {
            return Ok(None);
        }
        let now = now_s();
        let check = VerifyToken {
            token,
            now,
            skew: self.skew_s,
        };
        match self.crypto.send(check).await {
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
