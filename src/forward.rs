//! Cluster mode: a REST call about a document another node orders (`/api/docs/{id}…`) is
//! forwarded to that node's advertised address (`[cluster] advertise_url`, carried in the
//! document's lease), and its answer returned as it came, so a client may send any call to
//! any node, as it may open a WebSocket on any node.
//!
//! How: the route runs as on one node (it authenticates and authorizes the caller before it
//! reads a body, and `http::read_body` keeps a copy of what it read in the request's
//! extensions); if it answers with `ActorError::Elsewhere` naming an owner with an address,
//! this middleware sends the same method, path, query, body and the headers that matter
//! (`Authorization`, `Content-Type`, `Accept`) to the owner, which checks the token and the
//! role itself: nodes trust no forwarded claim.
//!
//! Invariants:
//! - A request is forwarded at most once ([`FORWARDED_HEADER`]): an owner that moved again
//!   answers 503 naming the new owner instead of starting a chain of hops.
//! - An owner that cannot be reached leaves the original answer (503, code 4003, naming it):
//!   the client retries, by then another node holds the lease.
//! - Nothing else is forwarded: WebSocket upgrades are routed by the session layer
//!   (`cluster::remote_doc`), other paths are served where they arrive.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use actix_web::{web, HttpResponse};
use tracing::{debug, warn};

use crate::http::{ApiError, AppState};

/// Marks a forwarded request (its value: the forwarding node's address for the client).
pub const FORWARDED_HEADER: &str = "x-coedit-forwarded";
/// Names the node that answered a forwarded request.
pub const SERVED_BY_HEADER: &str = "x-coedit-served-by";
/// Longest a forwarded call may take, end to end.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer taken from an owner (a whole document's text or state at most).
pub const MAX_FORWARDED_ANSWER: u64 = 256 * 1024 * 1024;
/// The request headers forwarded.
const FORWARDED_HEADERS: [HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];
/// The answer headers returned.
const ANSWER_HEADERS: [&str; 3] = ["content-type", "etag", "x-coedit-rev"];

/// The body a route read, kept in the request's extensions by `http::read_body` (a cheap
/// copy: the same buffer) for a forward.
#[derive(Clone, Debug)]
pub struct BodyRead(pub web::Bytes);

/// The owner a request must go to (an `ApiError` made from `ActorError::Elsewhere`).
#[derive(Clone, Debug)]
pub struct ForwardTo {
    /// The owner node.
    pub node: String,
    /// Its advertised address.
    pub url: String,
}

/// The middleware. See the module documentation.
pub async fn forward_to_owner(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let eligible = req.path().starts_with("/api/docs/")
        && !req.headers().contains_key(FORWARDED_HEADER)
        && state.as_ref().is_some_and(|s| s.clustered);
    let Some(state) = state.filter(|_| eligible) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |p| p.as_str().to_string());
    let headers: Vec<(HeaderName, HeaderValue)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|h| Some((h.clone(), req.headers().get(h)?.clone())))
        .collect();
    let client = state.proxies.of(req.request());
    let res = next.call(req).await?.map_into_boxed_body();
    let target = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .and_then(|e| e.forward.clone());
    let Some(to) = target else {
        return Ok(res);
    };
    // The body the route read (none for reads and deletions).
    let body = res
        .request()
        .extensions()
        .get::<BodyRead>()
        .map_or_else(web::Bytes::new, |b| b.0.clone());
    let call = Forwarded {
        method,
        url: format!("{}{path}", to.url),
        headers,
        client: client.map(|c| c.to_string()),
        body,
    };
    match web::block(move || call.run()).await {
        Ok(Ok((status, headers, body))) => {
            let mut answer = HttpResponse::build(status);
            for (k, v) in headers {
                answer.insert_header((k, v));
            }
            answer.insert_header((SERVED_BY_HEADER, to.node.as_str()));
            let (req, _) = res.into_parts();
            Ok(ServiceResponse::new(req, answer.body(body)))
        }
        Ok(Err(e)) => {
            warn!(owner = %to.node, url = %to.url, error = %e, "forwarding a REST call to the document's owner failed");
            Ok(res)
        }
        Err(e) => {
            debug!(error = %e, "forwarding thread failed");
            Ok(res)
        }
    }
}

/// One call to forward.
struct Forwarded {
    method: Method,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: Option<String>,
    body: web::Bytes,
}

/// Why a forward failed.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("building the request: {0}")]
    Build(#[from] ureq::http::Error),
    #[error("{0}")]
    Http(#[from] ureq::Error),
    #[error("the owner answered status {0}, which is not an HTTP status")]
    Status(u16),
}

/// An answer: status, headers, body.
type Answer = (StatusCode, Vec<(String, String)>, Vec<u8>);

impl Forwarded {
    /// Sends it (on a blocking thread) and reads the owner's answer.
    fn run(self) -> Result<Answer, ForwardError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(FORWARD_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut b = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(&self.url)
            .header(FORWARDED_HEADER, "1");
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_bytes());
        }
        if let Some(c) = &self.client {
            b = b.header("x-forwarded-for", c.as_str());
        }
        let mut answer = if self.body.is_empty() {
            agent.run(b.body(())?)?
        } else {
            agent.run(b.body(self.body.to_vec())?)?
        };
        let status = answer.status().as_u16();
        let headers = ANSWER_HEADERS
            .iter()
            .filter_map(|h| {
                let v = answer.headers().get(*h)?.to_str().ok()?;
                Some((h.to_string(), v.to_string()))
            })
            .collect();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_FORWARDED_ANSWER)
            .read_to_vec()?;
        let status = StatusCode::from_u16(status).map_err(|_| ForwardError::Status(status))?;
        Ok((status, headers, body))
    }
}
