//! Providers deploy and remove burst nodes. One trait, [`Provider`], with few verbs: validate
//! (a dry run), deploy, batched status, idempotent remove. A deploy returns a handle that the
//! head node persists, so a restarted head node can check on and remove what it deployed.
//!
//! A provider declares everything about itself in its [`ProviderInfo`]: its name, its settings
//! and their rules, whether this build deploys its nodes. The head node's model names no
//! provider: it asks [`Providers`], as its [`ProviderRules`], to check a template's settings.
//! Adding a provider is a module here and one line in [`Providers::standard`].

pub mod azure_provider;
pub mod local_provider;
pub mod settings;
pub mod shell;
pub mod sim_provider;
pub mod slurm_provider;
pub mod ssh_provider;

pub use settings::{SettingKind, SettingSpec};
use thunderhead_core::provider_rules::{Derived, ProviderRules};

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use thunderhead_core::size::NodeSize;
use thunderhead_core::template::Template;
use thunderhead_core::view::{ProviderSizeView, ProviderView, SettingView};

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

/// A template's secret settings, opened: held in memory only while a provider call needs them,
/// never logged or shown (a [`Secret`]'s `Debug` and serialised form are `***`).
pub type Secrets = std::collections::BTreeMap<String, Secret>;
pub use thunderhead_core::template::Secret;

/// A node template as its provider's verbs see it: its settings, and its secret settings opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub template: Template,
    pub secrets: Secrets,
}

impl Set {
    /// A template whose secret settings are not needed (or that has none).
    pub fn of(template: Template) -> Set {
        Set { template, secrets: Secrets::new() }
    }

    /// A secret setting's value, if the template holds it.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).map(|s| s.0.as_str())
    }
}

/// Everything a provider needs to deploy one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    pub node: String,
    pub template: Template,
    /// The template's secret settings, opened.
    pub secrets: Secrets,
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
    /// It exists but does not run yet, for this reason in the provider's words (a batch queue's
    /// `Resources`, a VM still being allocated).
    Waiting(String),
    Gone,
}

/// Something of a template's set that the provider holds, found by looking rather than
/// remembered: what it finds that no node or proxy owns is a leftover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The handle it removes the thing with, equal to the one its deploy returned.
    pub handle: serde_json::Value,
    /// The node or proxy it was made for, if it says.
    pub node: Option<String>,
    /// What and where it is, in a line (`agent pid 4242 on 10.0.0.7:22 in ~/.thunderhead/…`).
    pub what: String,
}

/// What a provider declares about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ProviderInfo {
    pub name: &'static str,
    /// What it deploys, in one line.
    pub summary: &'static str,
    pub settings: &'static [SettingSpec],
    /// Whether this build deploys its nodes; templates of the others are checked and kept.
    pub deployable: bool,
    /// Whether its sets run proxies that their agents reach the head node through.
    pub proxies: bool,
    /// Its sizes as (name, cores): `None` for the standard sizes and list prices (Small to
    /// ExtraLarge).
    pub sizes: Option<&'static [(&'static str, u32)]>,
    /// The version of the handles it writes; it reads its older ones.
    pub handle_version: u64,
    /// What it means when it reports a deployment gone, for the node's log.
    pub gone: &'static str,
}

impl ProviderInfo {
    /// What the API shows of this provider: everything but what its gone deployments mean.
    pub fn view(&self) -> ProviderView {
        ProviderView {
            name: self.name.into(),
            summary: self.summary.into(),
            deployable: self.deployable,
            proxies: self.proxies,
            handle_version: self.handle_version,
            sizes: self.sizes.map(|sizes| {
                sizes.iter().map(|&(name, cores)| ProviderSizeView { name: name.into(), cores }).collect()
            }),
            settings: self
                .settings
                .iter()
                .map(|s| SettingView {
                    name: s.name.into(),
                    kind: s.kind.name().into(),
                    default: s.default.map(str::to_string),
                    rule: s.rule.into(),
                })
                .collect(),
        }
    }
}

pub trait Provider: Send + Sync {
    /// What it declares about itself.
    fn info(&self) -> &'static ProviderInfo;
    fn name(&self) -> &'static str {
        self.info().name
    }
    /// Puts settings that passed [`settings::check_declared`] in their one accepted form and
    /// checks what only this provider knows; `sealed` says whether the template holds sealed
    /// secret settings.
    fn check_settings(
        &self,
        settings: &mut serde_json::Map<String, serde_json::Value>,
        sealed: bool,
    ) -> thunderhead_core::Result<Derived> {
        let _ = (settings, sealed);
        Ok(Derived::default())
    }
    /// Checks the secret settings a client gave (by name; `None` when it gave none) and writes
    /// into `settings` what they tell of themselves (a certificate's thumbprint). The keys are
    /// secret settings it declares. Called off the async runtime, before the settings are
    /// checked: opening a certificate may take a while.
    fn take_secrets(
        &self,
        given: Option<&std::collections::BTreeMap<String, String>>,
        settings: &mut serde_json::Map<String, serde_json::Value>,
        creating: bool,
    ) -> thunderhead_core::Result<()> {
        let _ = (given, settings, creating);
        Ok(())
    }
    /// Checks credentials and reach without deploying anything.
    fn validate<'a>(&'a self, set: &'a Set) -> BoxFuture<'a, Vec<Check>>;
    /// Deploys one node and returns its handle.
    fn deploy<'a>(&'a self, request: &'a DeployRequest) -> BoxFuture<'a, Result<serde_json::Value>>;
    /// Deploys one proxy of a set and returns its handle and the URL agents connect to.
    fn deploy_proxy<'a>(&'a self, request: &'a ProxyRequest) -> BoxFuture<'a, Result<(serde_json::Value, String)>>;
    /// The provider's view of each handle of `set`'s deployments, in order.
    fn status<'a>(
        &'a self,
        set: &'a Set,
        handles: &'a [serde_json::Value],
    ) -> BoxFuture<'a, Vec<Result<ExternalStatus>>>;
    /// Removes a deployment of `set`; removing what is already gone succeeds.
    fn remove<'a>(&'a self, set: &'a Set, handle: &'a serde_json::Value) -> BoxFuture<'a, Result<()>>;
    /// Everything of `set` the provider holds, for finding leftovers that no node owns
    /// (`template validate`, `node stop --orphans`). A provider that cannot look finds nothing.
    fn inventory<'a>(&'a self, set: &'a Set) -> BoxFuture<'a, Result<Vec<Found>>> {
        let _ = set;
        Box::pin(async { Ok(vec![]) })
    }
}

/// A handle a provider wrote, read back: of `kind` (`local`, `ssh`, …) and of a version this
/// build reads (`version` or older); `newer` says what to do with one of a newer build.
pub(crate) fn read_handle<T: serde::de::DeserializeOwned>(
    handle: &serde_json::Value,
    kind: &str,
    version: u64,
    newer: &str,
) -> Result<T> {
    let parsed = serde_json::from_value(handle.clone())
        .map_err(|e| ProviderError::fatal(format!("the node's handle is not a {kind} handle ({e}): {handle}")))?;
    let written = handle.get("v").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if written > version {
        return Err(ProviderError::fatal(format!(
            "the node's handle is of version {written}, newer than this build reads ({version}); {newer}"
        )));
    }
    Ok(parsed)
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
                Arc::new(sim_provider::SimProvider::new(agent_program.clone(), nodes).isolated(isolation)),
                Arc::new(azure_provider::AzureProvider),
                Arc::new(ssh_provider::SshProvider::new(agent_program.clone(), &state_dir)),
                Arc::new(slurm_provider::SlurmProvider::new(agent_program, &state_dir)),
            ],
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.name() == name).cloned()
    }

    /// What each provider of this build declares, in registration order.
    pub fn infos(&self) -> Vec<&'static ProviderInfo> {
        self.providers.iter().map(|p| p.info()).collect()
    }

    /// What provider `name` declares; an unknown name is not found, with the choices named.
    pub fn info(&self, name: &str) -> thunderhead_core::Result<&'static ProviderInfo> {
        self.get(name).map(|p| p.info()).ok_or_else(|| thunderhead_core::Error::not_found(self.unknown(name)))
    }

    fn named(&self, name: &str) -> thunderhead_core::Result<Arc<dyn Provider>> {
        self.get(name).ok_or_else(|| thunderhead_core::Error::invalid(self.unknown(name)))
    }

    /// Why `name` names no provider, and which names do.
    fn unknown(&self, name: &str) -> String {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name()).collect();
        format!(
            "provider \"{}\" is not available in this build (choose one of: {}; see thunderhead provider list)",
            thunderhead_core::text::escape(name),
            names.join(", ")
        )
    }
}

impl Providers {
    /// Checks the secret settings a client gave for a template of `provider` (see
    /// [`Provider::take_secrets`]): each must be a secret setting the provider declares.
    pub fn take_secrets(
        &self,
        provider: &str,
        given: Option<&std::collections::BTreeMap<String, String>>,
        settings: &mut serde_json::Map<String, serde_json::Value>,
        creating: bool,
    ) -> thunderhead_core::Result<()> {
        let p = match (self.get(provider), given) {
            (Some(p), _) => p,
            // With nothing secret given, the settings' check names an unknown provider.
            (None, None) => return Ok(()),
            (None, Some(_)) => self.named(provider)?,
        };
        let secrets: Vec<&str> =
            p.info().settings.iter().filter(|s| s.kind == SettingKind::Secret).map(|s| s.name).collect();
        for key in given.into_iter().flat_map(|g| g.keys()) {
            if !secrets.contains(&key.as_str()) {
                let takes = if secrets.is_empty() { "none".to_string() } else { secrets.join(", ") };
                return Err(thunderhead_core::Error::invalid(format!(
                    "provider {provider} takes no secret setting {} (its secret settings: {takes})",
                    thunderhead_core::text::escape(key)
                )));
            }
        }
        p.take_secrets(given, settings, creating)
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.providers.iter().map(|p| p.name())).finish()
    }
}

impl ProviderRules for Providers {
    fn check(
        &self,
        provider: &str,
        settings: &mut serde_json::Map<String, serde_json::Value>,
        sealed: bool,
    ) -> thunderhead_core::Result<Derived> {
        let p = self.named(provider)?;
        settings::check_declared(provider, p.info().settings, settings)?;
        // The provider's own rules name the key, the rule and the fix; the provider is named here.
        p.check_settings(settings, sealed).map_err(|e| thunderhead_core::Error {
            message: format!("a template of provider \"{provider}\": {}", e.message),
            ..e
        })
    }

    fn deployable(&self, provider: &str) -> bool {
        self.get(provider).is_some_and(|p| p.info().deployable)
    }

    fn proxies(&self, provider: &str) -> bool {
        self.get(provider).is_none_or(|p| p.info().proxies)
    }
}

#[cfg(test)]
mod contract;

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> Providers {
        Providers::standard(PathBuf::from("/nonexistent/state"), PathBuf::from("/nonexistent/thunderhead"))
    }

    #[test]
    fn every_provider_declares_itself_whole() {
        let providers = standard();
        for info in providers.infos() {
            assert!(providers.get(info.name).is_some_and(|p| p.name() == info.name), "{}", info.name);
            assert!(!info.summary.is_empty(), "{}", info.name);
            let mut names: Vec<&str> = info.settings.iter().map(|s| s.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), info.settings.len(), "{}: a setting declared twice", info.name);
            assert!(info.settings.iter().all(|s| !s.rule.is_empty()), "{}: a setting without its rule", info.name);
        }
    }

    #[test]
    fn an_unknown_provider_is_refused_with_the_choices() {
        let err = standard().check("gcp", &mut Default::default(), false).unwrap_err();
        assert!(err.message.contains("\"gcp\"") && err.message.contains("local, sim, azure"), "{err}");
    }

    #[test]
    fn an_unknown_provider_is_not_found_with_the_choices() {
        let err = standard().info("gcp").unwrap_err();
        assert_eq!(err.kind, thunderhead_core::ErrorKind::NotFound);
        assert!(err.message.contains("\"gcp\"") && err.message.contains("local, sim, azure"), "{err}");
        assert_eq!(standard().info("sim").unwrap().name, "sim");
    }

    #[test]
    fn a_view_shows_every_setting_secrets_included_by_kind() {
        let view = azure_provider::INFO.view();
        assert_eq!((view.name.as_str(), view.deployable, view.sizes), ("azure", false, None));
        let names: Vec<&str> = view.settings.iter().map(|s| s.name.as_str()).collect();
        let declared: Vec<&str> = azure_provider::INFO.settings.iter().map(|s| s.name).collect();
        assert_eq!(names, declared);
        let certificate = view.settings.iter().find(|s| s.name == "certificate").unwrap();
        assert_eq!(certificate.kind, "secret");
        let seed = sim_provider::INFO.view().settings.into_iter().find(|s| s.name == "seed").unwrap();
        assert_eq!((seed.kind.as_str(), seed.default.as_deref()), ("number", Some("0")));
    }

    #[test]
    fn a_bad_value_names_the_provider_the_key_and_the_rule() {
        let mut settings = serde_json::json!({"failure_rate": 2}).as_object().unwrap().clone();
        let err = standard().check("sim", &mut settings, false).unwrap_err();
        assert!(
            err.message.contains("\"sim\"") && err.message.contains("failure_rate") && err.message.contains("0 to 1"),
            "{err}"
        );
    }

    #[test]
    fn unknown_settings_list_the_known_ones() {
        let mut settings = serde_json::json!({"region": "eu"}).as_object().unwrap().clone();
        let err = standard().check("local", &mut settings, false).unwrap_err();
        assert!(err.message.contains("\"region\"") && err.message.contains("work_root"), "{err}");
    }

    #[test]
    fn only_providers_this_build_deploys_are_deployable() {
        let providers = standard();
        assert!(providers.deployable("local") && providers.deployable("sim"));
        assert!(!providers.deployable("azure") && !providers.deployable("gcp"));
    }
}
