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
use std::time::{Duration, Instant};
use thunderhead_blob::BlobStore;
use thunderhead_core::access::{Caller, FileUse, StoreArea};
use thunderhead_core::staging::LOCAL_STORE;
use thunderhead_core::text::escape;
use thunderhead_core::{Error, JobId};

/// How long the templates' stores are taken as known before they are read again: a deleted
/// template's store stops being usable within this time.
pub const TEMPLATE_STORES_FRESH: Duration = Duration::from_secs(5);

/// Who names a location.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// A user, with the owner of the job whose area the location lies in (if it has one).
    User(&'a Caller, Option<&'a str>),
    /// An agent, naming what the head node gave one of its tasks (checked against its tasks
    /// before): inputs and packages to read, outputs to write.
    Agent,
    /// The head node itself, at the locations it made (package files).
    HeadNode,
}

/// Where a location leads, once checked; nothing is opened yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A key of the head node's own store.
    Own(String),
    /// A key in the directory `dir` (a blob URI with the configured store's options) of another
    /// store, or of a `file://` directory.
    Blob { dir: String, key: String },
}

pub struct Locations {
    own: BlobStore,
    /// The URI the head node's own store was opened with: a location inside it is one of its keys.
    own_uri: String,
    file_roots: Vec<PathBuf>,
    /// Blob stores jobs may name, configured when the head node started.
    configured: Vec<String>,
    /// The templates' stores, and when they were read.
    templates: RwLock<Option<(Instant, Vec<String>)>>,
}

impl Locations {
    pub fn new(own: BlobStore, own_uri: &str, job_stores: Vec<String>, file_roots: Vec<PathBuf>) -> Locations {
        Locations {
            own,
            own_uri: own_uri.to_string(),
            file_roots,
            configured: job_stores,
            templates: RwLock::new(None),
        }
    }

    /// Whether the templates' stores were read within [`TEMPLATE_STORES_FRESH`].
    pub fn templates_fresh(&self) -> bool {
        let read = self.templates.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        read.as_ref().is_some_and(|(at, _)| at.elapsed() < TEMPLATE_STORES_FRESH)
    }

    /// The blob stores of the templates now (configured by administrators).
    pub fn set_template_stores(&self, uris: Vec<String>) {
        *self.templates.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), uris));
    }

    /// The job whose area `location` lies in, if it is one of the head node's keys in a job area.
    pub fn job_of(&self, location: &str) -> Option<JobId> {
        let key = self.own_key(location)?;
        match thunderhead_core::access::store_area(&key) {
            Ok(StoreArea::Job(id)) => Some(id),
            _ => None,
        }
    }

    /// The key of the head node's own store that `location` names, whether written
    /// `thunderhead:KEY` or by the store's own URI.
    fn own_key(&self, location: &str) -> Option<String> {
        match location.strip_prefix(LOCAL_STORE) {
            Some(key) => Some(key.to_string()),
            None => relative(location, &self.own_uri),
        }
    }

    /// Where `location` leads, if `who` may `use_` it. Pure: nothing is opened or created.
    pub fn resolve(&self, location: &str, use_: FileUse, who: Who<'_>) -> Result<Target, Error> {
        let shown = escape(location);
        let bad = |why: &str| Error::invalid(format!("location \"{shown}\" {why}"));
        if location.chars().any(char::is_control) {
            return Err(bad("holds a control character"));
        }
        // The head node's own store, however it is named, is reached only by its keys' rules.
        if let Some(key) = self.own_key(location) {
            match who {
                Who::User(caller, owner) => thunderhead_core::access::check_store_key(caller, &key, use_, owner)?,
                Who::Agent => {
                    if let (StoreArea::Packages, FileUse::Write) = (thunderhead_core::access::store_area(&key)?, use_) {
                        return Err(bad("is in the package area, which only package upload writes"));
                    }
                }
                Who::HeadNode => {
                    thunderhead_core::access::store_area(&key)?;
                }
            }
            return Ok(Target::Own(key));
        }
        if let Some(path) = location.strip_prefix("file://") {
            let (dir, name) = path.rsplit_once('/').ok_or_else(|| bad("names no file"))?;
            if name.is_empty() || path.contains('?') {
                return Err(bad("names no file"));
            }
            check_file_root(&self.file_roots, location, dir, name)?;
            return Ok(Target::Blob { dir: format!("file://{dir}"), key: name.to_string() });
        }
        if !(location.starts_with("s3://") || location.starts_with("az://")) {
            return Err(bad(
                "is not a location (write thunderhead:KEY, file:///PATH, s3://BUCKET/KEY or az://ACCOUNT/CONTAINER/KEY)",
            ));
        }
        let templates = self.templates.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stores = self.configured.iter().chain(templates.iter().flat_map(|(_, t)| t));
        let Some((dir, key)) = stores.filter_map(|store| under(location, store)).next() else {
            return Err(Error::forbidden(format!(
                "location \"{shown}\" is not in a blob store an administrator configured; jobs may name only \
                 those, with their endpoints and credentials (ask an administrator to start the head node with \
                 --job-blob-store URI, or use thunderhead:jobs/ID/…)"
            )));
        };
        Ok(Target::Blob { dir, key })
    }

    /// Opens the store a checked location leads to.
    pub fn open(&self, target: Target) -> Result<(BlobStore, String), Error> {
        match target {
            Target::Own(key) => Ok((self.own.clone(), key)),
            Target::Blob { dir, key } => {
                let store = BlobStore::open(&dir).map_err(|e| Error::invalid(e.to_string()))?;
                Ok((store, key))
            }
        }
    }
}

/// Splits a blob URI into (scheme and path, options).
fn parts(uri: &str) -> (&str, Vec<&str>) {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    (path.trim_end_matches('/'), query.split('&').filter(|p| !p.is_empty()).collect())
}

/// The path of `location` below the configured `store`, if it lies there: the location may
/// repeat the store's options but not change or add any.
fn relative(location: &str, store: &str) -> Option<String> {
    let (path, options) = parts(location);
    let (store_path, store_options) = parts(store);
    if !options.iter().all(|o| store_options.contains(o)) {
        return None;
    }
    let rest = path.strip_prefix(store_path)?.strip_prefix('/')?;
    if rest.is_empty() || rest.split('/').any(|p| p == ".." || p == ".") {
        return None;
    }
    Some(rest.to_string())
}

/// If `location` lies in the configured `store`: the directory to open (with the store's
/// options, never the location's own) and the key in it.
fn under(location: &str, store: &str) -> Option<(String, String)> {
    let rest = relative(location, store)?;
    let (store_path, store_options) = parts(store);
    let (sub, key) = rest.rsplit_once('/').unwrap_or(("", &rest));
    if key.is_empty() {
        return None;
    }
    let dir = if sub.is_empty() { store_path.to_string() } else { format!("{store_path}/{sub}") };
    let query = store_options.join("&");
    Some((if query.is_empty() { dir } else { format!("{dir}?{query}") }, key.to_string()))
}

/// A `file://` location reads or writes a file of the head node's machine: only inside the
/// directories the head node was told it may serve (`--file-root`), whoever asks.
fn check_file_root(roots: &[PathBuf], location: &str, dir: &str, key: &str) -> Result<(), Error> {
    let path = Path::new(dir);
    let plain = path.is_absolute()
        && key != ".."
        && path.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
    if plain && roots.iter().any(|root| path.starts_with(root)) {
        return Ok(());
    }
    Err(Error::forbidden(format!(
        "location \"{}\" is a file of the head node's machine outside the directories it serves ({}); put the file in the head node's store (thunderhead:KEY, or a local path given to job submit), or have the head node started with --file-root DIR",
        escape(location),
        if roots.is_empty() {
            "none".to_string()
        } else {
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        }
    )))
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
        let Err(e) = check_file_root(&[], "file:///etc/passwd", "/etc", "passwd") else { panic!() };
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
        let own = "s3://thblobs?endpoint=http://127.0.0.1:9001";
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(&format!("file://{}", dir.path().display())).unwrap();
        let l = Locations::new(blobs, own, vec![STORE.into()], vec![]);
        let refused = l.resolve("s3://metadata/x?endpoint=http://169.254.169.254", FileUse::Read, Who::Agent);
        assert!(matches!(refused, Err(e) if e.message.contains("not in a blob store an administrator configured")));
        assert!(matches!(
            l.resolve("file:///etc/passwd", FileUse::Read, Who::Agent),
            Err(e) if e.kind == thunderhead_core::ErrorKind::Forbidden
        ));
        assert_eq!(
            l.resolve("s3://results/a/b.txt", FileUse::Read, Who::Agent).unwrap(),
            Target::Blob { dir: "s3://results/a?endpoint=http://127.0.0.1:9000".into(), key: "b.txt".into() }
        );
        let alice = Caller { name: "alice".into(), role: thunderhead_core::access::Role::User };
        assert!(l.resolve("thunderhead:jobs/3/x", FileUse::Read, Who::User(&alice, Some("bob"))).is_err());
        assert_eq!(
            l.resolve("thunderhead:jobs/3/x", FileUse::Read, Who::User(&alice, Some("alice"))).unwrap(),
            Target::Own("jobs/3/x".into())
        );
        assert!(l.resolve("thunderhead:packages/p/1/p.tgz", FileUse::Write, Who::Agent).is_err());
        // The head node's own store named by its URI is still the head node's store, by its rules.
        assert_eq!(l.job_of("s3://thblobs/jobs/5/inputs/secret"), Some(5));
        assert!(l.resolve("s3://thblobs/jobs/5/inputs/secret", FileUse::Read, Who::User(&alice, Some("bob"))).is_err());
        assert!(l.resolve("s3://thblobs/shared/x", FileUse::Write, Who::User(&alice, None)).is_err());
        assert_eq!(
            l.resolve("s3://thblobs/jobs/5/x", FileUse::Read, Who::User(&alice, Some("alice"))).unwrap(),
            Target::Own("jobs/5/x".into())
        );
        // Templates' stores count while they are known.
        assert!(matches!(
            l.resolve("az://acct/c/pk/1", FileUse::Read, Who::HeadNode),
            Err(e) if e.message.contains("not in a blob store an administrator configured")
        ));
        l.set_template_stores(vec!["az://acct/c".into()]);
        assert!(l.templates_fresh());
        assert!(l.resolve("az://acct/c/pk/1", FileUse::Read, Who::HeadNode).is_ok());
        l.set_template_stores(vec![]);
        assert!(l.resolve("az://acct/c/pk/1", FileUse::Read, Who::HeadNode).is_err(), "a deleted template's store");
    }
}
