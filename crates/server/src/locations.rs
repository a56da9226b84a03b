//! Locations of files, and the one check every path into a blob store goes through: the blob
//! route, job inputs and outputs named at submission, uploads into a job's area, agents' fetches
//! and uploads.
//!
//! - `thunderhead:KEY` is a key of the head node's own store; who may reach it is
//!   [`thunderhead_core::access::check_store_key`].
//! - `file:///DIR/NAME` is a file of the head node's machine, only inside `--file-root`
//!   directories.
//! - `s3://…` and `az://…` are keys of a blob store an administrator configured: the head node's
//!   own `--blob-store`, a `--job-blob-store`, or a template's `--blob-store`. The location is
//!   opened with that store's endpoint and credentials; a location outside every configured store
//!   is refused, so a user can never point the head node's credentials (or the machine's
//!   instance credentials) at an endpoint of their choosing.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use thunderhead_blob::BlobStore;
use thunderhead_core::access::{Caller, FileUse, StoreArea};
use thunderhead_core::staging::LOCAL_STORE;
use thunderhead_core::text::escape;
use thunderhead_core::{Error, JobId};

/// Who names a location.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// A user, with the owner of the job whose area the location lies in (if it has one).
    User(&'a Caller, Option<&'a str>),
    /// An agent, naming what the head node gave it: inputs and packages to read, outputs to write.
    Agent,
    /// The head node itself, at the locations it made (package files).
    HeadNode,
}

/// Why a location cannot be used.
#[derive(Debug)]
pub enum Refusal {
    /// The location is not in any configured blob store; the list may be out of date.
    NotConfigured(Error),
    Refused(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Refused(e)
    }
}

pub struct Locations {
    own: BlobStore,
    file_roots: Vec<PathBuf>,
    /// Blob stores jobs may name: configured at start, and the templates' stores.
    stores: RwLock<Vec<String>>,
}

impl Locations {
    pub fn new(own: BlobStore, own_uri: &str, job_stores: Vec<String>, file_roots: Vec<PathBuf>) -> Locations {
        let mut stores = job_stores;
        stores.push(own_uri.to_string());
        Locations { own, file_roots, stores: RwLock::new(stores) }
    }

    /// Adds the blob stores of templates (configured by administrators).
    pub fn add_stores(&self, uris: impl IntoIterator<Item = String>) {
        let mut stores = self.stores.write().expect("stores lock");
        for uri in uris {
            if !stores.contains(&uri) {
                stores.push(uri);
            }
        }
    }

    /// The job whose area `location` lies in, if it is one of the head node's keys in a job area.
    pub fn job_of(location: &str) -> Option<JobId> {
        let key = location.strip_prefix(LOCAL_STORE)?;
        match thunderhead_core::access::store_area(key) {
            Ok(StoreArea::Job(id)) => Some(id),
            _ => None,
        }
    }

    /// The store and key `location` names, if `who` may `use_` it.
    pub fn resolve(&self, location: &str, use_: FileUse, who: Who<'_>) -> Result<(BlobStore, String), Refusal> {
        let shown = escape(location);
        let bad = |why: &str| Refusal::Refused(Error::invalid(format!("location \"{shown}\" {why}")));
        if let Some(key) = location.strip_prefix(LOCAL_STORE) {
            match who {
                Who::User(caller, owner) => thunderhead_core::access::check_store_key(caller, key, use_, owner)?,
                Who::Agent => {
                    if let (StoreArea::Packages, FileUse::Write) = (thunderhead_core::access::store_area(key)?, use_) {
                        return Err(bad("is in the package area, which only package upload writes"));
                    }
                }
                Who::HeadNode => {
                    thunderhead_core::access::store_area(key)?;
                }
            }
            return Ok((self.own.clone(), key.to_string()));
        }
        if location.chars().any(char::is_control) {
            return Err(bad("holds a control character"));
        }
        if let Some(path) = location.strip_prefix("file://") {
            let (dir, name) = path.rsplit_once('/').ok_or_else(|| bad("names no file"))?;
            if name.is_empty() || path.contains('?') {
                return Err(bad("names no file"));
            }
            check_file_root(&self.file_roots, location, dir, name)?;
            let store = BlobStore::open(&format!("file://{dir}"))
                .map_err(|e| Refusal::Refused(Error::invalid(e.to_string())))?;
            return Ok((store, name.to_string()));
        }
        if !(location.starts_with("s3://") || location.starts_with("az://")) {
            return Err(bad(
                "is not a location (write thunderhead:KEY, file:///PATH, s3://BUCKET/KEY or az://ACCOUNT/CONTAINER/KEY)",
            ));
        }
        let stores = self.stores.read().expect("stores lock").clone();
        let Some((dir, key)) = stores.iter().find_map(|store| under(location, store)) else {
            return Err(Refusal::NotConfigured(Error::forbidden(format!(
                "location \"{shown}\" is not in a blob store an administrator configured; jobs may name only \
                 those, with their endpoints and credentials (ask an administrator to start the head node with \
                 --job-blob-store URI, or use thunderhead:jobs/ID/…)"
            ))));
        };
        let store = BlobStore::open(&dir).map_err(|e| Refusal::Refused(Error::invalid(e.to_string())))?;
        Ok((store, key))
    }
}

/// Splits a blob URI into (scheme and path, options).
fn parts(uri: &str) -> (&str, Vec<&str>) {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    (path.trim_end_matches('/'), query.split('&').filter(|p| !p.is_empty()).collect())
}

/// If `location` lies in the configured `store`: the directory to open (with the store's
/// options, never the location's own) and the key in it. The location may repeat the store's
/// options but not change or add any, and its path must lie under the store's.
fn under(location: &str, store: &str) -> Option<(String, String)> {
    let (path, options) = parts(location);
    let (store_path, store_options) = parts(store);
    if !options.iter().all(|o| store_options.contains(o)) {
        return None;
    }
    let rest = path.strip_prefix(store_path)?;
    if !rest.starts_with('/') || rest.split('/').any(|p| p == ".." || p == ".") {
        return None;
    }
    let (dir, key) = path.rsplit_once('/')?;
    if key.is_empty() || dir.ends_with(':') || dir.ends_with(":/") {
        return None;
    }
    let query = store_options.join("&");
    Some((if query.is_empty() { dir.to_string() } else { format!("{dir}?{query}") }, key.to_string()))
}

/// A `file://` location reads or writes a file of the head node's machine: only inside the
/// directories the head node was told it may serve (`--file-root`), whoever asks.
fn check_file_root(roots: &[PathBuf], location: &str, dir: &str, key: &str) -> Result<(), Refusal> {
    let path = Path::new(dir);
    let plain = path.is_absolute()
        && key != ".."
        && path.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
    if plain && roots.iter().any(|root| path.starts_with(root)) {
        return Ok(());
    }
    Err(Refusal::Refused(Error::forbidden(format!(
        "location \"{}\" is a file of the head node's machine outside the directories it serves ({}); put the file in the head node's store (thunderhead:KEY, or a local path given to job submit), or have the head node started with --file-root DIR",
        escape(location),
        if roots.is_empty() {
            "none".to_string()
        } else {
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        }
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "s3://results?endpoint=http://127.0.0.1:9000";

    #[test]
    fn file_locations_stay_inside_the_served_directories() {
        let roots = vec![std::path::PathBuf::from("/srv/data")];
        let check = |dir: &str, key: &str| check_file_root(&roots, "loc", dir, key).is_ok();
        assert!(check("/srv/data", "in.txt"));
        assert!(check("/srv/data/cases", "in.txt"));
        assert!(!check("/srv/data/../../etc", "passwd"), "no way out with ..");
        assert!(!check("/srv/data", ".."));
        assert!(!check("/etc", "passwd"));
        assert!(!check("/srv/database", "x"), "a directory sharing the root's prefix is outside it");
        assert!(!check("srv/data", "x"), "relative paths are refused");
        let Err(Refusal::Refused(e)) = check_file_root(&[], "file:///etc/passwd", "/etc", "passwd") else { panic!() };
        assert_eq!(e.kind, thunderhead_core::ErrorKind::Forbidden);
        assert!(e.message.contains("--file-root") && e.message.contains("file:///etc/passwd"), "{}", e.message);
    }

    #[test]
    fn a_location_in_a_configured_store_takes_the_stores_endpoint() {
        assert_eq!(
            under("s3://results/run1/r7/out.csv", STORE),
            Some(("s3://results/run1/r7?endpoint=http://127.0.0.1:9000".into(), "out.csv".into()))
        );
        // Repeating the store's own options is fine.
        assert_eq!(
            under("s3://results/out.csv?endpoint=http://127.0.0.1:9000", STORE),
            Some(("s3://results?endpoint=http://127.0.0.1:9000".into(), "out.csv".into()))
        );
        assert!(under("az://acct/c/p/k", "az://acct/c/p").is_some());
    }

    #[test]
    fn a_user_endpoint_or_another_bucket_is_not_the_configured_store() {
        for location in [
            "s3://results/x?endpoint=http://169.254.169.254",
            "s3://results/x?endpoint=http://127.0.0.1:9000&region=x",
            "s3://other/x",
            "s3://resultsX/x",
            "s3://results",
            "az://results/x",
            "s3://results/../other/x",
        ] {
            assert_eq!(under(location, STORE), None, "{location}");
        }
        assert_eq!(under("az://acct/c/other/k", "az://acct/c/p"), None);
    }

    #[test]
    fn locations_outside_every_store_are_refused_before_any_credential_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let own = format!("file://{}", dir.path().display());
        let l = Locations::new(BlobStore::open(&own).unwrap(), &own, vec![STORE.into()], vec![]);
        let refused = l.resolve("s3://metadata/x?endpoint=http://169.254.169.254", FileUse::Read, Who::Agent);
        assert!(matches!(refused, Err(Refusal::NotConfigured(_))));
        assert!(matches!(
            l.resolve("file:///etc/passwd", FileUse::Read, Who::Agent),
            Err(Refusal::Refused(e)) if e.kind == thunderhead_core::ErrorKind::Forbidden
        ));
        assert!(l.resolve("s3://results/a/b.txt", FileUse::Read, Who::Agent).is_ok());
        let alice = Caller { name: "alice".into(), role: thunderhead_core::access::Role::User };
        assert!(l.resolve("thunderhead:jobs/3/x", FileUse::Read, Who::User(&alice, Some("bob"))).is_err());
        assert!(l.resolve("thunderhead:jobs/3/x", FileUse::Read, Who::User(&alice, Some("alice"))).is_ok());
        assert!(l.resolve("thunderhead:packages/p/1/p.tgz", FileUse::Write, Who::Agent).is_err());
    }
}
