//! `GET /api/docs?prefix=P&after=ID&limit=N`: the documents of the caller's tenant that its
//! token may read, in id order, a page at a time.
//!
//! Invariants:
//! - With authentication, only the token's tenant is listed, and only documents some grant of
//!   the token covers; ids are answered without the tenant, like everywhere else.
//! - A request examines at most [`MAX_LIST_SCAN`] stored documents (those the token cannot
//!   read are skipped), so a sparse grant set costs bounded work per page: such a page may hold
//!   fewer than `limit` entries while `next` is not `null`. `next` is `null` only at the end.
//! - The listing reads the store's index on a blocking thread, a few requests at a time
//!   (`AppState::history_reads`), never a document actor.

use actix_web::{web, HttpRequest, HttpResponse};
use coedit_actors::ActorError;
use coedit_protocol::wire::validate_doc_id;
use coedit_protocol::ErrorCode;
use serde::Serialize;
use serde_json::json;

use crate::http::{authenticate, ApiError, AppState};
use crate::query::Query;

/// Entries per page without `limit`.
pub const DEFAULT_LIST_PAGE: usize = 100;
/// Largest `limit`.
pub const MAX_LIST_PAGE: usize = 1000;
/// Stored documents examined per request at most.
pub const MAX_LIST_SCAN: usize = 10_000;

/// One listed document.
#[derive(Serialize)]
struct Listed {
    id: String,
    /// Its latest durable revision.
    rev: u64,
}

/// See the module documentation.
pub async fn list_docs(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = Query::parse(req.query_string(), &["prefix", "after", "limit"])?;
    let limit = q.uint::<usize>("limit")?.unwrap_or(DEFAULT_LIST_PAGE);
    if !(1..=MAX_LIST_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::BadMessage,
            format!("limit ({limit}) must be 1 to {MAX_LIST_PAGE}"),
        ));
    }
    let prefix = q.str("prefix").unwrap_or("").to_string();
    let after = q.str("after").map(str::to_string);
    for (name, v) in [("prefix", Some(&prefix)), ("after", after.as_ref())] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            validate_doc_id(v)
                .map_err(|e| ApiError::new(ErrorCode::InvalidDocId, format!("{name}: {e}")))?;
        }
    }
    let claims = authenticate(&state, &req, None).await?;
    let _turn = state
        .history_reads
        .acquire()
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "shutting down"))?;
    let store = state.store.clone();
    let page = web::block(move || -> Result<_, ActorError> {
        let ns = claims
            .as_ref()
            .map(|c| format!("{}:", c.tenant))
            .unwrap_or_default();
        let full_prefix = format!("{ns}{prefix}");
        let mut cursor = after.map(|a| format!("{ns}{a}"));
        let (mut docs, mut scanned) = (Vec::new(), 0);
        loop {
            let batch = store.list_documents(&full_prefix, cursor.as_deref(), limit)?;
            let end = batch.len() < limit;
            for id in batch {
                scanned += 1;
                cursor = Some(id.clone());
                let name = id.strip_prefix(&ns).unwrap_or(&id).to_string();
                let readable = claims.as_ref().is_none_or(|c| c.role_for(&name).is_some());
                if readable {
                    let rev = store.versions(&id)?.last_rev;
                    docs.push(Listed { id: name, rev });
                }
                if docs.len() == limit || scanned == MAX_LIST_SCAN {
                    let next = cursor.as_deref().map(|c| c.strip_prefix(&ns).unwrap_or(c));
                    return Ok((docs, next.map(str::to_string)));
                }
            }
            if end {
                return Ok((docs, None));
            }
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(json!({"docs": page.0, "next": page.1})))
}
