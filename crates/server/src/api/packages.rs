//! Routes of packages: upload a version, list, download, remove, install on a set.

use super::blobs::{locate, stream_from};
use super::{Answer, Api, ApiError, ask};
use crate::actor::Request;
use crate::locations::Who;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use thunderhead_core::access::FileUse;
use thunderhead_core::package::Package;
use thunderhead_core::view::{NodeActionResult, PackageView};

#[derive(Deserialize)]
pub(super) struct UploadQuery {
    /// The uploaded file's name, e.g. `solver.tar.gz`.
    file: String,
    template: Option<String>,
}

/// Receives a package file, streamed, into the blob store; then records it as the next
/// version of the package.
pub(super) async fn upload_package(
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

pub(super) async fn list_packages(State(api): State<Api>) -> Answer<Vec<PackageView>> {
    ask(&api, Request::ListPackages).await
}

pub(super) async fn show_package(State(api): State<Api>, Path(name): Path<String>) -> Answer<Vec<PackageView>> {
    ask(&api, |r| Request::ShowPackage(name, r)).await
}

#[derive(Deserialize)]
pub(super) struct VersionQuery {
    version: Option<u32>,
}

pub(super) async fn remove_package(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Answer {
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

pub(super) async fn download_package(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    let package = api.handle.ask(|r| Request::PackageFile(name, q.version, r)).await?;
    let (blobs, key) = locate(&api, &package.location(), FileUse::Read, Who::HeadNode).await?;
    stream_from(&blobs, &key).await
}

#[derive(Deserialize)]
pub(super) struct InstallRequest {
    template: String,
}

pub(super) async fn install_packages(
    State(api): State<Api>,
    body: Result<Json<InstallRequest>, JsonRejection>,
) -> Answer<Vec<NodeActionResult>> {
    let template = body?.0.template;
    ask(&api, |r| Request::InstallPackages(template, r)).await
}
