//! The `sim` provider: a cloud rehearsal on this machine.
//!
//! Deployments take a random time from the template's `deploy_time` range, fail with its
//! `failure_rate` for the reasons real clouds give (no capacity in the region, quota used up, a
//! timeout, a node that boots but never connects), and stop at its `capacity`. Outcomes are drawn
//! from a generator seeded by the template's `seed`, the node's name and how often that node was
//! deployed, so a rehearsal repeats exactly. Nodes that deploy run real agent processes, as with
//! the `local` provider (with its environment and task user rules), so their tasks really run;
//! light agents run in this process and run no task.

use crate::local_provider::{self, LocalProvider};
use crate::{BoxFuture, Check, DeployRequest, ExternalStatus, Provider, ProviderError, ProxyRequest, Result};
use crate::{SettingKind, SettingSpec};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use thunderhead_core::Millis;
use thunderhead_core::provider_rules::Derived;
use thunderhead_core::template::Template;

/// What the `sim` provider declares.
pub static INFO: crate::ProviderInfo = crate::ProviderInfo {
    name: "sim",
    summary: "a cloud rehearsal on this machine: deployments take a drawn time, fail at a drawn rate and stop at a capacity",
    settings: &[
        SettingSpec::new("work_root", SettingKind::File, "a directory where node directories are created"),
        SettingSpec::new("deploy_time", SettingKind::Text, "how long a deployment takes, MIN..MAX, e.g. 2s..8s")
            .or("1s..3s"),
        SettingSpec::new("failure_rate", SettingKind::Number, "the probability that a deployment fails, 0 to 1")
            .or("0"),
        SettingSpec::new("capacity", SettingKind::Number, "the most nodes the simulated cloud holds at once"),
        SettingSpec::new("seed", SettingKind::Number, "the seed that makes the simulation repeatable").or("0"),
        SettingSpec::new(
            "light",
            SettingKind::Bool,
            "run nodes as light agents inside the head node that finish each task at once (scale rehearsals)",
        )
        .or("false"),
    ],
    deployable: true,
    proxies: true,
    sizes: None,
    handle_version: crate::HANDLE_VERSION,
    gone: "the simulated deployment ended, or its agent process exited (see agent.log in the node directory)",
};

/// Settings of the `sim` provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimSettings {
    pub deploy_min: Millis,
    pub deploy_max: Millis,
    pub failure_rate: f64,
    pub capacity: Option<u32>,
    pub seed: u64,
    /// Nodes are light in-process agents rather than agent processes.
    pub light: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings { deploy_min: 1_000, deploy_max: 3_000, failure_rate: 0.0, capacity: None, seed: 0, light: false }
    }
}

impl SimSettings {
    pub fn from_map(settings: &Map<String, Value>) -> thunderhead_core::Result<SimSettings> {
        let mut s = SimSettings::default();
        if let Some(v) = settings.get("deploy_time") {
            let text = v.as_str().ok_or_else(|| {
                thunderhead_core::Error::invalid(format!("deploy_time {v} is not text (write e.g. 2s..8s)"))
            })?;
            let (min, max) = match text.split_once("..") {
                Some((a, b)) => {
                    (thunderhead_core::duration::parse_duration(a)?, thunderhead_core::duration::parse_duration(b)?)
                }
                None => {
                    let d = thunderhead_core::duration::parse_duration(text)?;
                    (d, d)
                }
            };
            if min > max {
                return Err(thunderhead_core::Error::invalid(format!(
                    "deploy_time \"{text}\" has its minimum above its maximum (write MIN..MAX)"
                )));
            }
            (s.deploy_min, s.deploy_max) = (min, max);
        }
        if let Some(v) = settings.get("failure_rate") {
            s.failure_rate = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    thunderhead_core::Error::invalid(format!(
                        "failure_rate {v} is not a probability (give a number from 0 to 1)"
                    ))
                })?;
        }
        if let Some(v) = settings.get("capacity") {
            let c = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .filter(|c| *c >= 1 && *c <= 1_000_000)
                .ok_or_else(|| {
                    thunderhead_core::Error::invalid(format!(
                        "capacity {v} is not a node count (give a whole number from 1)"
                    ))
                })?;
            s.capacity = Some(c as u32);
        }
        if let Some(v) = settings.get("light") {
            s.light = v
                .as_bool()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .ok_or_else(|| thunderhead_core::Error::invalid(format!("light {v} is not true or false")))?;
        }
        if let Some(v) = settings.get("seed") {
            s.seed = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .ok_or_else(|| thunderhead_core::Error::invalid(format!("seed {v} is not a whole number")))?;
        }
        Ok(s)
    }
}

pub struct SimProvider {
    local: LocalProvider,
    state: Mutex<SimState>,
    /// Light agents running in this process, by node.
    light: Mutex<HashMap<String, LightAgent>>,
}

struct LightAgent {
    deployment: u64,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The handle of a light agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LightHandle {
    v: u64,
    light: bool,
    node: String,
    /// Tells this deployment of the node from earlier ones.
    #[serde(default)]
    deployment: u64,
}

fn light_handle(handle: &serde_json::Value) -> Option<LightHandle> {
    serde_json::from_value::<LightHandle>(handle.clone()).ok().filter(|h| h.light)
}

#[derive(Default)]
struct SimState {
    /// How often each node was deployed, to vary the outcome of a retry.
    deployments: HashMap<String, u64>,
    /// Nodes deployed per template, against its capacity.
    held: HashMap<String, HashSet<String>>,
}

/// How one deployment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deployed,
    NoCapacity,
    QuotaExceeded,
    TimedOut,
    NeverConnects,
}

/// A small, fast, well-mixed generator (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The delay and outcome of the `n`-th deployment of `node`: a pure function of its inputs.
pub fn draw(settings: &SimSettings, node: &str, n: u64) -> (Duration, Outcome) {
    let mut rng = SplitMix(settings.seed ^ fnv1a(node) ^ n.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let span = settings.deploy_max - settings.deploy_min;
    let delay = settings.deploy_min + if span == 0 { 0 } else { rng.next() % (span + 1) };
    let outcome = if rng.unit() < settings.failure_rate {
        match rng.next() % 4 {
            0 => Outcome::NoCapacity,
            1 => Outcome::QuotaExceeded,
            2 => Outcome::TimedOut,
            _ => Outcome::NeverConnects,
        }
    } else {
        Outcome::Deployed
    };
    (Duration::from_millis(delay), outcome)
}

impl SimProvider {
    pub fn new(agent_program: PathBuf, default_root: PathBuf) -> SimProvider {
        SimProvider {
            local: LocalProvider::new(agent_program, default_root),
            state: Mutex::default(),
            light: Mutex::default(),
        }
    }

    /// Runs the tasks of the nodes whose agents it starts as `isolation` says, as the `local`
    /// provider does.
    pub fn isolated(mut self, isolation: Option<local_provider::TaskIsolation>) -> SimProvider {
        self.local = self.local.isolated(isolation);
        self
    }

    fn settings(template: &Template) -> Result<SimSettings> {
        SimSettings::from_map(&template.settings).map_err(|e| ProviderError::fatal(e.message))
    }

    async fn deploy_one(&self, request: &DeployRequest) -> Result<serde_json::Value> {
        let settings = Self::settings(&request.template)?;
        let n = {
            let mut state = self.state.lock().expect("sim state");
            let n = state.deployments.entry(request.node.clone()).or_default();
            *n += 1;
            *n
        };
        let (delay, outcome) = draw(&settings, &request.node, n);
        tokio::time::sleep(delay).await;
        {
            let mut state = self.state.lock().expect("sim state");
            let held = state.held.entry(request.template.name.clone()).or_default();
            if let Some(cap) = settings.capacity
                && held.len() >= cap as usize
                && !held.contains(&request.node)
            {
                return Err(ProviderError::transient(format!(
                    "capacity reached: the simulated cloud holds at most {cap} nodes of template {} (sim)",
                    request.template.name
                )));
            }
            match outcome {
                Outcome::Deployed | Outcome::NeverConnects => {
                    held.insert(request.node.clone());
                }
                Outcome::NoCapacity | Outcome::QuotaExceeded | Outcome::TimedOut => {}
            }
        }
        let secs = delay.as_secs_f64();
        if settings.light && outcome == Outcome::Deployed {
            return Ok(self.start_light(request));
        }
        let handle = match outcome {
            Outcome::Deployed => self.local.spawn_blocking(request.clone(), request.server_url.clone()).await?,
            // The node boots, but its agent is pointed at an address where nothing listens.
            Outcome::NeverConnects => self.local.spawn_blocking(request.clone(), "http://127.0.0.1:1".into()).await?,
            Outcome::NoCapacity => {
                return Err(ProviderError::transient(format!(
                    "allocation failed after {secs:.1} s: no capacity for this size in the region (sim)"
                )));
            }
            Outcome::QuotaExceeded => {
                return Err(ProviderError::fatal(format!(
                    "quota exceeded after {secs:.1} s: the subscription's core quota is used up (sim)"
                )));
            }
            Outcome::TimedOut => {
                return Err(ProviderError::transient(format!("the deployment timed out after {secs:.1} s (sim)")));
            }
        };
        Ok(serde_json::to_value(handle).expect("handles serialise"))
    }
}

impl SimProvider {
    fn start_light(&self, request: &DeployRequest) -> serde_json::Value {
        let deployment = self.state.lock().expect("sim state").deployments.get(&request.node).copied().unwrap_or(0);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(thunderhead_agent::run_light(
            request.server_url.clone(),
            request.node.clone(),
            request.size.cores(),
            request.join.as_ref().map(|g| (g.ca_pem.clone(), g.token.clone())),
            stopped,
        ));
        let agent = LightAgent { deployment, stop, task };
        if let Some(old) = self.light.lock().expect("light agents").insert(request.node.clone(), agent) {
            let _ = old.stop.send(());
        }
        let handle = LightHandle { v: crate::HANDLE_VERSION, light: true, node: request.node.clone(), deployment };
        serde_json::to_value(handle).expect("handles serialise")
    }
}

impl Provider for SimProvider {
    fn info(&self) -> &'static crate::ProviderInfo {
        &INFO
    }

    fn check_settings(&self, settings: &mut Map<String, Value>, _sealed: bool) -> thunderhead_core::Result<Derived> {
        SimSettings::from_map(settings).map(|_| Derived::default())
    }

    fn validate<'a>(&'a self, set: &'a crate::Set) -> BoxFuture<'a, Vec<Check>> {
        let template = &set.template;
        Box::pin(async move {
            let mut checks = vec![match Self::settings(template) {
                Ok(s) => Check {
                    name: "simulation settings".into(),
                    ok: true,
                    detail: format!(
                        "deploy time {}..{} ms, failure rate {}, capacity {}, seed {}",
                        s.deploy_min,
                        s.deploy_max,
                        s.failure_rate,
                        s.capacity.map_or("unlimited".to_string(), |c| c.to_string()),
                        s.seed
                    ),
                },
                Err(e) => Check { name: "simulation settings".into(), ok: false, detail: e.message },
            }];
            checks.extend(self.local.validate(set).await);
            checks
        })
    }

    fn deploy<'a>(&'a self, request: &'a DeployRequest) -> BoxFuture<'a, Result<serde_json::Value>> {
        Box::pin(self.deploy_one(request))
    }

    fn deploy_proxy<'a>(&'a self, request: &'a ProxyRequest) -> BoxFuture<'a, Result<(serde_json::Value, String)>> {
        Box::pin(async move {
            // Proxies take the deployment time too; the failure rate applies to nodes.
            let settings = Self::settings(&request.template)?;
            let (delay, _) = draw(&settings, &request.proxy, 1);
            tokio::time::sleep(delay).await;
            self.local.deploy_proxy(request).await
        })
    }

    fn status<'a>(
        &'a self,
        set: &'a crate::Set,
        handles: &'a [serde_json::Value],
    ) -> BoxFuture<'a, Vec<Result<ExternalStatus>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(match light_handle(h) {
                    Some(l) => {
                        let agents = self.light.lock().expect("light agents");
                        let running =
                            agents.get(&l.node).is_some_and(|a| a.deployment == l.deployment && !a.task.is_finished());
                        Ok(if running { ExternalStatus::Running } else { ExternalStatus::Gone })
                    }
                    None => self.local.status(set, std::slice::from_ref(h)).await.remove(0),
                });
            }
            out
        })
    }

    fn remove<'a>(&'a self, set: &'a crate::Set, handle: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if let Some(l) = light_handle(handle) {
                let mut agents = self.light.lock().expect("light agents");
                // Only the deployment the handle names: a newer one of the node stays.
                if agents.get(&l.node).is_some_and(|a| a.deployment == l.deployment)
                    && let Some(agent) = agents.remove(&l.node)
                {
                    let _ = agent.stop.send(());
                }
                drop(agents);
                let mut state = self.state.lock().expect("sim state");
                for held in state.held.values_mut() {
                    held.remove(&l.node);
                }
                return Ok(());
            }
            let parsed = local_provider::parse(handle)?;
            self.local.remove(set, handle).await?;
            if let Some(node) = parsed.dir.file_name().and_then(|n| n.to_str()) {
                let mut state = self.state.lock().expect("sim state");
                for held in state.held.values_mut() {
                    held.remove(node);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// Checks settings as the head node does: declared kinds first, then the sim's own rules.
    fn check(v: Value) -> thunderhead_core::Result<SimSettings> {
        let m = map(v);
        crate::settings::check_declared("sim", INFO.settings, &m)?;
        SimSettings::from_map(&m)
    }

    #[test]
    fn sim_settings_parse_and_bad_values_are_named() {
        let s = SimSettings::from_map(&map(
            json!({"deploy_time": "2s..8s", "failure_rate": 0.25, "capacity": "10", "seed": 7}),
        ))
        .unwrap();
        assert_eq!(
            s,
            SimSettings {
                deploy_min: 2_000,
                deploy_max: 8_000,
                failure_rate: 0.25,
                capacity: Some(10),
                seed: 7,
                light: false
            }
        );
        let err = check(json!({"failure_rate": 2})).unwrap_err();
        assert!(err.message.contains("failure_rate 2") && err.message.contains("0 to 1"), "{err}");
        let err = check(json!({"deploy_time": "8s..2s"})).unwrap_err();
        assert!(err.message.contains("minimum above its maximum"), "{err}");
    }

    #[test]
    fn the_same_seed_draws_the_same_rehearsal() {
        let s = SimSettings {
            deploy_min: 2_000,
            deploy_max: 8_000,
            failure_rate: 0.3,
            capacity: None,
            seed: 42,
            light: false,
        };
        let run = |s: &SimSettings| (1..=50).map(|i| draw(s, &format!("SimCN-{i:04}"), 1)).collect::<Vec<_>>();
        assert_eq!(run(&s), run(&s));
        assert_ne!(run(&s), run(&SimSettings { seed: 43, ..s }));
        assert!(run(&s).iter().all(|(d, _)| (2_000..=8_000).contains(&(d.as_millis() as u64))));
    }

    #[test]
    fn the_failure_rate_is_honoured_and_every_reason_occurs() {
        let s = SimSettings { deploy_min: 0, deploy_max: 0, failure_rate: 0.25, capacity: None, seed: 1, light: false };
        let outcomes: Vec<Outcome> = (0..4000).map(|i| draw(&s, "SimCN-0001", i).1).collect();
        let failed = outcomes.iter().filter(|o| **o != Outcome::Deployed).count();
        assert!((800..1200).contains(&failed), "{failed} of 4000 failed at rate 0.25");
        for reason in [Outcome::NoCapacity, Outcome::QuotaExceeded, Outcome::TimedOut, Outcome::NeverConnects] {
            assert!(outcomes.contains(&reason), "{reason:?} never drawn");
        }
        let none = SimSettings { failure_rate: 0.0, ..s };
        assert!((0..1000).all(|i| draw(&none, "n", i).1 == Outcome::Deployed));
    }

    fn sim_set() -> crate::Set {
        crate::contract::set("sim")
    }

    #[test]
    fn capacity_refuses_the_node_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = SimProvider::new(crate::contract::stand_in(dir.path()), dir.path().join("nodes"));
        let mut template = crate::contract::template("sim");
        template.settings = serde_json::json!({"deploy_time": "0ms", "capacity": 1}).as_object().unwrap().clone();
        let request = |node: &str| DeployRequest {
            node: node.into(),
            template: template.clone(),
            ..crate::contract::request("sim", node)
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let first = p.deploy(&request("SimCN-0001")).await.unwrap();
            let err = p.deploy(&request("SimCN-0002")).await.unwrap_err();
            assert!(err.message.contains("capacity reached") && err.transient, "{err}");
            p.remove(&sim_set(), &first).await.unwrap();
            let second = p.deploy(&request("SimCN-0002")).await.expect("room again after a removal");
            p.remove(&sim_set(), &second).await.unwrap();
        });
    }

    #[test]
    fn a_light_node_is_an_in_process_agent_that_status_and_remove_know() {
        let dir = tempfile::tempdir().unwrap();
        let p = SimProvider::new(crate::contract::stand_in(dir.path()), dir.path().join("nodes"));
        let mut request = crate::contract::request("sim", "SimCN-0001");
        request.template.settings.insert("light".into(), serde_json::json!(true));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let handle = p.deploy(&request).await.unwrap();
            assert_eq!(handle["light"], true);
            assert!(!dir.path().join("nodes/SimCN-0001").exists(), "no process, no directory");
            assert_eq!(p.status(&sim_set(), std::slice::from_ref(&handle)).await, vec![Ok(ExternalStatus::Running)]);
            p.remove(&sim_set(), &handle).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert_eq!(p.status(&sim_set(), std::slice::from_ref(&handle)).await, vec![Ok(ExternalStatus::Gone)]);
        });
    }

    crate::provider_contract_tests!(deploys, |dir: &std::path::Path| {
        SimProvider::new(crate::contract::stand_in(dir), dir.join("nodes"))
    });
}
