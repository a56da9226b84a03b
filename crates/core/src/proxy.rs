//! Proxies: the relays a started set's agents reach the head node through.
//!
//! Every set that has a deployed node runs its template's number of proxies (Small instances,
//! counted in the quota and the cost). Nodes of the set are deployed only once a proxy is up,
//! and their agents are given every proxy's address, so they fail over from one to another. A
//! proxy that dies is redeployed on the same address, so the agents' lists stay valid.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum ProxyState {
    Deploying,
    Up { url: String },
    Failed { cause: String },
    Removing,
}

impl ProxyState {
    pub fn name(&self) -> &'static str {
        match self {
            ProxyState::Deploying => "Deploying",
            ProxyState::Up { .. } => "Up",
            ProxyState::Failed { .. } => "Failed",
            ProxyState::Removing => "Removing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRecord {
    /// `TEMPLATE-proxy-N`.
    pub name: String,
    pub template: String,
    pub state: ProxyState,
    pub handle: Option<serde_json::Value>,
    /// The address it listened on, reused when it is redeployed.
    pub address: Option<String>,
    /// When it entered its state: a failed proxy is tried again a while later.
    #[serde(default)]
    pub since: crate::Millis,
    /// The provider that deployed it, to remove it even after its template is deleted.
    #[serde(default)]
    pub provider: String,
}

/// The name of a set's `n`-th proxy.
pub fn proxy_name(template: &str, n: u32) -> String {
    format!("{template}-proxy-{n}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyView {
    pub name: String,
    pub state: String,
    pub url: Option<String>,
    pub cause: Option<String>,
}

impl ProxyRecord {
    pub fn view(&self) -> ProxyView {
        let (url, cause) = match &self.state {
            ProxyState::Up { url } => (Some(url.clone()), None),
            ProxyState::Failed { cause } => (None, Some(cause.clone())),
            ProxyState::Deploying | ProxyState::Removing => (None, None),
        };
        ProxyView { name: self.name.clone(), state: self.state.name().to_string(), url, cause }
    }
}
