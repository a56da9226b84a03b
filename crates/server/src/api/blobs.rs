//! Files by location: what clients fetch, what agents fetch and store. Every location goes
//! through the one ownership check in [`crate::locations::Locations::resolve`].

use super::{AgentNode, Answer, Api, ApiError};
use crate::actor::Request;
use crate::locations::{Target, Who};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use thunderhead_blob::{BlobError, BlobStore};
use thunderhead_core::access::{Caller, FileUse, Role};
use thunderhead_core::{Error, ErrorKind};

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

/// What an agent fetches: package files.
pub(super) async fn agent_blob(State(api): State<Api>, Path(key): Path<String>) -> Result<Response, ApiError> {
    if !key.starts_with("packages/") || key.split('/').any(|p| p == "..") {
        return Err(Error::not_found(format!("blob {key} is not one agents may fetch")).into());
    }
    stream_blob(&api, &key).await
}

pub(super) async fn stream_blob(api: &Api, key: &str) -> Result<Response, ApiError> {
    stream_from(&api.blobs, key).await
}

pub(super) async fn stream_from(blobs: &BlobStore, key: &str) -> Result<Response, ApiError> {
    let (size, stream) = blobs.get_stream(key).await?;
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(axum::http::header::CONTENT_LENGTH, size.into());
    Ok(response)
}

#[derive(Deserialize)]
pub(super) struct LocationQuery {
    location: String,
}

/// The owner of job `id` (or whoever reserved its id), if there is such a job.
pub(super) async fn job_owner(api: &Api, id: u64) -> Option<String> {
    api.handle.ask(|r| Request::JobOwner(id, r)).await.ok().flatten()
}

/// Where `location` leads, if `who` may `use_` it: the one ownership check of every path into a
/// blob store ([`crate::locations::Locations::resolve`]). A user's owner is filled in here from
/// the job the location names; the templates' stores are read again when they may be stale.
pub(super) async fn check_location(api: &Api, location: &str, use_: FileUse, who: Who<'_>) -> Result<Target, ApiError> {
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
pub(super) async fn locate(
    api: &Api,
    location: &str,
    use_: FileUse,
    who: Who<'_>,
) -> Result<(BlobStore, String), ApiError> {
    let target = check_location(api, location, use_, who).await?;
    Ok(api.locations.open(target)?)
}

/// Refuses an agent a location none of its node's tasks names (over plain HTTP agents are not
/// told apart, so none is refused).
pub(super) async fn agent_may(api: &Api, node: &AgentNode, location: &str, use_: FileUse) -> Result<(), ApiError> {
    let AgentNode(Some(node)) = node else { return Ok(()) };
    let (node, location) = (node.clone(), location.to_string());
    api.handle.ask(|reply| Request::AgentMayUse { node, location, use_, reply }).await?;
    Ok(())
}

/// A blob by location, streamed: task outputs for clients. A User reads their own jobs' areas
/// and packages; other locations are for the administrators.
pub(super) async fn fetch_location(
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
pub(super) async fn agent_fetch_location(
    State(api): State<Api>,
    Extension(node): Extension<AgentNode>,
    Query(q): Query<LocationQuery>,
) -> Result<Response, ApiError> {
    agent_may(&api, &node, &q.location, FileUse::Read).await?;
    let (store, key) = locate(&api, &q.location, FileUse::Read, Who::Agent).await?;
    stream_from(&store, &key).await
}

/// Stores a task output an agent sends, streamed, checksummed.
pub(super) async fn store_location(
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
