//! Administrative routes of change events, each needing an admin token (with authentication
//! on) and each audited (see `docs/EVENTS.md`, "Operating"):
//! - `GET /api/admin/events/sinks`: every sink's state (pending, in flight, disabled,
//!   low-water mark);
//! - `GET /api/admin/events/dead?sink=NAME&limit=N`: dead letters, oldest first;
//! - `POST /api/admin/events/replay` with `{"ids": [...]}`: deliver events again;
//! - `POST /api/admin/events/sinks/{name}/enable`: enable a sink disabled by a 410.
//!
//! Without any sink configured each answers `4007 UnknownSink` (404).

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use coedit_actors::dispatcher::{Dispatcher, EnableSink, ListSinks, Replay};
use coedit_actors::events::{outbox, EventsError};
use coedit_actors::security::audit::AuditEvent;
use coedit_actors::ActorError;
use coedit_protocol::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use crate::admin::admin;
use crate::http::{ApiError, AppState};

/// Most dead letters one call lists.
pub const MAX_DEAD_LISTED: usize = 10_000;
/// Most ids one replay call takes.
pub const MAX_REPLAY_IDS: usize = 1_000;

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/admin/events/sinks", web::get().to(list_sinks))
        .route("/api/admin/events/dead", web::get().to(list_dead))
        .route("/api/admin/events/replay", web::post().to(replay))
        .route(
            "/api/admin/events/sinks/{name}/enable",
            web::post().to(enable_sink),
        );
}

fn dispatcher(state: &AppState) -> Result<Addr<Dispatcher>, ApiError> {
    state.dispatcher.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownSink,
            "no change-event sink is configured ([[events.webhook]])",
        )
    })
}

fn events_error(e: EventsError) -> ApiError {
    match e {
        EventsError::Config(m) => ApiError::new(ErrorCode::UnknownSink, m),
        other => ApiError::internal(other),
    }
}

fn audited(state: &AppState, subject: String, action: &str, target: String, outcome: String) {
    state.guard.audit(AuditEvent::Admin {
        subject,
        action: action.into(),
        target,
        outcome,
    });
}

/// `GET /api/admin/events/sinks`.
async fn list_sinks(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req, "listing event sinks").await?;
    let d = dispatcher(&state)?;
    let sinks = d.send(ListSinks).await.map_err(ActorError::from)?;
    Ok(HttpResponse::Ok().json(json!({ "sinks": sinks })))
}

/// `?sink=&limit=` of the dead-letter listing.
#[derive(Deserialize)]
struct DeadQuery {
    sink: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/admin/events/dead`.
async fn list_dead(
    req: HttpRequest,
    q: web::Query<DeadQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subject = admin(&state, &req, "listing dead letters").await?;
    dispatcher(&state)?;
    let q = q.into_inner();
    if let Some(s) = &q.sink {
        if !outbox::valid_sink_name(s) {
            return Err(ApiError::new(
                ErrorCode::UnknownSink,
                format!("no sink named {s:?}"),
            ));
        }
    }
    let limit = q.limit.unwrap_or(MAX_DEAD_LISTED).min(MAX_DEAD_LISTED);
    let store = state.store.clone();
    let sink = q.sink.clone();
    let dead = web::block(move || outbox::dead_letters(&*store, sink.as_deref(), limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(events_error)?;
    audited(
        &state,
        subject,
        "events-list-dead",
        q.sink.unwrap_or_else(|| "*".into()),
        format!("{} dead letters", dead.len()),
    );
    Ok(HttpResponse::Ok().json(json!({ "dead": dead })))
}

/// Body of a replay.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    ids: Vec<String>,
}

/// `POST /api/admin/events/replay`.
async fn replay(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subject = admin(&state, &req, "replaying events").await?;
    let d = dispatcher(&state)?;
    let body: ReplayBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::BadMessage,
            format!("expected {{\"ids\": [\"evt_…\", …]}}: {e}"),
        )
    })?;
    if body.ids.is_empty() || body.ids.len() > MAX_REPLAY_IDS {
        return Err(ApiError::new(
            ErrorCode::BadMessage,
            format!("give 1 to {MAX_REPLAY_IDS} event ids"),
        ));
    }
    let n = body.ids.len();
    let replayed = d
        .send(Replay(body.ids))
        .await
        .map_err(ActorError::from)?
        .map_err(events_error)?;
    let queued = replayed.iter().filter(|r| !r.sinks.is_empty()).count();
    audited(
        &state,
        subject,
        "events-replay",
        format!("{n} events"),
        format!("{queued} queued again"),
    );
    Ok(HttpResponse::Ok().json(json!({ "replayed": replayed })))
}

/// `POST /api/admin/events/sinks/{name}/enable`.
async fn enable_sink(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subject = admin(&state, &req, "enabling an event sink").await?;
    let d = dispatcher(&state)?;
    let name = name.into_inner();
    let res = d
        .send(EnableSink(name.clone()))
        .await
        .map_err(ActorError::from)?;
    audited(
        &state,
        subject,
        "events-enable-sink",
        name.clone(),
        match &res {
            Ok(()) => "enabled".into(),
            Err(e) => format!("failed: {e}"),
        },
    );
    res.map_err(events_error)?;
    Ok(HttpResponse::Ok().json(json!({ "sink": name, "enabled": true })))
}
