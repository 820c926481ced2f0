//! HTTP routes: health, the WebSocket endpoint, and the REST API over documents.
//!
//! Every error is JSON `{"error": {"code": N, "msg": "…"}}` with the status from
//! `coedit_actors::http_status_for`; document references are validated by
//! `coedit_protocol::wire::split_doc_ref`, the same check the WebSocket uses.
//!
//! With authentication on, every document call carries `Authorization: Bearer <token>` and is
//! authorized exactly like the WebSocket (`coedit_actors::security::auth::authorize`); refusals are
//! audited. Administrative calls (`DELETE` a document; `admin.rs`: key rotation, audit
//! verification and export) are audited too.

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use coedit_actors::document::{Applied, DocText, GetOps, GetText, GetVersions, Submit};
use coedit_actors::history::{self, Answer, StoreRead, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE};
use coedit_actors::registry::{self, DeleteDocument, OpenCount, OpenDoc};
use coedit_actors::security::audit::AuditEvent;
use coedit_actors::security::auth::{bind_client_id, Action, AuthError, Claims, Resolved};
use coedit_actors::security::guard::{Guard, Refusal};
use coedit_actors::session::{start_session, CloseAll, SessionShared};
use coedit_actors::ydoc::{YDocActor, YHistory};
use coedit_actors::{http_status_for, ActorError, DocActor, Registry, SessionConfig};
use coedit_protocol::wire::{checked_op, op_reach, validate_client_id, validate_doc_ref};
use coedit_protocol::{ClientId, Component, ErrorCode, ProtocolError};
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;
use serde_json::json;

use crate::query::Query;

/// Length of the random client id given to REST edits that bring none.
const REST_CLIENT_ID_LEN: usize = 16;
/// History reads from the store running at once (more wait their turn), so readers of long
/// histories cannot take every blocking thread.
pub const HISTORY_READS_AT_ONCE: usize = 2;

/// Shared state of the routes.
pub struct AppState {
    /// The document registry.
    pub registry: Addr<Registry>,
    /// Settings for new WebSocket sessions.
    pub session: SessionConfig,
    /// Authentication and audit.
    pub guard: Guard,
    /// The master key ring file, re-read for online rotation.
    pub master_key_file: Option<std::path::PathBuf>,
    /// False once shutdown began (`/readyz` then answers 503).
    pub accepting: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The store, for readiness checks.
    pub store: std::sync::Arc<dyn coedit_actors::Store>,
    /// Closes every WebSocket session at once.
    pub close_all: CloseAll,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub proxies: crate::proxy::TrustedProxies,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Largest Yjs update posted, bytes.
    pub max_update: usize,
    /// Admits [`HISTORY_READS_AT_ONCE`] store reads at a time.
    pub history_reads: std::sync::Arc<tokio::sync::Semaphore>,
    /// What the audit chain is checked against (online `audit verify`).
    pub audit_check: crate::admin::AuditCheck,
    /// The change-event dispatcher, when a sink is configured.
    pub dispatcher: Option<Addr<coedit_actors::dispatcher::Dispatcher>>,
    /// Cluster mode: REST calls for documents other nodes order are forwarded to them.
    pub clustered: bool,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) code: ErrorCode,
    msg: String,
    /// Cluster mode: the node the request belongs to (`crate::forward`).
    pub(crate) forward: Option<crate::forward::ForwardTo>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        ApiError {
            code,
            msg: msg.into(),
            forward: None,
        }
    }

    /// A server-side failure (500, `4002`) described by `e`.
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, e.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.msg, self.code.as_u16())
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(http_status_for(self.code))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(json!({"error": {"code": self.code, "msg": self.msg}}))
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        let mut api = ApiError::new(e.code(), e.to_string());
        if let ActorError::Elsewhere {
            node,
            url: Some(url),
            ..
        } = e
        {
            api.forward = Some(crate::forward::ForwardTo { node, url });
        }
        api
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(demo_page))
        .route("/richtext", web::get().to(richtext_page))
        .route("/static/{name}", web::get().to(static_file))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(prometheus))
        .route("/ws", web::get().to(websocket))
        .route("/api/docs", web::get().to(crate::doc_list::list_docs))
        .route("/api/docs/{id}", web::get().to(get_doc))
        .route("/api/docs/{id}/versions", web::get().to(get_versions))
        .route("/api/docs/{id}/ops", web::get().to(get_ops))
        .route("/api/docs/{id}/ops", web::post().to(post_op))
        .route("/api/docs/{id}", web::delete().to(delete_doc))
        .configure(crate::yjs_http::routes)
        .route(
            "/api/admin/rotate-master-key",
            web::post().to(crate::admin::rotate_master_key),
        )
        .route(
            "/api/admin/audit/verify",
            web::get().to(crate::admin::audit_verify),
        )
        .route(
            "/api/admin/audit/export",
            web::get().to(crate::admin::audit_export),
        )
        .configure(crate::events_http::routes)
        .default_service(web::to(not_found));
}

/// The demo pages (text, rich text) and their assets, embedded in the binary (built from `protocol/js/`).
const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("static/index.html"),
    ),
    (
        "demo.css",
        "text/css; charset=utf-8",
        include_str!("static/demo.css"),
    ),
    (
        "coedit-demo.js",
        "text/javascript; charset=utf-8",
        include_str!("static/coedit-demo.js"),
    ),
    (
        "richtext.html",
        "text/html; charset=utf-8",
        include_str!("static/richtext.html"),
    ),
    (
        "richtext.css",
        "text/css; charset=utf-8",
        include_str!("static/richtext.css"),
    ),
    (
        "coedit-richtext.js",
        "text/javascript; charset=utf-8",
        include_str!("static/coedit-richtext.js"),
    ),
];

fn serve_static(name: &str) -> HttpResponse {
    match STATIC_FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .insert_header(("Content-Type", *content_type))
            .insert_header(("Cache-Control", "no-cache"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(*body),
        None => HttpResponse::NotFound()
            .json(json!({"error": {"code": ErrorCode::BadMessage, "msg": "no such file"}})),
    }
}

async fn demo_page() -> HttpResponse {
    serve_static("index.html")
}

/// `GET /richtext`: the rich-text (Yjs, Tiptap) demo page.
async fn richtext_page() -> HttpResponse {
    serve_static("richtext.html")
}

async fn static_file(name: web::Path<String>) -> HttpResponse {
    serve_static(&name)
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(json!({"error": {"code": ErrorCode::BadMessage, "msg": "no such route"}}))
}

async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let open = state
        .registry
        .send(OpenCount)
        .await
        .map_err(ActorError::from)?;
    Ok(HttpResponse::Ok().json(json!({"status": "ok", "open_documents": open})))
}

/// `GET /readyz`: 200 when the store answers reads and the server accepts work; 503 during
/// shutdown or when the store fails.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let accepting = state.accepting.load(std::sync::atomic::Ordering::SeqCst);
    let store = state.store.clone();
    let store_ok = web::block(move || store.check_readable())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let body = json!({
        "ready": accepting && store_ok.is_ok(),
        "accepting": accepting,
        "store": store_ok.as_ref().map_or_else(|e| e.clone(), |()| "ok".to_string()),
    });
    if accepting && store_ok.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: every metric in the OpenMetrics text format.
async fn prometheus() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            "Content-Type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(coedit_actors::metrics::metrics().render())
}

async fn websocket(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let shared = SessionShared {
        registry: state.registry.clone(),
        config: state.session.clone(),
        guard: state.guard.clone(),
        close_all: state.close_all.clone(),
    };
    start_session(&req, stream, shared, state.proxies.of(&req))
}

/// Audits a refused request.
pub(crate) fn refused(
    state: &AppState,
    req: &HttpRequest,
    claims: Option<&Claims>,
    doc: Option<&str>,
    e: &AuthError,
) {
    let action = what(req);
    let refusal = Refusal {
        source: state.proxies.of(req),
        session: None,
        claims,
        action: &action,
        doc,
    };
    state.guard.refused(refusal, e);
}

/// The bearer token of a request, if any.
fn bearer(req: &HttpRequest) -> Option<String> {
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let h = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// What a request did, for the audit log.
pub(crate) fn what(req: &HttpRequest) -> String {
    format!("{} {}", req.method(), req.path())
}

/// Authenticates the request's bearer token; audits refusals.
pub(crate) async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    doc: Option<&str>,
) -> Result<Option<Claims>, ApiError> {
    state.guard.authenticate(bearer(req)).await.map_err(|e| {
        refused(state, req, None, doc, &e);
        e.into()
    })
}

/// Authenticates the request and authorizes `action` on `doc`; audits refusals.
pub(crate) async fn check(
    state: &AppState,
    req: &HttpRequest,
    doc: &str,
    action: Action,
) -> Result<(Option<Claims>, Resolved), ApiError> {
    validate_doc_ref(doc)?;
    let claims = authenticate(state, req, Some(doc)).await?;
    match state.guard.authorize(claims.as_ref(), doc, action) {
        Ok(r) => Ok((claims, r)),
        Err(e) => {
            refused(state, req, claims.as_ref(), Some(doc), &e);
            Err(e.into())
        }
    }
}

/// Sends a message to a text document's actor, reopening it if it was unloading (a Yjs
/// document answers `WrongKind`).
async fn call_doc<M, R>(
    state: &AppState,
    req: &HttpRequest,
    doc: &str,
    action: Action,
    make: impl Fn() -> M,
) -> Result<R, ApiError>
where
    M: Message<Result = Result<R, ActorError>> + Send + 'static,
    R: Send + 'static,
    DocActor: Handler<M>,
{
    let (claims, r) = check(state, req, doc, action).await?;
    call_resolved::<DocActor, _, _>(state, req, claims.as_ref(), &r, action, make).await
}

/// [`call_doc`] for a Yjs document.
pub(crate) async fn call_ydoc<M, R>(
    state: &AppState,
    req: &HttpRequest,
    doc: &str,
    action: Action,
    make: impl Fn() -> M,
) -> Result<R, ApiError>
where
    M: Message<Result = Result<R, ActorError>> + Send + 'static,
    R: Send + 'static,
    YDocActor: Handler<M>,
{
    let (claims, r) = check(state, req, doc, action).await?;
    call_resolved::<YDocActor, _, _>(state, req, claims.as_ref(), &r, action, make).await
}

/// [`call_doc`] for a request already checked. Only a write creates a document: a read of one
/// that does not exist is 404 (`ActorError::NoSuchDocument`).
pub(crate) async fn call_resolved<A, M, R>(
    state: &AppState,
    req: &HttpRequest,
    claims: Option<&Claims>,
    r: &Resolved,
    action: Action,
    make: impl Fn() -> M,
) -> Result<R, ApiError>
where
    A: registry::KindActor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message<Result = Result<R, ActorError>> + Send + 'static,
    R: Send + 'static,
{
    let open = OpenDoc {
        kind: A::KIND,
        id: r.id.clone(),
        name: r.name.clone(),
        create: action == Action::Write && r.role.can_write(),
    };
    match registry::call_kind::<A, M, R>(&state.registry, open, make).await {
        Ok((_, answer)) => Ok(answer),
        Err(ActorError::Auth(e)) => {
            refused(state, req, claims, Some(&r.name), &e);
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs a history read against the store on a blocking thread, a few at a time.
pub(crate) async fn from_store<T, F>(state: &AppState, read: StoreRead, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&StoreRead) -> Result<T, ActorError> + Send + 'static,
    T: Send + 'static,
{
    let _turn = state
        .history_reads
        .acquire()
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "shutting down"))?;
    web::block(move || f(&read))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

async fn get_doc(
    id: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = Query::parse(req.query_string(), &["rev"])?;
    let rev: Option<u64> = q.uint("rev")?;
    let t = match call_doc(&state, &req, &id, Action::Read, || GetText { rev }).await {
        Err(e) if e.code == ErrorCode::WrongKind => {
            return crate::yjs_http::get_ydoc(&state, &req, &id, rev).await;
        }
        a => a?,
    };
    let t = match t {
        Answer::Ready(t) => t,
        Answer::FromStore(read) => {
            let rev = rev.unwrap_or(read.durable_rev);
            let text = from_store(&state, read, move |r| history::text_at(r, rev)).await?;
            DocText { rev, text }
        }
    };
    Ok(HttpResponse::Ok().json(json!({"id": *id, "kind": "text", "rev": t.rev, "text": t.text})))
}

async fn get_versions(
    id: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let read = match call_doc(&state, &req, &id, Action::Read, || GetVersions).await {
        Err(e) if e.code == ErrorCode::WrongKind => {
            call_ydoc(&state, &req, &id, Action::Read, || YHistory).await?
        }
        r => r?,
    };
    let v = from_store(&state, read, history::versions).await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": *id,
        "snapshots": v.snapshots,
        "first_op": v.first_op,
        "last_rev": v.last_rev,
    })))
}

/// `GET /api/docs/{id}/ops?from=R&to=S&limit=N`: one page of at most `limit` ops (default
/// [`DEFAULT_HISTORY_PAGE`], at most [`MAX_HISTORY_PAGE`]) and `next`, the `from` of the
/// next page (`null` at the end).
async fn get_ops(
    id: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = Query::parse(req.query_string(), &["from", "to", "limit"])?;
    let (from, to): (u64, Option<u64>) = (q.uint("from")?.unwrap_or(0), q.uint("to")?);
    if let Some(to) = to.filter(|&to| from > to) {
        return Err(ApiError::new(
            ErrorCode::BadMessage,
            format!("from ({from}) must not be greater than to ({to})"),
        ));
    }
    let limit = q.uint("limit")?.unwrap_or(DEFAULT_HISTORY_PAGE);
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::BadMessage,
            format!("limit ({limit}) must be 1 to {MAX_HISTORY_PAGE}"),
        ));
    }
    let page = match call_doc(&state, &req, &id, Action::Read, || GetOps {
        from,
        to,
        limit,
    })
    .await?
    {
        Answer::Ready(p) => p,
        Answer::FromStore(read) => {
            let to = to.unwrap_or(read.durable_rev);
            from_store(&state, read, move |r| history::ops_page(r, from, to, limit)).await?
        }
    };
    Ok(HttpResponse::Ok().json(json!({"id": *id, "ops": page.ops, "next": page.next})))
}

/// Body of `POST /api/docs/{id}/ops`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpBody {
    base_rev: u64,
    op: Vec<Component>,
    /// Optional client id and sequence number for exactly-once retries.
    client: Option<String>,
    seq: Option<u64>,
}

/// Reads a request body of at most `max` bytes; a larger one is refused from its
/// `Content-Length` (or as soon as it passes the limit) with the JSON error 1002.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: impl futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>
        + Unpin,
    max: usize,
) -> Result<web::Bytes, ApiError> {
    use futures_util::StreamExt;
    let too_big = || {
        ApiError::new(
            ErrorCode::FrameTooLarge,
            format!("request body larger than {max} bytes"),
        )
    };
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::BadMessage, e.to_string()))?;
        if body.len() + chunk.len() > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    // Cluster mode: a forward to the document's owner sends what was read (`forward.rs`).
    actix_web::HttpMessage::extensions_mut(req).insert(crate::forward::BodyRead(body.clone()));
    Ok(body)
}

/// `POST /api/docs/{id}/ops`: the caller is authenticated and authorized before its body is
/// read (an unauthenticated request gets 401 whatever its body).
async fn post_op(
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (claims, resolved) = check(&state, &req, &id, Action::Write).await?;
    let body = read_body(&req, payload, state.max_body).await?;
    let body: OpBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::BadMessage, format!("bad body: {e}")))?;
    let op = checked_op(&body.op)?;
    let reach = op_reach(&body.op);
    let (client, seq) = match (body.client, body.seq) {
        (Some(c), Some(s)) => {
            validate_client_id(&c)?;
            let c = bind_client_id(claims.as_ref(), &c);
            validate_client_id(&c)?;
            (ClientId::from(c), s)
        }
        (None, None) => {
            // A one-off id, bound to the subject like any other (the audit log names both).
            let c = format!(
                "rest-{}",
                Alphanumeric.sample_string(&mut rand::rng(), REST_CLIENT_ID_LEN)
            );
            (ClientId::from(bind_client_id(claims.as_ref(), &c)), 1)
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::BadMessage,
                "client and seq go together",
            ))
        }
    };
    let applied: Applied = call_resolved::<DocActor, _, _>(
        &state,
        &req,
        claims.as_ref(),
        &resolved,
        Action::Write,
        || Submit {
            session: None,
            client: client.clone(),
            seq,
            base_rev: body.base_rev,
            op: op.clone(),
            t: None,
            reach,
            subject: claims
                .as_ref()
                .map(|c| std::sync::Arc::from(c.sub.as_str())),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "rev": applied.rev,
        "op": applied.op,
        "duplicate": applied.duplicate,
    })))
}

/// `DELETE /api/docs/{id}`: owners only. Deletes every record; in an encrypted store the data
/// key is destroyed (crypto-shredding).
async fn delete_doc(
    id: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (claims, r) = check(&state, &req, &id, Action::Manage).await?;
    let res = state
        .registry
        .send(DeleteDocument {
            id: r.id.clone(),
            subject: claims.as_ref().map(|c| c.sub.clone()),
        })
        .await
        .map_err(ActorError::from)?;
    state.guard.audit(AuditEvent::Admin {
        subject: claims.map_or_else(|| "anonymous".into(), |c| c.sub),
        action: "delete-document".into(),
        target: r.id,
        outcome: match &res {
            Ok(()) => "deleted".into(),
            Err(e) => format!("failed: {e}"),
        },
    });
    res?;
    Ok(HttpResponse::Ok().json(json!({"id": *id, "deleted": true})))
}
