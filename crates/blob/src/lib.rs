//! Blob stores: where packages and task files live.
//!
//! One type, [`BlobStore`], over three backends chosen by URI:
//!
//! | URI | backend |
//! |---|---|
//! | `file:///var/lib/thunderhead/blobs` | a directory (the embedded default) |
//! | `az://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL]` | Azure Blob Storage; shared key from `AZURE_STORAGE_ACCOUNT_KEY` or a SAS from `AZURE_STORAGE_SAS_KEY`; the emulator's well-known account `devstoreaccount1` needs neither |
//! | `s3://BUCKET[/PREFIX][?endpoint=URL&region=R]` | S3 or any S3-compatible store; keys from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` |
//!
//! Transfers stream (no whole file in memory), are checksummed end to end (a SHA-256 computed
//! while uploading is stored beside each blob as `KEY.sha256` and checked while downloading), and
//! cloud transfers are retried with backoff on transient errors and bounded by timeouts. Every
//! failure names the blob and the reason. Containers and buckets must exist: create them with
//! the cloud's own tools.

mod store;

pub use store::{BlobInfo, BlobStore};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The URI is not one this build understands; fatal, fix the URI.
    #[error("blob store \"{uri}\" {rule} (write file:///DIR, az://ACCOUNT/CONTAINER or s3://BUCKET)")]
    BadUri { uri: String, rule: String },
    /// Fatal for this blob.
    #[error("blob {key} does not exist in {store}")]
    NotFound { store: String, key: String },
    /// The blob changed after it was written; fatal, upload it again.
    #[error(
        "blob {key} in {store} is damaged: its SHA-256 is {actual}, but {expected} was stored with it (upload it again)"
    )]
    Checksum { store: String, key: String, expected: String, actual: String },
    /// The store did not answer or refused; retried already, may succeed later.
    #[error("cannot transfer blob {key} ({store}): {reason}")]
    Transfer { store: String, key: String, reason: String },
    /// A local file could not be read or written; fatal until the disk is fixed.
    #[error("cannot use {path}: {reason}")]
    Local { path: String, reason: String },
}

pub type Result<T, E = BlobError> = std::result::Result<T, E>;

#[cfg(test)]
mod contract;
