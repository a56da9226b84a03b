//! Tests of the cluster's event handlers through a `TestEnv`: a cluster, a virtual clock and a
//! recording effects sink. The invariants are checked after every batch.

use super::*;
use crate::Result;
use crate::job::{JobSubmission, TaskState};
use crate::persist::{JobRecord, Op, Snapshot, TaskRow};
use crate::size::NodeSize;
use crate::template::{NewTemplate, TemplateEdit};
use crate::view::{AddNodes, NodeAction, NodeActionRequest, NodeActionResult};

mod billing_and_proxies;
mod deployments;
mod installs;
mod jobs;
mod lifecycle;
mod policy;
mod restart;
mod scheduling;

struct Env {
    c: Cluster,
    now: Millis,
    fx: Effects,
    next_session: SessionId,
    sessions: BTreeMap<String, SessionId>,
    /// Every op pushed so far, to rebuild a snapshot from.
    log: Vec<Op>,
    /// Answer proxy deployments at once.
    auto_proxies: bool,
}

impl Env {
    fn new() -> Env {
        let mut env = Env {
            c: Cluster::new(Config::default(), rules()),
            now: 1_000,
            fx: Effects::default(),
            next_session: 1,
            sessions: BTreeMap::new(),
            log: Vec::new(),
            auto_proxies: true,
        };
        let t = NewTemplate { name: "t".into(), provider: "lab".into(), ..Default::default() };
        env.c.create_template(&mut env.fx, t, env.now).unwrap();
        env.end();
        env
    }

    /// Ends the batch: schedules, checks invariants, returns what the batch produced. Proxy
    /// deployments are answered at once, as an instant provider would, and their follow-ups
    /// are part of the batch.
    fn end(&mut self) -> Effects {
        let mut all = Effects::default();
        loop {
            self.c.end_batch(&mut self.fx, self.now);
            self.c.check_invariants().unwrap();
            let fx = std::mem::take(&mut self.fx);
            self.log.extend(fx.ops.iter().cloned());
            let proxies: Vec<String> = fx
                .commands
                .iter()
                .filter_map(|c| match c {
                    Command::DeployProxy { proxy, .. } => Some(proxy.clone()),
                    _ => None,
                })
                .collect();
            let removed: Vec<(String, serde_json::Value)> = fx
                .commands
                .iter()
                .filter_map(|c| match c {
                    Command::RemoveProxy { proxy, handle, .. } => Some((proxy.clone(), handle.clone())),
                    _ => None,
                })
                .collect();
            all.ops.extend(fx.ops);
            all.commands.extend(fx.commands);
            if (proxies.is_empty() && removed.is_empty()) || !self.auto_proxies {
                return all;
            }
            for (p, h) in removed {
                self.c.proxy_removed(&mut self.fx, &p, &h, Ok(()), self.now);
            }
            for p in proxies {
                let answer = Ok((serde_json::json!({"proxy": p}), format!("http://127.0.0.1:9/{p}")));
                self.c.proxy_deployed(&mut self.fx, &p, answer, self.now);
            }
        }
    }

    fn act(&mut self, action: NodeAction, names: &[&str], force: bool) -> Vec<NodeActionResult> {
        let req =
            NodeActionRequest { action, template: None, names: names.iter().map(|s| s.to_string()).collect(), force };
        self.c.node_action(&mut self.fx, req, self.now).unwrap()
    }

    fn add(&mut self, count: u32, size: &str) -> Vec<String> {
        let req = AddNodes { template: "t".into(), count, size: size.into() };
        let names = self.c.add_nodes(&mut self.fx, req, self.now).unwrap().into_iter().map(|n| n.name).collect();
        self.end();
        names
    }

    fn connect(&mut self, name: &str, cores: u32) -> Result<SessionId> {
        let session = self.next_session;
        self.next_session += 1;
        let hello = Hello { name: name.into(), cores, running: vec![], completed: vec![], leaves_at: None };
        self.c.agent_hello(&mut self.fx, session, hello, self.now)?;
        self.sessions.insert(name.into(), session);
        Ok(session)
    }

    /// Adds burst nodes and takes them through start, deploy, agent and online.
    fn online(&mut self, count: u32, size: &str) -> Vec<String> {
        let names = self.add(count, size);
        for n in &names {
            self.act(NodeAction::Start, &[n], false);
            self.end();
            self.c.deployed(&mut self.fx, n, Ok(serde_json::json!({"pid": 1})), self.now);
            self.connect(n, NodeSize::parse(size).unwrap().cores()).unwrap();
            self.act(NodeAction::Online, &[n], false);
        }
        self.end();
        names
    }

    fn sweep(&mut self, range: &str, priority: Option<&str>, cores: Option<u32>, retries: Option<u32>) -> JobId {
        let sub = JobSubmission {
            command: Some(vec!["echo".into(), "*".into()]),
            sweep: Some(range.into()),
            priority: priority.map(String::from),
            cores_per_task: cores,
            retries,
            ..Default::default()
        };
        self.c.submit(&mut self.fx, sub, self.now).unwrap()
    }

    fn state(&self, name: &str) -> (String, String) {
        let n = self.c.node(name).unwrap();
        (n.state, n.health)
    }

    fn job_counts(&self, id: JobId) -> crate::job::TaskCounts {
        self.c.job(id).unwrap().tasks
    }

    /// A task ends after running for a second.
    fn finish(&mut self, node: &str, d: &Dispatch, code: i32) {
        self.finish_after(node, d, code, 1_000);
    }

    fn finish_after(&mut self, node: &str, d: &Dispatch, code: i32, ran: Millis) {
        let session = self.sessions[node];
        let result = TaskResult {
            key: d.key,
            attempt: d.attempt,
            exit_code: Some(code),
            message: None,
            started_at: self.now.saturating_sub(ran),
            ended_at: self.now,
            stdout: format!("{}\n", d.key.index),
            stderr: String::new(),
            staging_error: None,
        };
        self.c.agent_results(&mut self.fx, session, vec![result], self.now);
    }
}

/// The dispatches of a batch, per session.
fn assigned(fx: &Effects) -> Vec<(SessionId, Vec<Dispatch>)> {
    fx.commands
        .iter()
        .filter_map(|c| match c {
            Command::Assign { session, tasks } => Some((*session, tasks.clone())),
            _ => None,
        })
        .collect()
}

fn all_dispatches(fx: &Effects) -> Vec<Dispatch> {
    assigned(fx).into_iter().flat_map(|(_, t)| t).collect()
}

/// Applies ops the way a store does, to rebuild a snapshot in memory.
fn snapshot_of(ops: &[Op]) -> Snapshot {
    let mut templates = BTreeMap::new();
    let mut series = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    let mut jobs: BTreeMap<JobId, JobRecord> = BTreeMap::new();
    let mut tasks: BTreeMap<(JobId, u64), TaskRow> = BTreeMap::new();
    let mut usage: BTreeMap<u64, crate::cost::Usage> = BTreeMap::new();
    let mut proxies: BTreeMap<String, crate::proxy::ProxyRecord> = BTreeMap::new();
    let mut packages: BTreeMap<(String, u32), crate::package::Package> = BTreeMap::new();
    for op in ops {
        match op.clone() {
            Op::PutTemplate(t) => {
                templates.insert(t.name.clone(), t);
            }
            Op::DeleteTemplate(n) => {
                templates.remove(&n);
            }
            Op::PutSeries { prefix, last } => {
                series.insert(prefix, last);
            }
            Op::PutNode(n) => {
                nodes.insert(n.name.clone(), n);
            }
            Op::DeleteNode(n) => {
                nodes.remove(&n);
            }
            Op::NodeLog { .. } => {}
            Op::InsertJob(j) => {
                jobs.insert(j.id, j);
            }
            Op::JobProgress(p) => {
                let j = jobs.get_mut(&p.id).unwrap();
                (j.state, j.started_at, j.ended_at, j.cursor, j.counts) =
                    (p.state, p.started_at, p.ended_at, p.cursor, p.counts);
            }
            Op::PutTask(t) => {
                tasks.insert((t.job, t.index), t);
            }
            Op::PutUsage(u) => {
                usage.insert(u.id, u);
            }
            Op::PutProxy(p) => {
                proxies.insert(p.name.clone(), p);
            }
            Op::DeleteProxy(p) => {
                proxies.remove(&p);
            }
            Op::PutPackage(p) => {
                packages.insert((p.name.clone(), p.version), p);
            }
            Op::DeletePackage { name, version } => {
                packages.remove(&(name, version));
            }
            Op::PutUser(_) | Op::DeleteUser(_) | Op::PutJoinToken(_) | Op::DeleteJoinToken(_) | Op::PutNodeCert(_) => {}
        }
    }
    Snapshot {
        templates: templates.into_values().collect(),
        series: series.into_iter().collect(),
        nodes: nodes.into_values().collect(),
        jobs: jobs.into_values().collect(),
        active_tasks: tasks.into_values().filter(|t| !t.state.is_terminal()).collect(),
        next_usage: usage.keys().max().map_or(1, |m| m + 1),
        open_usage: usage.into_values().filter(|u| u.end.is_none()).collect(),
        proxies: proxies.into_values().collect(),
        packages: packages.into_values().collect(),
        users: vec![],
        join_tokens: vec![],
        node_certs: vec![],
    }
}

fn deploys(fx: &Effects) -> Vec<String> {
    fx.commands
        .iter()
        .filter_map(|c| match c {
            Command::Deploy { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect()
}

fn fail(transient: bool) -> std::result::Result<serde_json::Value, DeployFailure> {
    Err(DeployFailure { message: "no capacity (test)".into(), transient })
}

fn snapshot_usage(ops: &[Op]) -> Vec<crate::cost::Usage> {
    let mut by_id = BTreeMap::new();
    for op in ops {
        if let Op::PutUsage(u) = op {
            by_id.insert(u.id, u.clone());
        }
    }
    by_id.into_values().collect()
}

fn package(name: &str, version: u32, template: Option<&str>) -> crate::package::Package {
    crate::package::Package {
        name: name.into(),
        version,
        file_name: format!("{name}.tar.gz"),
        size: 10,
        sha256: "ab".repeat(32),
        template: template.map(String::from),
        store: None,
        uploaded_at: 1,
    }
}

fn installs(fx: &Effects) -> Vec<(SessionId, Vec<String>)> {
    fx.commands
        .iter()
        .filter_map(|c| match c {
            Command::Install { session, packages } => {
                Some((*session, packages.iter().map(|p| format!("{}@{}", p.name, p.version)).collect()))
            }
            _ => None,
        })
        .collect()
}

/// The providers' rules of these tests: every provider and setting taken as given.
fn rules() -> std::sync::Arc<dyn crate::provider_rules::ProviderRules> {
    std::sync::Arc::new(crate::provider_rules::TakeAsGiven)
}
