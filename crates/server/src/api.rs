//! The REST API under `/api/v1`. Every answer is JSON; every error is
//! `{"error": {"kind": "invalid" | "not_found" | "conflict" | "too_large" | "unauthorized" | "forbidden", "message": "..."}}`.
//!
//! Every request but `health` carries `Authorization: Bearer TOKEN`; [`authenticate`] checks the
//! token and the role the route needs ([`thunderhead_core::access::need`]), and job routes check
//! that the caller may act on the job.

use crate::actor::{Handle, Reply, Request};
use crate::enrol::Enrolment;
use crate::locations::{Locations, Target, Who};
use crate::secrets::{SecretKey, unhex};
use crate::tls::Peer;
use crate::users::{Shown, Users};
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use thunderhead_blob::{BlobError, BlobStore};
use thunderhead_core::access::{self, Caller, FileUse, JoinTokenView, Need, Role, UserView};
use thunderhead_core::job::{JobSubmission, TaskState};
use thunderhead_core::package::Package;
use thunderhead_core::persist::TaskRow;
use thunderhead_core::template::{NewTemplate, Secret, TemplateEdit};
use thunderhead_core::view::{
    AddNodes, CostReport, ErrorBody, ErrorDetail, JobCost, JobView, NodeActionRequest, NodeActionResult, NodeLogEntry,
    NodeView, PackageView, SubmitReply, TaskOutput, TaskView, TemplateView,
};
use thunderhead_core::{Error, ErrorKind};
use thunderhead_providers::Providers;
use thunderhead_providers::azure_provider::inspect_certificate;
use thunderhead_store::{Store, TaskQuery};

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
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}", axum::routing::delete(remove_user))
        .route("/api/v1/users/{name}/token", post(rotate_token))
        .route("/api/v1/join-tokens", get(list_join_tokens).post(create_join_token))
        .route("/api/v1/join-tokens/{id}", axum::routing::delete(delete_join_token))
        .route("/api/v1/nodes/{name}/revoke", post(revoke_node))
        // Anyone may call it: its body is small, and a large one is refused before it is read.
        .route(thunderhead_proto::JOIN_PATH, post(join).layer(DefaultBodyLimit::max(JOIN_BODY_BYTES)))
        .route("/api/v1/templates", get(list_templates).post(create_template))
        .route("/api/v1/templates/{name}", get(show_template).patch(edit_template).delete(delete_template))
        .route("/api/v1/templates/{name}/validate", post(validate_template))
        .route("/api/v1/templates/{name}/resume", post(resume_template))
        .route("/api/v1/nodes", get(list_nodes).post(add_nodes))
        .route("/api/v1/nodes/actions", post(node_action))
        .route("/api/v1/nodes/{name}", get(show_node))
        .route("/api/v1/nodes/{name}/log", get(node_log))
        .route("/api/v1/nodes/{name}/tasks", get(node_tasks))
        .route("/api/v1/events", get(events))
        .route("/api/v1/cost", get(cost))
        .route("/api/v1/cost/series", get(cost_series))
        .route("/api/v1/packages", get(list_packages))
        .route("/api/v1/packages/install", post(install_packages))
        .route("/api/v1/packages/{name}", get(show_package).put(upload_package).delete(remove_package))
        .route("/api/v1/packages/{name}/download", get(download_package))
        .route(&format!("{}/{{*key}}", thunderhead_proto::BLOB_PATH), get(agent_blob))
        .route(thunderhead_proto::BLOB_PATH, get(agent_fetch_location).put(store_location))
        .route("/api/v1/blobs", get(fetch_location))
        .route("/api/v1/jobs/reserve", post(reserve_job))
        .route("/api/v1/jobs/{id}/inputs/{*path}", put(upload_input))
        .route("/api/v1/jobs/{id}/outputs", get(job_outputs))
        .route("/api/v1/jobs", get(list_jobs).post(submit_job))
        .route("/api/v1/jobs/{id}", get(show_job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/api/v1/jobs/{id}/requeue", post(requeue_job))
        .route("/api/v1/jobs/{id}/tasks", get(list_tasks))
        .route("/api/v1/jobs/{id}/tasks/{index}", get(show_task))
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

/// Checks the caller's token and that its role covers the route, before the route runs; the
/// handler finds the [`Caller`] among the request's extensions.
/// The node an agent request comes from, proved by its certificate; `None` over plain HTTP,
/// where agents are not checked.
#[derive(Clone)]
struct AgentNode(Option<String>);

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

/// How long a stream of events waits after a change for more, to send one event for a burst.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(250);

/// The most event streams one user may hold open: a page needs one, a user several pages.
const STREAMS_PER_USER: usize = 16;

/// Counts an open event stream, in all and for its user, while it lives.
struct StreamGuard {
    all: Arc<std::sync::atomic::AtomicUsize>,
    per_user: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl StreamGuard {
    /// Opens a stream for `user`, unless they hold [`STREAMS_PER_USER`] already.
    fn open(api: &Api, user: &str) -> Result<StreamGuard, ApiError> {
        let mut per_user = api.stream_users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = per_user.entry(user.to_string()).or_default();
        if *held >= STREAMS_PER_USER {
            return Err(Error::conflict(format!(
                "user {user} holds {held} event streams open already, the most one user may (close a page, or wait \
                 for a closed one to be noticed)"
            ))
            .into());
        }
        *held += 1;
        api.streams.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(StreamGuard { all: api.streams.clone(), per_user: api.stream_users.clone(), user: user.to_string() })
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.all.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut per_user = self.per_user.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = per_user.get_mut(&self.user) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

/// Server-sent events for live pages: `change` events whose data is `{"seq", "topics"}`, the
/// topics (`nodes`, `jobs`, `templates`, `packages`, `cost`) whose resources changed since the
/// last event. The first event names every topic. A burst of changes makes one event.
async fn events(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use thunderhead_core::feed::{Generations, Topics};
    let start = (api.handle.follow(), None::<Generations>, StreamGuard::open(&api, &caller.name)?);
    let stream = futures_util::stream::unfold(start, |(mut changes, seen, guard)| async move {
        let (topics, now) = match seen {
            None => (Topics::ALL, *changes.borrow_and_update()),
            Some(seen) => loop {
                changes.changed().await.ok()?;
                tokio::time::sleep(COALESCE).await;
                let now = *changes.borrow_and_update();
                let topics = now.since(&seen);
                if !topics.is_empty() {
                    break (topics, now);
                }
            },
        };
        let data = serde_json::json!({"seq": now.seq(), "topics": topics.names()}).to_string();
        let event = Event::default().event("change").data(data);
        Some((Ok::<_, std::convert::Infallible>(event), (changes, Some(now), guard)))
    });
    let mut response =
        Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))).into_response();
    response.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}

async fn list_templates(State(api): State<Api>) -> Answer<Vec<TemplateView>> {
    ask(&api, Request::ListTemplates).await
}

async fn create_template(
    State(api): State<Api>,
    body: Result<Json<NewTemplate>, JsonRejection>,
) -> Answer<TemplateView> {
    let mut t = body?.0;
    let f = &mut t.fields;
    let (cert, pw) = (f.certificate.take(), f.certificate_password.take());
    f.sealed = seal_certificate(&api, true, &t.provider, &mut f.settings, cert, pw).await?;
    ask(&api, |r| Request::CreateTemplate(t, r)).await
}

/// Checks a certificate a client sent and seals it with its password, so that only the sealed
/// form is ever stored; sets the certificate's thumbprint, subject and key size in `settings`.
async fn seal_certificate(
    api: &Api,
    creating: bool,
    provider: &str,
    settings: &mut serde_json::Map<String, Value>,
    certificate: Option<Secret>,
    password: Option<Secret>,
) -> Result<Option<String>, ApiError> {
    let (certificate, password) = match (certificate, password) {
        (None, None) => {
            // What the certificate says of itself cannot be set apart from it.
            if let Some(key) = ["thumbprint", "certificate_subject", "certificate_key_bits"]
                .into_iter()
                .find(|k| settings.contains_key(*k) && (*k != "thumbprint" || !creating))
            {
                return Err(Error::invalid(format!(
                    "setting {key} comes from the certificate (give --certificate FILE.pfx --certificate-password-file FILE to change it)"
                ))
                .into());
            }
            return Ok(None);
        }
        (Some(c), Some(p)) => (c, p),
        _ => {
            return Err(Error::invalid(
                "give the certificate and its password together (--certificate FILE.pfx --certificate-password-file FILE)",
            )
            .into());
        }
    };
    if provider != "azure" {
        return Err(
            Error::invalid(format!("provider {provider} takes no certificate (only azure templates do)")).into()
        );
    }
    let pfx = unhex(&certificate.0).ok_or_else(|| {
        Error::invalid("the certificate is not hex-encoded PKCS#12 data (send the PFX file's bytes as hex)")
    })?;
    let given = settings.get("thumbprint").and_then(Value::as_str).map(str::to_string);
    // Opening a PKCS#12 file derives keys the file says how hard to derive: off the runtime.
    let pw = password.0.clone();
    let info = tokio::task::spawn_blocking(move || inspect_certificate(&pfx, &pw, given.as_deref()))
        .await
        .map_err(|e| Error::conflict(format!("the certificate check was interrupted: {e}")))?
        .map_err(|e| Error::invalid(e.message))?;
    settings.insert("thumbprint".into(), Value::from(info.thumbprint));
    settings.insert("certificate_subject".into(), Value::from(info.subject));
    settings.insert("certificate_key_bits".into(), Value::from(info.key_bits));
    let plain = serde_json::json!({"pfx": certificate.0, "password": password.0}).to_string();
    Ok(Some(api.secrets.seal(plain.as_bytes())))
}

async fn show_template(State(api): State<Api>, Path(name): Path<String>) -> Answer<TemplateView> {
    ask(&api, |r| Request::ShowTemplate(name, r)).await
}

async fn edit_template(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Result<Json<TemplateEdit>, JsonRejection>,
) -> Answer<TemplateView> {
    let mut edit = body?.0;
    if edit.certificate.is_some() || edit.certificate_password.is_some() {
        let current = api.handle.ask(|r| Request::TemplateForCheck(name.clone(), r)).await?;
        let mut settings = current.settings.clone();
        settings.extend(edit.settings.clone());
        let (cert, pw) = (edit.certificate.take(), edit.certificate_password.take());
        let sealed = seal_certificate(&api, false, &current.provider, &mut settings, cert, pw).await?;
        for key in ["thumbprint", "certificate_subject", "certificate_key_bits"] {
            edit.settings.insert(key.into(), settings[key].clone());
        }
        edit.sealed = sealed;
    } else {
        // Without a certificate, what it says of itself cannot change.
        seal_certificate(&api, false, "", &mut edit.settings.clone(), None, None).await?;
    }
    ask(&api, |r| Request::EditTemplate(name, edit, r)).await
}

async fn resume_template(State(api): State<Api>, Path(name): Path<String>) -> Answer<TemplateView> {
    ask(&api, |r| Request::ResumeTemplate(name, r)).await
}

async fn delete_template(State(api): State<Api>, Path(name): Path<String>) -> Answer<()> {
    ask(&api, |r| Request::DeleteTemplate(name, r)).await
}

async fn validate_template(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Answer<Vec<thunderhead_providers::Check>> {
    let template = api.handle.ask(|r| Request::TemplateForCheck(name, r)).await?;
    let mut checks = match api.providers.get(&template.provider) {
        Some(p) => p.validate(&template).await,
        None => vec![thunderhead_providers::Check {
            name: "provider".into(),
            ok: false,
            detail: format!("provider {} is not available in this build", template.provider),
        }],
    };
    if let Some(sealed) = &template.sealed {
        let opens = api.secrets.open(sealed).is_some();
        checks.push(thunderhead_providers::Check {
            name: "stored secrets".into(),
            ok: opens,
            detail: if opens {
                "sealed at rest; they open with this head node's key".into()
            } else {
                "they do not open with this head node's key (was secret.key replaced?); give the certificate again with template edit".into()
            },
        });
    }
    Ok(Json(checks))
}

#[derive(Deserialize)]
struct NodeFilter {
    template: Option<String>,
}

async fn list_nodes(State(api): State<Api>, Query(filter): Query<NodeFilter>) -> Answer<Vec<NodeView>> {
    ask(&api, |r| Request::ListNodes(filter.template, r)).await
}

async fn add_nodes(State(api): State<Api>, body: Result<Json<AddNodes>, JsonRejection>) -> Answer<Vec<NodeView>> {
    let req = body?.0;
    ask(&api, |r| Request::AddNodes(req, r)).await
}

async fn node_action(
    State(api): State<Api>,
    body: Result<Json<NodeActionRequest>, JsonRejection>,
) -> Answer<Vec<NodeActionResult>> {
    let req = body?.0;
    ask(&api, |r| Request::NodeAction(req, r)).await
}

async fn show_node(State(api): State<Api>, Path(name): Path<String>) -> Answer<NodeView> {
    ask(&api, |r| Request::ShowNode(name, r)).await
}

async fn node_log(State(api): State<Api>, Path(name): Path<String>) -> Answer<Vec<NodeLogEntry>> {
    // A proxy's log outlives the proxy: answer with it while there is one.
    let known = api.handle.ask(|r| Request::CheckLogName(name.clone(), r)).await;
    let store = api.store.clone();
    let log = blocking(move || store.node_log(&name)).await??;
    if let Err(e) = known
        && log.is_empty()
    {
        return Err(e.into());
    }
    Ok(Json(log))
}

/// The tasks running on a node and the last that ended there; a User sees only their own.
async fn node_tasks(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Answer<Vec<TaskView>> {
    // The same rule as `Caller::may_manage_job`, applied by the cluster, which knows each
    // task's owner.
    let owner = (caller.role < Role::JobAdministrator).then(|| caller.name.clone());
    ask(&api, |reply| Request::NodeTasks { node: name, owner, reply }).await
}

/// The jobs the caller may see: a User's own, every job for the administrators.
async fn visible_jobs(api: &Api, caller: &Caller) -> Result<Vec<JobView>, ApiError> {
    let jobs = api.handle.ask(Request::ListJobs).await?;
    Ok(jobs.into_iter().filter(|j| caller.may_manage_job(&j.owner)).collect())
}

/// Job `id`, if the caller may act on it.
async fn own_job(api: &Api, caller: &Caller, id: u64) -> Result<JobView, ApiError> {
    let job = api.handle.ask(|r| Request::ShowJob(id, r)).await?;
    caller.check_job(id, &job.owner)?;
    Ok(job)
}

async fn list_jobs(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Answer<Vec<JobView>> {
    Ok(Json(visible_jobs(&api, &caller).await?))
}

async fn submit_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<JobSubmission>, JsonRejection>,
) -> Answer<SubmitReply> {
    let mut submission = body?.0;
    if let Some(id) = submission.reserved_id {
        match api.handle.ask(|r| Request::ReservedBy(id, r)).await? {
            Some(reserver) => caller.check_job(id, &reserver)?,
            // Reservations are kept in memory: one made before a restart has no known owner.
            None if caller.role < Role::JobAdministrator => {
                return Err(Error::conflict(format!(
                    "job id {id} is not reserved by you (it may have been reserved before the head node restarted); submit again: the client reserves a new one"
                ))
                .into());
            }
            None => {}
        }
    }
    submission.owner = caller.name.clone();
    check_staging(&api, &caller, &submission).await?;
    ask(&api, |r| Request::Submit(submission, r)).await
}

/// Every location a submission names, through the one check: inputs are read, output prefixes
/// written, by the submitting user. Entries that do not parse are left to the job's validation.
async fn check_staging(api: &Api, caller: &Caller, submission: &JobSubmission) -> Result<(), ApiError> {
    use thunderhead_core::staging::{parse_input, parse_output};
    let inputs =
        submission.inputs.iter().flatten().filter_map(|i| parse_input(i).ok()).map(|i| (i.source, FileUse::Read));
    let outputs =
        submission.outputs.iter().flatten().filter_map(|o| parse_output(o).ok()?.prefix).map(|p| (p, FileUse::Write));
    for (location, use_) in inputs.chain(outputs).collect::<Vec<_>>() {
        // A `*` stands for the sweep index: a job's area must be named by its number.
        check_location(api, &location, use_, Who::User(caller, None)).await?;
    }
    Ok(())
}

async fn show_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Answer<JobView> {
    Ok(Json(own_job(&api, &caller, id).await?))
}

async fn cancel_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Answer<JobView> {
    own_job(&api, &caller, id).await?;
    ask(&api, |r| Request::CancelJob(id, r)).await
}

/// Puts the failed and canceled tasks of an ended job back in the queue.
async fn requeue_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Answer<JobView> {
    let seen = own_job(&api, &caller, id).await?;
    let store = api.store.clone();
    let ended = blocking(move || {
        let mut ended = Vec::new();
        for state in [TaskState::Failed, TaskState::Canceled] {
            let mut after = None;
            loop {
                let rows = store.tasks(TaskQuery { job: id, after, limit: 10_000, state: Some(state) })?;
                ended.extend(rows.iter().map(|r| (r.index, r.attempt)));
                match rows.last() {
                    Some(last) if rows.len() == 10_000 => after = Some(last.index),
                    _ => break,
                }
            }
        }
        ended.sort_unstable();
        Ok::<_, thunderhead_store::StoreError>(ended)
    })
    .await??;
    ask(&api, |reply| Request::RequeueJob { id, ended_at: seen.ended_at, ended, reply }).await
}

#[derive(Deserialize)]
struct TaskFilter {
    after: Option<u64>,
    limit: Option<u32>,
    state: Option<String>,
}

/// Rows of tasks that have started at least once (and of every task of a job with explicit
/// tasks), a page at a time: `?after=INDEX&limit=N&state=Failed`.
async fn list_tasks(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    Query(filter): Query<TaskFilter>,
) -> Answer<Vec<TaskView>> {
    own_job(&api, &caller, id).await?;
    let state = match filter.state.as_deref() {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            Error::invalid(format!(
                "task state \"{s}\" is not known (use Queued, Running, Finished, Failed or Canceled)"
            ))
        })?),
    };
    let query = TaskQuery { job: id, after: filter.after, limit: filter.limit.unwrap_or(10_000).min(100_000), state };
    let store = api.store.clone();
    let rows = blocking(move || store.tasks(query)).await??;
    Ok(Json(rows.iter().map(TaskRow::view).collect()))
}

async fn show_task(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path((id, index)): Path<(u64, u64)>,
) -> Answer {
    own_job(&api, &caller, id).await?;
    api.handle.ask(|r| Request::CheckTask(id, index, r)).await?;
    let store = api.store.clone();
    let row = blocking(move || store.task(id, index)).await??;
    let row = row.unwrap_or_else(|| thunderhead_core::persist::TaskRow::new(id, index));
    let view = serde_json::json!({
        "task": row.view(),
        "output": TaskOutput {
            id: format!("{id}.{index}"),
            state: row.state.name().to_string(),
            exit_code: row.exit_code,
            stdout: row.stdout.clone().unwrap_or_default(),
            stderr: row.stderr.clone().unwrap_or_default(),
        },
    });
    Ok(Json(view))
}

#[derive(Deserialize)]
struct CostFilter {
    template: Option<String>,
    job: Option<u64>,
    /// Milliseconds since the epoch; default: everything.
    since: Option<u64>,
}

/// Node-hours and cost per set from the usage records, and cost per job from the jobs.
async fn cost(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(filter): Query<CostFilter>,
) -> Answer<CostReport> {
    let until = crate::now_millis();
    let since = filter.since.unwrap_or(0);
    if let Some(t) = &filter.template {
        api.handle.ask(|r| Request::ShowTemplate(t.clone(), r)).await?;
    }
    let jobs = match filter.job {
        Some(id) => vec![own_job(&api, &caller, id).await?],
        None => visible_jobs(&api, &caller).await?,
    };
    let store = api.store.clone();
    let usage = blocking(move || store.usage(since)).await??;
    let mut sets = thunderhead_core::cost::summarize(&usage, since, until);
    sets.retain(|s| filter.template.as_deref().is_none_or(|t| t == s.template));
    let jobs: Vec<JobCost> = jobs
        .into_iter()
        .filter(|j| filter.job.is_none_or(|id| id == j.id))
        .filter(|j| j.ended_at.is_none_or(|e| e >= since))
        .map(|j| JobCost { id: j.id, name: j.name, core_hours: j.core_hours, cost: j.cost })
        .collect();
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    let spent: Vec<&BTreeMap<String, f64>> = if filter.job.is_some() {
        jobs.iter().map(|j| &j.cost).collect()
    } else {
        sets.iter().map(|s| &s.cost).collect()
    };
    for cost in spent {
        for (currency, amount) in cost {
            *total.entry(currency.clone()).or_default() += amount;
        }
    }
    let report = CostReport {
        since,
        until,
        sets: if filter.job.is_some() { vec![] } else { sets },
        jobs: if filter.template.is_some() { vec![] } else { jobs },
        total,
    };
    Ok(Json(report))
}

#[derive(Deserialize)]
struct SeriesFilter {
    since: Option<u64>,
    until: Option<u64>,
    points: Option<u32>,
}

/// The most points a cost chart may have.
const MAX_CHART_POINTS: u32 = 1_000;

/// What each set and each job the caller may see spent over a period, as chart lines: the
/// amount spent from `since` to each of `times`.
async fn cost_series(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(filter): Query<SeriesFilter>,
) -> Answer {
    use thunderhead_core::cost;
    let now = crate::now_millis();
    let until = filter.until.unwrap_or(now).min(now);
    let since = filter.since.unwrap_or(until.saturating_sub(24 * 3_600_000));
    if since >= until {
        return Err(Error::invalid(format!(
            "since ({since}) is not before until ({until}): give a period that ends after it begins, in milliseconds since the epoch"
        ))
        .into());
    }
    let points = filter.points.unwrap_or(60);
    if !(2..=MAX_CHART_POINTS).contains(&points) {
        return Err(Error::invalid(format!(
            "points {points} is outside 2..={MAX_CHART_POINTS} (a chart needs 2 to {MAX_CHART_POINTS} points)"
        ))
        .into());
    }
    let jobs: BTreeMap<String, String> =
        visible_jobs(&api, &caller).await?.into_iter().map(|j| (j.id.to_string(), j.name)).collect();
    let store = api.store.clone();
    let times = cost::chart_times(since, until, points as usize);
    // Reading the stretches and samples and adding them up both stay off the async workers.
    let (set_lines, job_lines, times) = blocking(move || {
        let (usage, samples) = (store.usage(since)?, store.job_cost(since, until)?);
        Ok::<_, thunderhead_store::StoreError>((
            cost::set_lines(&usage, &times),
            cost::job_lines(&samples, &times),
            times,
        ))
    })
    .await??;
    let sets: Vec<Value> = set_lines
        .into_iter()
        .map(|l| serde_json::json!({"template": l.key, "currency": l.currency, "values": l.values}))
        .collect();
    let jobs: Vec<Value> = job_lines
        .into_iter()
        .filter_map(|l| {
            let name = jobs.get(&l.key)?;
            let id: u64 = l.key.parse().ok()?;
            Some(serde_json::json!({"id": id, "name": name, "currency": l.currency, "values": l.values}))
        })
        .collect();
    Ok(Json(serde_json::json!({"since": since, "until": until, "times": times, "sets": sets, "jobs": jobs})))
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        let kind = match e {
            BlobError::NotFound { .. } => ErrorKind::NotFound,
            BlobError::BadUri { .. } => ErrorKind::Invalid,
            BlobError::Checksum { .. } | BlobError::Transfer { .. } | BlobError::Local { .. } => ErrorKind::Conflict,
        };
        ApiError(Error { kind, message: e.to_string() })
    }
}

#[derive(Deserialize)]
struct UploadQuery {
    /// The uploaded file's name, e.g. `solver.tar.gz`.
    file: String,
    template: Option<String>,
}

/// Receives a package file, streamed, into the blob store; then records it as the next
/// version of the package.
async fn upload_package(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Answer<PackageView> {
    let (file, template) = (q.file.clone(), q.template.clone());
    let (version, store) =
        api.handle.ask(|reply| Request::ReservePackage { name: name.clone(), file, template, reply }).await?;
    let mut package = Package {
        name,
        version,
        file_name: q.file,
        size: 0,
        sha256: String::new(),
        template: q.template,
        store,
        uploaded_at: crate::now_millis(),
    };
    // The template's store if it names one, else the head node's.
    let (blobs, key) = locate(&api, &package.location(), FileUse::Write, Who::HeadNode).await?;
    let info = blobs.put_stream(&key, body.into_data_stream()).await?;
    package.size = info.size;
    package.sha256 = info.sha256;
    ask(&api, |r| Request::RegisterPackage(package, r)).await
}

async fn list_packages(State(api): State<Api>) -> Answer<Vec<PackageView>> {
    ask(&api, Request::ListPackages).await
}

async fn show_package(State(api): State<Api>, Path(name): Path<String>) -> Answer<Vec<PackageView>> {
    ask(&api, |r| Request::ShowPackage(name, r)).await
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u32>,
}

async fn remove_package(State(api): State<Api>, Path(name): Path<String>, Query(q): Query<VersionQuery>) -> Answer {
    let gone = api.handle.ask(|r| Request::RemovePackage(name, q.version, r)).await?;
    // The records are gone (durably); the files follow.
    for p in &gone {
        let deleted = match locate(&api, &p.location(), FileUse::Write, Who::HeadNode).await {
            Ok((blobs, key)) => blobs.delete(&key).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.0.message),
        };
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "a removed package's file stays in the blob store");
        }
    }
    Ok(Json(serde_json::json!({"removed": gone.iter().map(|p| p.version).collect::<Vec<_>>()})))
}

async fn download_package(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    let package = api.handle.ask(|r| Request::PackageFile(name, q.version, r)).await?;
    let (blobs, key) = locate(&api, &package.location(), FileUse::Read, Who::HeadNode).await?;
    stream_from(&blobs, &key).await
}

#[derive(Deserialize)]
struct InstallRequest {
    template: String,
}

async fn install_packages(
    State(api): State<Api>,
    body: Result<Json<InstallRequest>, JsonRejection>,
) -> Answer<Vec<NodeActionResult>> {
    let template = body?.0.template;
    ask(&api, |r| Request::InstallPackages(template, r)).await
}

/// What an agent fetches: package files.
async fn agent_blob(State(api): State<Api>, Path(key): Path<String>) -> Result<Response, ApiError> {
    if !key.starts_with("packages/") || key.split('/').any(|p| p == "..") {
        return Err(Error::not_found(format!("blob {key} is not one agents may fetch")).into());
    }
    stream_blob(&api, &key).await
}

async fn stream_blob(api: &Api, key: &str) -> Result<Response, ApiError> {
    stream_from(&api.blobs, key).await
}

async fn stream_from(blobs: &BlobStore, key: &str) -> Result<Response, ApiError> {
    let (size, stream) = blobs.get_stream(key).await?;
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(axum::http::header::CONTENT_LENGTH, size.into());
    Ok(response)
}

#[derive(Deserialize)]
struct LocationQuery {
    location: String,
}

/// The owner of job `id` (or whoever reserved its id), if there is such a job.
async fn job_owner(api: &Api, id: u64) -> Option<String> {
    api.handle.ask(|r| Request::JobOwner(id, r)).await.ok().flatten()
}

/// Where `location` leads, if `who` may `use_` it: the one ownership check of every path into a
/// blob store ([`crate::locations::Locations::resolve`]). A user's owner is filled in here from
/// the job the location names; the templates' stores are read again when they may be stale.
async fn check_location(api: &Api, location: &str, use_: FileUse, who: Who<'_>) -> Result<Target, ApiError> {
    let owner = match (who, api.locations.job_of(location)) {
        (Who::User(..), Some(id)) => job_owner(api, id).await,
        _ => None,
    };
    let who = match who {
        Who::User(caller, _) => Who::User(caller, owner.as_deref()),
        other => other,
    };
    let elsewhere = location.starts_with("s3://") || location.starts_with("az://");
    if elsewhere && !api.locations.templates_fresh() {
        let templates = api.handle.ask(Request::ListTemplates).await?;
        api.locations.set_template_stores(templates.into_iter().filter_map(|t| t.blob_store).collect());
    }
    Ok(api.locations.resolve(location, use_, who)?)
}

/// The store and key `location` names, opened, if `who` may `use_` it.
async fn locate(api: &Api, location: &str, use_: FileUse, who: Who<'_>) -> Result<(BlobStore, String), ApiError> {
    let target = check_location(api, location, use_, who).await?;
    Ok(api.locations.open(target)?)
}

/// Refuses an agent a location none of its node's tasks names (over plain HTTP agents are not
/// told apart, so none is refused).
async fn agent_may(api: &Api, node: &AgentNode, location: &str, use_: FileUse) -> Result<(), ApiError> {
    let AgentNode(Some(node)) = node else { return Ok(()) };
    let (node, location) = (node.clone(), location.to_string());
    api.handle.ask(|reply| Request::AgentMayUse { node, location, use_, reply }).await?;
    Ok(())
}

/// A blob by location, streamed: task outputs for clients. A User reads their own jobs' areas
/// and packages; other locations are for the administrators.
async fn fetch_location(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<LocationQuery>,
) -> Result<Response, ApiError> {
    if caller.role < Role::JobAdministrator && !q.location.starts_with(thunderhead_core::staging::LOCAL_STORE) {
        return Err(Error::forbidden(format!(
            "location \"{}\" is outside your jobs' files; a User reads only those (ask a JobAdministrator)",
            thunderhead_core::text::escape(&q.location)
        ))
        .into());
    }
    let (store, key) = locate(&api, &q.location, FileUse::Read, Who::User(&caller, None)).await?;
    stream_from(&store, &key).await
}

/// What an agent fetches by location: its tasks' input files.
async fn agent_fetch_location(
    State(api): State<Api>,
    Extension(node): Extension<AgentNode>,
    Query(q): Query<LocationQuery>,
) -> Result<Response, ApiError> {
    agent_may(&api, &node, &q.location, FileUse::Read).await?;
    let (store, key) = locate(&api, &q.location, FileUse::Read, Who::Agent).await?;
    stream_from(&store, &key).await
}

/// Stores a task output an agent sends, streamed, checksummed.
async fn store_location(
    State(api): State<Api>,
    Extension(node): Extension<AgentNode>,
    Query(q): Query<LocationQuery>,
    body: Body,
) -> Answer {
    agent_may(&api, &node, &q.location, FileUse::Write).await?;
    let (store, key) = locate(&api, &q.location, FileUse::Write, Who::Agent).await?;
    let info = store.put_stream(&key, body.into_data_stream()).await?;
    Ok(Json(serde_json::json!({"location": q.location, "size": info.size, "sha256": info.sha256})))
}

/// A job id for a submission to come, so its input files can go to its area first.
async fn reserve_job(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Answer<SubmitReply> {
    ask(&api, |reply| Request::ReserveJob { owner: caller.name, reply }).await
}

/// Stores a file a client stages as a task input, in the job's area: `jobs/JOB/inputs/PATH`.
async fn upload_input(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(u64, String)>,
    body: Body,
) -> Answer {
    if path.split('/').any(|p| p.is_empty() || p == "..") {
        let path = thunderhead_core::text::escape(&path);
        return Err(Error::invalid(format!("upload path \"{path}\" is not a relative path")).into());
    }
    let key = format!("{}/inputs/{path}", thunderhead_core::package::job_area(id));
    let (store, key) = locate(&api, &format!("thunderhead:{key}"), FileUse::Write, Who::User(&caller, None)).await?;
    let info = store.put_stream(&key, body.into_data_stream()).await?;
    Ok(Json(serde_json::json!({"location": format!("thunderhead:{key}"), "size": info.size})))
}

/// The files a job's tasks uploaded to its area: `[{index, path, size, location}]`.
async fn job_outputs(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(id): Path<u64>) -> Answer {
    own_job(&api, &caller, id).await?;
    let area = format!("{}/", thunderhead_core::package::job_area(id));
    let listed = api.blobs.list(&area).await?;
    let files: Vec<Value> = listed
        .into_iter()
        .filter_map(|(key, size)| {
            let rest = key.strip_prefix(&area)?;
            let (index, path) = rest.split_once('/').filter(|(i, _)| i.parse::<u64>().is_ok())?;
            Some(serde_json::json!({"index": index, "path": path, "size": size, "location": format!("thunderhead:{key}")}))
        })
        .collect();
    Ok(Json(Value::Array(files)))
}

async fn whoami(Extension(caller): Extension<Caller>) -> Json<Caller> {
    Json(caller)
}

async fn list_users(State(api): State<Api>) -> Json<Vec<UserView>> {
    Json(api.users.list().iter().map(UserView::from).collect())
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    role: String,
}

/// Adds a user (durably, before answering) and answers with their token, the only time it is
/// shown.
async fn add_user(State(api): State<Api>, body: Result<Json<NewUser>, JsonRejection>) -> Answer<Shown<UserView>> {
    let NewUser { name, role } = body?.0;
    access::check_user_name(&name)?;
    let role = Role::parse(&role)?;
    ask(&api, |reply| Request::AddUser { name, role, reply }).await
}

async fn rotate_token(State(api): State<Api>, Path(name): Path<String>) -> Answer<Shown<UserView>> {
    ask(&api, |r| Request::RotateToken(name, r)).await
}

async fn remove_user(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Answer<UserView> {
    ask(&api, |reply| Request::RemoveUser { name, by: caller.name, reply }).await
}

fn enrolment(api: &Api) -> Result<Arc<Enrolment>, ApiError> {
    api.enrolment.clone().ok_or_else(|| ApiError(crate::enrol::plain_http()))
}

async fn list_join_tokens(State(api): State<Api>) -> Answer<Vec<JoinTokenView>> {
    Ok(Json(enrolment(&api)?.list_tokens()))
}

#[derive(Deserialize)]
struct NewJoinToken {
    /// Only nodes of this template may join with it.
    template: Option<String>,
    /// How long it is honoured; default one day.
    expires_in_secs: Option<u64>,
}

/// A join token, shown this once.
async fn create_join_token(
    State(api): State<Api>,
    body: Result<Json<NewJoinToken>, JsonRejection>,
) -> Answer<Shown<JoinTokenView>> {
    let NewJoinToken { template, expires_in_secs } = body?.0;
    enrolment(&api)?;
    if let Some(t) = &template {
        api.handle.ask(|r| Request::ShowTemplate(t.clone(), r)).await?;
    }
    let secs = expires_in_secs.unwrap_or(24 * 3600);
    if secs == 0 || secs > 366 * 24 * 3600 {
        return Err(Error::invalid(format!(
            "a join token lasting {secs} s is not allowed (give 1 s to 366 days, e.g. --expires 24h)"
        ))
        .into());
    }
    ask(&api, |reply| Request::CreateJoinToken { template, ttl: secs * 1000, reply }).await
}

async fn delete_join_token(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    enrolment(&api)?;
    api.handle.ask(|r| Request::DeleteJoinToken(id.clone(), r)).await?;
    Ok(Json(serde_json::json!({"id": id})))
}

/// Revokes a node's certificates and closes its agent's connection: it is refused from then on,
/// until it joins again with a new token.
async fn revoke_node(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    enrolment(&api)?;
    let (revoked, closed) = api.handle.ask(|r| Request::RevokeNode(name.clone(), r)).await?;
    Ok(Json(serde_json::json!({"node": name, "revoked": revoked, "disconnected": closed})))
}

/// An agent trades its join token for a node certificate.
async fn join(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Json<thunderhead_proto::JoinRequest>, JsonRejection>,
) -> Answer<thunderhead_proto::JoinReply> {
    let request = body?.0;
    let enrolment = enrolment(&api)?;
    let name = request.name.clone();
    let joined = async {
        // The token is checked before a certificate is made for it, and again by the actor,
        // which records the certificate; making its key is left off the actor.
        enrolment.check_join(&request)?;
        let node = request.name.clone();
        let issued = blocking(move || enrolment.ca.issue_node(&node)).await?.map_err(Error::conflict)?;
        api.handle.ask(|reply| Request::Join { request, issued, reply }).await.map_err(ApiError)
    };
    match joined.await {
        Ok(reply) => Ok(Json(reply)),
        Err(e) => {
            tracing::warn!(peer = %peer.addr, node = %name, reason = %e.0.message, "refused a join");
            Err(e)
        }
    }
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
