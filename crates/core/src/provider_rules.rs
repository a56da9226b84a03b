//! What the head node's model asks of the providers of this build.
//!
//! The core names no provider. A template keeps its provider's name and its settings as an
//! opaque map that [`ProviderRules::check`] put in their one accepted form and checked; the
//! providers crate answers for each provider it registers.

use crate::Result;
use serde_json::{Map, Value};

/// What a provider derives from a template's checked settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived {
    /// The blob store the template's packages go to when the template names none (a storage
    /// account that its settings name).
    pub blob_store: Option<String>,
}

pub trait ProviderRules: Send + Sync + std::fmt::Debug {
    /// Puts the `settings` of a template of `provider` in their one accepted form and checks
    /// them; `sealed` says whether the template holds sealed secret settings. Refuses an unknown
    /// provider, an unknown setting or a bad value with the provider, the key, the rule and the
    /// fix.
    fn check(&self, provider: &str, settings: &mut Map<String, Value>, sealed: bool) -> Result<Derived>;

    /// Whether this build deploys the nodes of `provider`. Templates of the others are checked
    /// and kept, but their nodes are not started.
    fn deployable(&self, provider: &str) -> bool;

    /// Whether the agents of `provider`'s sets reach the head node through proxies that the set
    /// runs (from 1 to 100, 2 by default) rather than directly (0 proxies).
    fn proxies(&self, provider: &str) -> bool;
}

/// Rules that take every provider and every setting as given, every provider deployable: for
/// tests and benchmarks of the model, where no provider runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TakeAsGiven;

impl ProviderRules for TakeAsGiven {
    fn check(&self, _provider: &str, _settings: &mut Map<String, Value>, _sealed: bool) -> Result<Derived> {
        Ok(Derived::default())
    }

    fn deployable(&self, _provider: &str) -> bool {
        true
    }

    fn proxies(&self, _provider: &str) -> bool {
        true
    }
}
