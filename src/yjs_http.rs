//! HTTP routes of Yjs documents: the two WebSocket endpoints (`GET /yjs/{doc}` for
//! y-websocket, `GET /hocuspocus` for `@hocuspocus/provider`) and the REST calls that only a
//! Yjs document has (`GET /api/docs/{id}/state`, `POST /api/docs/{id}/updates`), plus the Yjs
//! answer of `GET /api/docs/{id}` (called by `http.rs` when the document is a Yjs one).
//!
//! Errors, authentication, authorization and audit are those of `http.rs`. A y-websocket
//! connection is authorized before it starts (token in the `token` query parameter); a
//! refused one is upgraded and closed at once with `4000 +` the HTTP status (4401, 4403, …),
//! which y-websocket clients take as final; a Hocuspocus connection authorizes each document
//! with its `Auth` message.

use actix_web::{web, HttpRequest, HttpResponse};
use coedit_actors::history::StoreRead;
use coedit_actors::security::auth::{Action, Claims, Resolved};
use coedit_actors::session::yjs::{start_yjs_session, YEndpoint};
use coedit_actors::session::SessionShared;
use coedit_actors::ydoc::{YDocActor, YHistory, YPost, YRead, YReadWhat};
use coedit_actors::ActorError;
use coedit_protocol::wire::validate_doc_ref;
use coedit_protocol::{DocError, ErrorCode};
use serde_json::json;

use crate::http::{
    call_resolved, call_ydoc, check, from_store, read_body, refused, ApiError, AppState,
};

/// Registers the Yjs routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/yjs/{doc}", web::get().to(ywebsocket))
        .route("/hocuspocus", web::get().to(hocuspocus))
        .route("/api/docs/{id}/state", web::get().to(get_state))
        .route("/api/docs/{id}/updates", web::post().to(post_updates));
}

fn shared(state: &AppState) -> SessionShared {
    SessionShared {
        registry: state.registry.clone(),
        config: state.session.clone(),
        guard: state.guard.clone(),
        close_all: state.close_all.clone(),
    }
}

/// `GET /yjs/{doc}?token=T`: a y-websocket connection to one document, authorized first.
async fn ywebsocket(
    doc: web::Path<String>,
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    // y-websocket appends its `params`; only `token` is read.
    let params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::new(ErrorCode::BadMessage, format!("bad query: {e}")))?;
    let token = params
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v);
    let peer = state.proxies.of(&req);
    let endpoint = match authorize_ywebsocket(&state, &req, &doc, token).await {
        Ok((claims, r)) => YEndpoint::YWebsocket { doc: r, claims },
        // Refused after the upgrade, with a close code that stops the client reconnecting.
        Err((code, msg)) => YEndpoint::Refused { code, msg },
    };
    start_yjs_session(&req, stream, shared(&state), peer, endpoint)
}

/// Checks a y-websocket connection's token and document; audits refusals.
async fn authorize_ywebsocket(
    state: &AppState,
    req: &HttpRequest,
    doc: &str,
    token: Option<String>,
) -> Result<(Option<Claims>, Resolved), (ErrorCode, String)> {
    validate_doc_ref(doc).map_err(|e| (e.code(), e.to_string()))?;
    let claims = state.guard.authenticate(token).await.map_err(|e| {
        refused(state, req, None, Some(doc), &e);
        (e.code(), e.to_string())
    })?;
    let r = state
        .guard
        .authorize(claims.as_ref(), doc, Action::Read)
        .map_err(|e| {
            refused(state, req, claims.as_ref(), Some(doc), &e);
            (e.code(), e.to_string())
        })?;
    Ok((claims, r))
}

/// `GET /hocuspocus`: a Hocuspocus connection; documents are authorized one by one.
async fn hocuspocus(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let peer = state.proxies.of(&req);
    start_yjs_session(&req, stream, shared(&state), peer, YEndpoint::Hocuspocus)
}

/// `GET /api/docs/{id}[?rev=N]` of a Yjs document: `{"id", "kind": "yjs", "rev", "content"}`.
pub async fn get_ydoc(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    rev: Option<u64>,
) -> Result<HttpResponse, ApiError> {
    let (rev, content) = match rev {
        None => {
            let s = call_ydoc(state, req, id, Action::Read, || YRead {
                what: YReadWhat::Content,
            })
            .await?;
            (s.rev, s.content.unwrap_or_default())
        }
        Some(rev) => {
            let read = call_ydoc(state, req, id, Action::Read, || YHistory).await?;
            let content = from_store(state, read, move |r| content_at(r, rev)).await?;
            (rev, content)
        }
    };
    Ok(HttpResponse::Ok().json(json!({"id": id, "kind": "yjs", "rev": rev, "content": content})))
}

/// The content of a Yjs document at revision `rev`, from the store.
fn content_at(read: &StoreRead, rev: u64) -> Result<serde_json::Value, ActorError> {
    if rev > read.durable_rev {
        return Err(DocError::FutureRevision {
            base: rev,
            current: read.durable_rev,
        }
        .into());
    }
    match read.store.y_at(&read.id, rev)? {
        Some(d) => Ok(d.content()),
        None => Err(DocError::RevisionTooOld {
            base: rev,
            oldest: read
                .store
                .versions(&read.id)?
                .snapshots
                .first()
                .copied()
                .unwrap_or(0),
        }
        .into()),
    }
}

/// `GET /api/docs/{id}/state`: the whole Yjs document as one update
/// (`application/octet-stream`), with its revision in `X-Coedit-Rev`.
async fn get_state(
    id: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = call_ydoc(&state, &req, &id, Action::Read, || YRead {
        what: YReadWhat::State,
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("X-Coedit-Rev", s.rev.to_string()))
        .body(s.state.unwrap_or_default()))
}

/// `POST /api/docs/{id}/updates`: applies a Yjs update (`application/octet-stream`), answers
/// `{"id", "rev"}` once it is durable. The caller is authorized before its body is read.
async fn post_updates(
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (claims, r) = check(&state, &req, &id, Action::Write).await?;
    let body = read_body(&req, payload, state.max_update).await?;
    let subject = claims
        .as_ref()
        .map(|c| std::sync::Arc::<str>::from(c.sub.as_str()));
    let rev =
        call_resolved::<YDocActor, _, _>(&state, &req, claims.as_ref(), &r, Action::Write, || {
            YPost {
                update: body.clone(),
                subject: subject.clone(),
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"id": *id, "rev": rev})))
}
