//! Administrative HTTP calls, each needing an admin token (with authentication on) and each
//! audited: `POST /api/admin/rotate-master-key`, `GET /api/admin/audit/verify` and
//! `GET /api/admin/audit/export` (the audit log of a running server: sled allows one process
//! per data directory, so the offline commands need the server stopped).

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use coedit_actors::security::audit::{self, AuditEvent, Expectations};
use coedit_actors::security::auth::AuthError;
use coedit_actors::security::crypto::{MasterKeyring, Sm2Verifier};
use coedit_actors::storage::manifest::Manifest;
use coedit_actors::store_actor::RotateMasterKey;
use coedit_actors::{ActorError, Store};
use coedit_protocol::ErrorCode;
use serde_json::json;

use crate::http::{authenticate, refused, ApiError, AppState};

/// What the running server checks its audit chain against.
#[derive(Clone)]
pub struct AuditCheck {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The manifest (the chain's durable length).
    pub manifest: Arc<Manifest>,
    /// The anchor file.
    pub anchor_path: PathBuf,
    /// The public key of the checkpoint signer, if one is configured.
    pub verifier: Option<Sm2Verifier>,
}

/// Authenticates the caller and requires the admin claim (anyone when authentication is off);
/// returns the subject for the audit log. Refusals are audited.
pub(crate) async fn admin(
    state: &AppState,
    req: &HttpRequest,
    what: &str,
) -> Result<String, ApiError> {
    let claims = authenticate(state, req, None).await?;
    if claims.as_ref().is_some_and(|c| !c.admin) {
        let e = AuthError::NotPermitted(format!("{what} needs an admin token"));
        refused(state, req, claims.as_ref(), None, &e);
        return Err(e.into());
    }
    Ok(claims.map_or_else(|| "anonymous".into(), |c| c.sub))
}

/// `GET /api/admin/audit/verify`: walks the running server's audit chain against the anchored
/// checkpoints, the manifest's length and (if configured) the signing key's signatures.
/// `200 {"ok": true, …report}` or `200 {"ok": false, "fault": {"position", "reason"}}`.
pub async fn audit_verify(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subject = admin(&state, &req, "verifying the audit log").await?;
    let check = state.audit_check.clone();
    let result = web::block(move || -> Result<serde_json::Value, ApiError> {
        let anchors = coedit_actors::security::anchor::read(&check.anchor_path)
            .map_err(ApiError::internal)?;
        let records = check.store.audit_all().map_err(ApiError::internal)?;
        let expect = Expectations {
            verifier: check.verifier.as_ref(),
            anchors: &anchors,
            min_len: Some(check.manifest.audit_len()).filter(|_| check.manifest.enabled()),
        };
        let signer = check
            .verifier
            .as_ref()
            .map(|v| hex::encode(v.fingerprint()));
        Ok(match audit::verify(&records, expect) {
            Ok(r) => json!({"ok": true, "report": r, "signer": signer, "anchors": anchors.len()}),
            Err(f) => json!({
                "ok": false,
                "fault": {"position": f.position, "reason": f.reason},
                "signer": signer,
            }),
        })
    })
    .await
    .map_err(ApiError::internal)??;
    state.guard.audit(AuditEvent::Admin {
        subject,
        action: "audit-verify".into(),
        target: "audit log".into(),
        outcome: if result["ok"] == true {
            "ok".into()
        } else {
            format!("fault: {}", result["fault"])
        },
    });
    Ok(HttpResponse::Ok().json(result))
}

/// `GET /api/admin/audit/export`: the running server's audit chain as JSON lines (one record
/// with its SM3 hash per line), like `coedit audit export`.
pub async fn audit_export(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subject = admin(&state, &req, "exporting the audit log").await?;
    let store = state.audit_check.store.clone();
    let (body, n) = web::block(move || -> Result<(Vec<u8>, u64), ApiError> {
        let records = store.audit_all().map_err(ApiError::internal)?;
        let mut out = Vec::new();
        let n = audit::export(&records, &mut out).map_err(ApiError::internal)?;
        Ok((out, n))
    })
    .await
    .map_err(ApiError::internal)??;
    state.guard.audit(AuditEvent::Admin {
        subject,
        action: "audit-export".into(),
        target: "audit log".into(),
        outcome: format!("{n} records"),
    });
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "application/x-ndjson"))
        .body(body))
}

/// `POST /api/admin/rotate-master-key`: re-reads the master key file and re-wraps every data
/// key under its newest version. Needs an admin token (with authentication on).
pub async fn rotate_master_key(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subject = admin(&state, &req, "rotating the master key").await?;
    let unavailable = |msg: String| ApiError::new(ErrorCode::NotPermitted, msg);
    let path = state
        .master_key_file
        .as_ref()
        .ok_or_else(|| unavailable("online rotation needs [crypto] master_key_file".into()))?;
    let ring = MasterKeyring::load(path).map_err(|e| unavailable(e.to_string()))?;
    let version = ring.current_version().unwrap_or(0);
    let res = state
        .guard
        .writer
        .send(RotateMasterKey { ring })
        .await
        .map_err(ActorError::from)?;
    state.guard.audit(AuditEvent::Admin {
        subject,
        action: "rotate-master-key".into(),
        target: format!("master key v{version}"),
        outcome: match &res {
            Ok(n) => format!("{n} data keys re-wrapped"),
            Err(e) => format!("failed: {e}"),
        },
    });
    let n = res.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({"rewrapped": n, "master_version": version})))
}
