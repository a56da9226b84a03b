//! The head node runtime: the thin async shell around the pure [`Cluster`].
//!
//! ```text
//!  HTTP API ─┐                        ┌─> commit thread: one transaction per batch,
//!  agents ───┼─> events ─> actor ─────┤     then replies, agent messages, provider calls
//!  timers ───┤   (batch)   (Cluster)  │
//!  providers ┘                        └─ the scheduler runs at the end of each batch
//! ```
//!
//! One task (the actor) owns the cluster state and handles events in batches; the commit
//! thread ([`commit`]) makes each batch durable before anything about it leaves the process.

mod actor;
mod api;
mod commit;
pub mod connections;
mod enrol;
mod gateway;
mod locations;
mod openapi;
mod secrets;
mod tls;
mod users;
mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thunderhead_core::cluster::{Cluster, Config as ClusterConfig, Effects};
use thunderhead_providers::Providers;
use thunderhead_store::Store;
use thunderhead_store::sqlite::SqliteStore;

pub use actor::{Reply, Request};
pub use connections::raise_fd_limit;
pub use openapi::{PUBLIC as PUBLIC_ROUTES, ROUTES as API_ROUTES};

/// The name of the state database inside the state directory.
pub const DATABASE_FILE: &str = "thunderhead.db";
/// The file a head node writes so that clients can find it.
pub const ACCESS_FILE: &str = "access.json";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub cluster: ClusterConfig,
    /// The program burst nodes run as their agent (this binary).
    pub agent_program: PathBuf,
    /// Where packages and task files are kept; `None` for `file://STATE_DIR/blobs`.
    pub blob_store: Option<String>,
    /// Serve plain HTTP, and let agents in without certificates: development only.
    pub insecure_http: bool,
    /// More DNS names or addresses for the head node's certificate.
    pub tls_names: Vec<String>,
    /// Directories whose files `file://` task inputs and outputs may name.
    pub file_roots: Vec<PathBuf>,
    /// Blob stores (besides the head node's own and the templates') that jobs may name; a
    /// location is opened with its store's endpoint and credentials.
    pub job_blob_stores: Vec<String>,
}

/// What a client needs to reach a head node, as its administrator; written to
/// `STATE_DIR/access.json` (mode 0600: it holds the administrator's token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Access {
    pub url: String,
    pub version: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub token: String,
    /// The cluster's certificate (PEM), to verify the head node with; empty over plain HTTP.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the state directory {path}: {source} (choose another --state-dir)")]
    StateDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] thunderhead_store::StoreError),
    #[error("cannot listen on {addr}: {source} (is another head node running there? choose another --listen address)")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Access { path: String, source: std::io::Error },
    #[error("{0}")]
    Secrets(String),
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    Blob(thunderhead_blob::BlobError),
    #[error("the head node stopped: {0}")]
    Serve(std::io::Error),
}

/// A head node that is running in this process.
pub struct RunningServer {
    pub url: String,
    pub addr: SocketAddr,
    served: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Waits until the head node stops.
    pub async fn wait(self) -> Result<(), ServerError> {
        self.served.await.unwrap_or_else(|e| Err(ServerError::Serve(std::io::Error::other(e.to_string()))))
    }
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Opens the state, binds the listener and starts serving. Returns once the head node answers
/// requests.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    // The state directory is the head node's alone (0700): it holds the administrator's token,
    // the secret key, the database and the node directories of local nodes.
    std::fs::create_dir_all(&config.state_dir)
        .and_then(|()| std::fs::set_permissions(&config.state_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)))
        .map_err(|source| ServerError::StateDir { path: config.state_dir.display().to_string(), source })?;
    let secrets = Arc::new(secrets::SecretKey::load_or_create(&config.state_dir).map_err(ServerError::Secrets)?);
    let blob_uri = match &config.blob_store {
        Some(uri) => uri.clone(),
        None => format!("file://{}", std::path::absolute(config.state_dir.join("blobs")).unwrap_or_default().display()),
    };
    let blobs = thunderhead_blob::BlobStore::open(&blob_uri).map_err(ServerError::Blob)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.state_dir.join(DATABASE_FILE))?);
    let mut snapshot = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.load()).await.expect("load does not panic")?
    };
    let users = Arc::new(users::Users::new(std::mem::take(&mut snapshot.users)));
    let admin_token = admin_token(&config.state_dir, &users, store.as_ref())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Listen { addr: config.listen, source })?;
    let enrolment = if config.insecure_http {
        tracing::warn!(
            "serving plain HTTP (--insecure-http): tokens cross the network in the clear and agents join unchecked"
        );
        None
    } else {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = tls::ClusterCa::load_or_create(&config.state_dir, &secrets).map_err(ServerError::Tls)?;
        let tokens = std::mem::take(&mut snapshot.join_tokens);
        let certs = std::mem::take(&mut snapshot.node_certs);
        Some(Arc::new(enrol::Enrolment::new(ca, tokens, certs)))
    };
    let url = format!("{}://{addr}", if enrolment.is_some() { "https" } else { "http" });

    let mut fx = Effects::default();
    let providers = Providers::standard(config.state_dir.clone(), config.agent_program.clone());
    let rules = Arc::new(providers.clone());
    let cluster = Cluster::restore(config.cluster.clone(), rules, snapshot, &mut fx, now_millis());
    let handle = actor::spawn(
        cluster,
        fx,
        actor::Parts {
            store: store.clone(),
            providers: providers.clone(),
            secrets: secrets.clone(),
            url: url.clone(),
            enrolment: enrolment.clone(),
            users: users.clone(),
        },
    );
    let access = Access {
        url: url.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        user: thunderhead_core::access::ADMIN.into(),
        token: admin_token,
        ca: enrolment.as_ref().map(|e| e.ca.cert_pem.clone()).unwrap_or_default(),
    };
    write_access(&config.state_dir, &access)?;

    let file_roots = config.file_roots.iter().map(|r| std::path::absolute(r).unwrap_or_else(|_| r.clone())).collect();
    let locations =
        Arc::new(locations::Locations::new(blobs.clone(), &blob_uri, config.job_blob_stores.clone(), file_roots));
    let parts = api::Parts {
        handle: handle.clone(),
        store,
        providers,
        secrets,
        blobs,
        users,
        enrolment: enrolment.clone(),
        locations,
    };
    // The API description and the dashboard's files are public: they sit outside the API's token
    // check.
    let app = api::router(parts)
        .merge(gateway::router(handle, enrolment.clone()))
        .merge(openapi::router())
        .merge(web::router());
    let tls_config = match &enrolment {
        Some(enrolment) => {
            let names = tls::server_names(addr, &config.tls_names);
            Some(enrolment.ca.server_config(&names).map_err(ServerError::Tls)?)
        }
        None => None,
    };
    let fd_limit = connections::raise_fd_limit();
    let limits = connections::Limits::for_fd_limit(fd_limit);
    tracing::debug!(fd_limit, ?limits, "connection limits");
    let served = tokio::spawn(async move { match connections::serve(listener, tls_config, app, limits).await {} });
    tracing::info!(%url, state_dir = %config.state_dir.display(), "head node listening");
    Ok(RunningServer { url, addr, served })
}

/// The administrator's token for `access.json`: the one already there if it still verifies,
/// else a new one (on first start, or when the file was lost: whoever runs the head node on
/// this state directory is its administrator).
fn admin_token(state_dir: &Path, users: &users::Users, store: &dyn Store) -> Result<String, ServerError> {
    use thunderhead_core::access::{ADMIN, Role};
    let existing = std::fs::read_to_string(state_dir.join(ACCESS_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<Access>(&text).ok())
        .map(|a| a.token);
    if let Some(token) = existing
        && users.verify(&token).is_some_and(|c| c.name == ADMIN && c.role == Role::Administrator)
    {
        return Ok(token);
    }
    let (record, token) = users::issue(ADMIN, Role::Administrator, now_millis());
    store.apply(&[thunderhead_core::persist::Op::PutUser(record.clone())])?;
    users.put(record);
    tracing::info!(file = %state_dir.join(ACCESS_FILE).display(), "issued the administrator's token into the access file");
    Ok(token)
}

fn write_access(state_dir: &Path, access: &Access) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(ACCESS_FILE);
    let tmp = state_dir.join(format!("{ACCESS_FILE}.tmp"));
    let err = |source| ServerError::Access { path: path.display().to_string(), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    file.write_all(serde_json::to_string_pretty(access).expect("access serialises").as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(())
}
