//! The crypto actor: a pool of threads (actix `SyncArbiter`) for CPU-bound cryptography, so
//! that sealing, hashing and signing never run on the threads that serve connections.
//!
//! It does three things: applies the store writer's batches (sealing records with SM4-GCM,
//! hashing the audit chain with SM3, signing checkpoints with SM2), and verifies access tokens
//! (SM2 or HMAC-SM3) for sessions and the HTTP API.
//!
//! Invariants:
//! - The store writer keeps at most one batch in flight, so batches are applied in order even
//!   though the pool has several threads; token checks run on the others meanwhile.
//! - The audit chain's writer state travels with the batch and comes back with the reply: it
//!   has exactly one owner at any time.

use std::sync::Arc;

use actix::prelude::*;

use crate::anchor::Anchor;
use crate::audit::AuditChain;
use crate::auth::{AuthError, Claims, TokenKey};
use crate::crypto::Sm2Signer;
use crate::manifest::Manifest;
use crate::store::{Store, StoreError};
use crate::store_actor::{apply_batch, Write};

/// Default number of crypto threads.
pub const DEFAULT_CRYPTO_THREADS: usize = 2;

/// The crypto actor. See the module documentation.
pub struct CryptoActor {
    store: Arc<dyn Store>,
    manifest: Arc<Manifest>,
    tokens: Option<TokenKey>,
    signer: Option<Arc<Sm2Signer>>,
}

impl CryptoActor {
    /// Starts `threads` crypto threads writing to `store`, checking tokens with `tokens`
    /// (`None`: authentication off) and signing audit checkpoints with `signer`.
    pub fn start(
        threads: usize,
        store: Arc<dyn Store>,
        manifest: Arc<Manifest>,
        tokens: Option<TokenKey>,
        signer: Option<Arc<Sm2Signer>>,
    ) -> Addr<CryptoActor> {
        SyncArbiter::start(threads.max(1), move || CryptoActor {
            store: store.clone(),
            manifest: manifest.clone(),
            tokens: tokens.clone(),
            signer: signer.clone(),
        })
    }
}

impl Actor for CryptoActor {
    type Context = SyncContext<Self>;
}

/// Apply a batch of writes in order (sent by the store writer only).
#[derive(Message)]
#[rtype(result = "BatchDone")]
pub struct WriteBatch {
    /// The writes.
    pub writes: Vec<Write>,
    /// The audit chain's writer state (`None`: audit off).
    pub chain: Option<AuditChain>,
}

/// The outcome of a [`WriteBatch`].
pub struct BatchDone {
    /// Number of writes applied.
    pub applied: usize,
    /// The first failure, which stops the batch.
    pub result: Result<(), StoreError>,
    /// The chain state, handed back.
    pub chain: Option<AuditChain>,
    /// Anchors of the checkpoints written (to be recorded once durable).
    pub anchors: Vec<Anchor>,
}

impl Handler<WriteBatch> for CryptoActor {
    type Result = MessageResult<WriteBatch>;

    /// Seals and writes each record, appends audit records (and signed checkpoints).
    fn handle(&mut self, m: WriteBatch, _: &mut SyncContext<Self>) -> Self::Result {
        let mut chain = m.chain;
        let applied = m.writes.len();
        let mut anchors = Vec::new();
        let result = apply_batch(
            &*self.store,
            &self.manifest,
            chain.as_mut(),
            self.signer.as_deref(),
            m.writes,
            &mut anchors,
        );
        MessageResult(BatchDone {
            applied,
            result,
            chain,
            anchors,
        })
    }
}

/// Check an access token.
#[derive(Message)]
#[rtype(result = "Result<Claims, AuthError>")]
pub struct VerifyToken {
    /// The token (`None`: none was sent).
    pub token: Option<String>,
    /// Current time, Unix seconds.
    pub now: u64,
    /// Clock skew tolerated, seconds.
    pub skew: u64,
}

impl Handler<VerifyToken> for CryptoActor {
    type Result = Result<Claims, AuthError>;

    /// Verifies form, algorithm, signature and expiry. Only sent when authentication is on.
    fn handle(&mut self, m: VerifyToken, _: &mut SyncContext<Self>) -> Self::Result {
        let key = self
            .tokens
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("authentication is off".into()))?;
        crate::metrics::metrics().crypto("token_verify", 1);
        key.verify(m.token.as_deref().ok_or(AuthError::Missing)?, m.now, m.skew)
    }
}
