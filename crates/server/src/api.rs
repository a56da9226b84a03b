//! The REST API under `/api/v1`. Every answer is JSON; every error is
//! `{"error": {"kind": "invalid" | "not_found" | "conflict" | "too_large" | "unauthorized" | "forbidden", "message": "..."}}`.
//!
//! Every request but `health` carries `Authorization: Bearer TOKEN`; [`authenticate`] checks the
//! token and the role the route needs ([`thunderhead_core::access::need`]), and job routes check
//! that the caller may act on the job.

mod blobs;
mod cost;
mod enrolment;
mod events;
mod jobs;
mod nodes;
mod packages;
mod providers;
mod templates;
mod users;

use crate::actor::{Handle, Reply, Request};
use crate::enrol::Enrolment;
use crate::locations::Locations;
use crate::secrets::SecretKey;
use crate::tls::Peer;
use crate::users::Users;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thunderhead_blob::BlobStore;
use thunderhead_core::access::{self, Need};
use thunderhead_core::view::{ErrorBody, ErrorDetail};
use thunderhead_core::{Error, ErrorKind};
use thunderhead_providers::Providers;
use thunderhead_store::Store;

/// The largest request body accepted (a job file with many tasks).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The largest join request (a token and a node name), which needs no credential to send.
const JOIN_BODY_BYTES: usize = 16 * 1024;

#[derive(Clone)]
struct Api {
    handle: Handle,
    store: Arc<dyn Store>,
    providers: Providers,
    secrets: Arc<SecretKey>,
    blobs: BlobStore,
    users: Arc<Users>,
    enrolment: Option<Arc<Enrolment>>,
    /// Where every location is checked and opened.
    locations: Arc<Locations>,
    /// Event streams open right now.
    streams: Arc<std::sync::atomic::AtomicUsize>,
    /// Event streams open right now, by user.
    stream_users: Arc<Mutex<HashMap<String, usize>>>,
}

pub struct Parts {
    pub handle: Handle,
    pub store: Arc<dyn Store>,
    pub providers: Providers,
    pub secrets: Arc<SecretKey>,
    pub blobs: BlobStore,
    pub users: Arc<Users>,
    pub enrolment: Option<Arc<Enrolment>>,
    pub locations: Arc<Locations>,
}

pub fn router(parts: Parts) -> Router {
    let Parts { handle, store, providers, secrets, blobs, users, enrolment, locations } = parts;
    let api = Api {
        handle,
        store,
        providers,
        secrets,
        blobs,
        users,
        enrolment,
        locations,
        streams: Default::default(),
        stream_users: Default::default(),
    };
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/whoami", get(users::whoami))
        .route("/api/v1/users", get(users::list_users).post(users::add_user))
        .route("/api/v1/users/{name}", axum::routing::delete(users::remove_user))
        .route("/api/v1/users/{name}/token", post(users::rotate_token))
        .route("/api/v1/join-tokens", get(enrolment::list_join_tokens).post(enrolment::create_join_token))
        .route("/api/v1/join-tokens/{id}", axum::routing::delete(enrolment::delete_join_token))
        .route("/api/v1/nodes/{name}/revoke", post(enrolment::revoke_node))
        // Anyone may call it: its body is small, and a large one is refused before it is read.
        .route(thunderhead_proto::JOIN_PATH, post(enrolment::join).layer(DefaultBodyLimit::max(JOIN_BODY_BYTES)))
        .route("/api/v1/templates", get(templates::list_templates).post(templates::create_template))
        .route(
            "/api/v1/templates/{name}",
            get(templates::show_template).patch(templates::edit_template).delete(templates::delete_template),
        )
        .route("/api/v1/templates/{name}/validate", post(templates::validate_template))
        .route("/api/v1/templates/{name}/resume", post(templates::resume_template))
        .route("/api/v1/templates/{name}/orphans/remove", post(templates::remove_leftovers))
        .route("/api/v1/providers", get(providers::list_providers))
        .route("/api/v1/providers/{name}", get(providers::show_provider))
        .route("/api/v1/nodes", get(nodes::list_nodes).post(nodes::add_nodes))
        .route("/api/v1/nodes/actions", post(nodes::node_action))
        .route("/api/v1/nodes/{name}", get(nodes::show_node))
        .route("/api/v1/nodes/{name}/log", get(nodes::node_log))
        .route("/api/v1/nodes/{name}/tasks", get(nodes::node_tasks))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/cost", get(cost::cost))
        .route("/api/v1/cost/series", get(cost::cost_series))
        .route("/api/v1/packages", get(packages::list_packages))
        .route("/api/v1/packages/install", post(packages::install_packages))
        .route(
            "/api/v1/packages/{name}",
            get(packages::show_package).put(packages::upload_package).delete(packages::remove_package),
        )
        .route("/api/v1/packages/{name}/download", get(packages::download_package))
        .route(&format!("{}/{{*key}}", thunderhead_proto::BLOB_PATH), get(blobs::agent_blob))
        .route(thunderhead_proto::BLOB_PATH, get(blobs::agent_fetch_location).put(blobs::store_location))
        .route("/api/v1/blobs", get(blobs::fetch_location))
        .route("/api/v1/jobs/reserve", post(jobs::reserve_job))
        .route("/api/v1/jobs/{id}/inputs/{*path}", put(jobs::upload_input))
        .route("/api/v1/jobs/{id}/outputs", get(jobs::job_outputs))
        .route("/api/v1/jobs", get(jobs::list_jobs).post(jobs::submit_job))
        .route("/api/v1/jobs/{id}", get(jobs::show_job))
        .route("/api/v1/jobs/{id}/cancel", post(jobs::cancel_job))
        .route("/api/v1/jobs/{id}/requeue", post(jobs::requeue_job))
        .route("/api/v1/jobs/{id}/tasks", get(jobs::list_tasks))
        .route("/api/v1/jobs/{id}/tasks/{index}", get(jobs::show_task))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), authenticate))
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(contain_panics))
        .with_state(api)
}

/// A handler that panics fails its own request with a clear error; the connection, the other
/// requests and the head node go on.
async fn contain_panics(request: axum::extract::Request, next: Next) -> Response {
    use futures_util::FutureExt;
    let route = request.uri().path().chars().take(100).collect::<String>();
    match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            let route = thunderhead_core::text::escape(&route).into_owned();
            tracing::error!(%route, "a request handler panicked; the request was refused and the head node goes on");
            ApiError(Error::internal(format!(
                "the head node failed while handling {route}; nothing else was affected: please report it"
            )))
            .into_response()
        }
    }
}

/// Refusals axum makes before a handler runs (a path or query that does not parse, a method the
/// route does not take) answer in the same JSON as every other error.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this route does not take that method (GET /api/v1/openapi.json lists what each route takes)".to_string()
        }
        _ => String::from_utf8_lossy(&text).trim().to_string(),
    };
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::CONFLICT => ErrorKind::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
        StatusCode::FORBIDDEN => ErrorKind::Forbidden,
        _ => ErrorKind::Invalid,
    };
    let mut answer = ApiError(Error { kind, message }).into_response();
    *answer.status_mut() = status;
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        answer.headers_mut().insert(axum::http::header::ALLOW, allow.clone());
    }
    answer
}

/// The node an agent request comes from, proved by its certificate; `None` over plain HTTP,
/// where agents are not checked.
#[derive(Clone)]
struct AgentNode(Option<String>);

/// Checks the caller's token and that its role covers the route, before the route runs; the
/// handler finds the [`Caller`] among the request's extensions.
async fn authenticate(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    route: MatchedPath,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_string();
    let need = access::need(&method, route.as_str());
    match need {
        Need::Public => return next.run(request).await,
        Need::Agent => {
            let verdict = match &api.enrolment {
                None => Ok(AgentNode(None)),
                Some(e) => e.node_of_peer(&peer).map(|node| AgentNode(Some(node))),
            };
            match verdict {
                Ok(node) => request.extensions_mut().insert(node),
                Err(why) => {
                    tracing::warn!(peer = %peer.addr, route = route.as_str(), reason = %why, "refused an agent request");
                    return ApiError(Error::unauthorized(format!(
                        "only the cluster's agents may use this route: {why}"
                    )))
                    .into_response();
                }
            };
            return next.run(request).await;
        }
        Need::User | Need::Administrator => {}
    }
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return ApiError(Error::unauthorized(
            "this request carries no API token (send Authorization: Bearer TOKEN; the CLI reads it from --token, THUNDERHEAD_TOKEN or the head node's access.json)",
        ))
        .into_response();
    };
    let Some(caller) = api.users.verify(token) else {
        return ApiError(Error::unauthorized(
            "the API token is not valid here (it was mistyped, replaced or removed, or belongs to another head node; ask an Administrator for a new one: thunderhead user token NAME)",
        ))
        .into_response();
    };
    if let Err(e) = caller.allow(need, &method, route.as_str()) {
        tracing::info!(user = %caller.name, %method, route = route.as_str(), "refused: role too low");
        return ApiError(e).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

pub struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError(too_large());
        }
        ApiError(Error::invalid(format!("the request body is not valid: {}", e.body_text())))
    }
}

fn too_large() -> Error {
    Error {
        kind: ErrorKind::TooLarge,
        message: format!(
            "the request body is larger than the limit of {} MiB (submit many tasks as a sweep, or split them over several jobs)",
            MAX_BODY_BYTES >> 20
        ),
    }
}

impl From<thunderhead_store::StoreError> for ApiError {
    fn from(e: thunderhead_store::StoreError) -> Self {
        ApiError(Error { kind: ErrorKind::Conflict, message: e.to_string() })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = ErrorBody { error: ErrorDetail { kind: self.0.kind, message: self.0.message } };
        (status, Json(body)).into_response()
    }
}

/// What a handler answers: a typed value, serialised once here, or an error.
type Answer<T = Value> = Result<Json<T>, ApiError>;

/// Asks the actor and answers with its typed reply.
async fn ask<T>(api: &Api, request: impl FnOnce(Reply<T>) -> Request) -> Answer<T> {
    Ok(Json(api.handle.ask(request).await?))
}

/// Runs blocking work (the store, key derivation) off the async workers; a panic in it fails
/// this request alone, with an internal error.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "blocking work of a request failed; the request was refused and the head node goes on");
        ApiError(Error::internal(format!(
            "the head node failed while handling this request ({e}); nothing else was affected: please report it"
        )))
    })
}

async fn not_found() -> ApiError {
    ApiError(Error::not_found("no such API route (see /api/v1/health; routes live under /api/v1)"))
}

async fn health(State(api): State<Api>) -> Json<Value> {
    let streams = api.streams.load(std::sync::atomic::Ordering::Relaxed);
    Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "event_streams": streams}))
}

/// The head node's enrolment, or why there is none (over plain HTTP).
fn enrolment_of(api: &Api) -> Result<Arc<Enrolment>, ApiError> {
    api.enrolment.clone().ok_or_else(|| ApiError(crate::enrol::plain_http()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_and_the_next_request_is_served() {
        async fn broken() -> &'static str {
            panic!("a bug")
        }
        let app: Router = Router::new()
            .route("/broken", get(broken))
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(contain_panics));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let ask = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let answer = ask("/broken").await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(answer.contains("\"internal\"") && answer.contains("please report it"), "{answer}");
        assert!(ask("/fine").await.ends_with("fine"));
    }
}
