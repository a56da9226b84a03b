//! Providers deploy and remove burst nodes. One trait, [`Provider`], with few verbs: validate
//! (a dry run), deploy, batched status, idempotent remove. A deploy returns a handle that the
//! head node persists, so a restarted head node can check on and remove what it deployed.

pub mod azure_provider;
pub mod local_provider;
pub mod sim_provider;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use thunderhead_core::size::NodeSize;
use thunderhead_core::template::Template;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The version of the handles this build writes; a handle names its version so later builds
/// can still read it.
pub const HANDLE_VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// Whether trying again later may succeed (capacity, network) or not (bad settings).
    pub transient: bool,
    pub message: String,
}

impl ProviderError {
    pub fn fatal(message: impl Into<String>) -> Self {
        ProviderError { transient: false, message: message.into() }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError { transient: true, message: message.into() }
    }
}

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// Everything a provider needs to deploy one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    pub node: String,
    pub template: Template,
    pub size: NodeSize,
    /// The URL the node's agent connects to.
    pub server_url: String,
    /// How the agent joins a head node that speaks TLS; `None` with `--insecure-http`.
    pub join: Option<JoinGrant>,
}

/// What a burst node's agent needs to join the cluster: the cluster's certificate, to verify
/// the head node with, and a join token of the node's template. Providers that start an agent
/// process hand it over on the agent's standard input, never on its command line (which other
/// users of the machine can read) nor in its environment (which its tasks would inherit).
pub use thunderhead_agent::JoinGrant;

/// Everything a provider needs to deploy one proxy of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    pub proxy: String,
    pub template: Template,
    /// The head node the proxy relays to.
    pub server_url: String,
    /// The address the proxy had before, to keep agents' lists valid when it is redeployed.
    pub address: Option<String>,
}

/// One check of `template validate`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// What the provider sees of a deployment. This is an input to the node lifecycle, not a
/// node state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalStatus {
    Running,
    Gone,
}

pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Checks credentials and reach without deploying anything.
    fn validate<'a>(&'a self, template: &'a Template) -> BoxFuture<'a, Vec<Check>>;
    /// Deploys one node and returns its handle.
    fn deploy<'a>(&'a self, request: &'a DeployRequest) -> BoxFuture<'a, Result<serde_json::Value>>;
    /// Deploys one proxy of a set and returns its handle and the URL agents connect to.
    fn deploy_proxy<'a>(&'a self, request: &'a ProxyRequest) -> BoxFuture<'a, Result<(serde_json::Value, String)>>;
    /// The provider's view of each handle, in order.
    fn status<'a>(&'a self, handles: &'a [serde_json::Value]) -> BoxFuture<'a, Vec<Result<ExternalStatus>>>;
    /// Removes a deployment; removing what is already gone succeeds.
    fn remove<'a>(&'a self, handle: &'a serde_json::Value) -> BoxFuture<'a, Result<()>>;
}

/// The providers of this build, by name.
#[derive(Clone, Default)]
pub struct Providers {
    providers: Vec<Arc<dyn Provider>>,
}

impl Providers {
    /// The providers available to a head node whose state lives in `state_dir`, deploying
    /// agents that run `agent_program`.
    pub fn standard(state_dir: PathBuf, agent_program: PathBuf) -> Providers {
        let nodes = state_dir.join("nodes");
        let isolation = local_provider::TaskIsolation::of_this_process();
        Providers {
            providers: vec![
                Arc::new(
                    local_provider::LocalProvider::new(agent_program.clone(), nodes.clone())
                        .isolated(isolation.clone()),
                ),
                Arc::new(sim_provider::SimProvider::new(agent_program, nodes).isolated(isolation)),
                Arc::new(azure_provider::AzureProvider),
            ],
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.name() == name).cloned()
    }
}

#[cfg(test)]
mod contract;
