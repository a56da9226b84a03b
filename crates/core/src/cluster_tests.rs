//! Tests of the cluster's event handlers through a `TestEnv`: a cluster, a virtual clock and a
//! recording effects sink. The invariants are checked after every batch.

use super::*;
use crate::job::JobSubmission;
use crate::persist::Op;
use crate::template::TemplateEdit;
use crate::view::{AddNodes, NodeAction, NodeActionRequest};

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
            c: Cluster::new(Config::default()),
            now: 1_000,
            fx: Effects::default(),
            next_session: 1,
            sessions: BTreeMap::new(),
            log: Vec::new(),
            auto_proxies: true,
        };
        let t = NewTemplate { name: "t".into(), provider: "local".into(), ..Default::default() };
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
        let hello = Hello { name: name.into(), cores, running: vec![], completed: vec![] };
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

#[test]
fn higher_priority_jobs_are_dispatched_first() {
    let mut env = Env::new();
    env.online(1, "Small");
    let low = env.sweep("1-5", Some("Lowest"), None, None);
    let high = env.sweep("1-5", Some("Highest"), None, None);
    let fx = env.end();
    let jobs: Vec<JobId> = all_dispatches(&fx).iter().map(|d| d.key.job).collect();
    // A Small node holds one running task and one queued ahead.
    assert_eq!(jobs, [high, high]);
    assert_eq!(env.job_counts(low).queued, 5);
}

#[test]
fn cores_per_task_and_node_capacity_are_respected() {
    let mut env = Env::new();
    env.online(1, "Medium");
    env.sweep("1-10", None, Some(2), None);
    let fx = env.end();
    let d = all_dispatches(&fx);
    assert_eq!(d.len(), 2, "2 cores, one task's worth queued ahead, 2 cores per task");
    assert!(d.iter().all(|d| d.cores == 2));
}

#[test]
fn a_node_whose_tasks_are_short_holds_more_queued_and_long_tasks_bring_it_back_to_one() {
    let mut env = Env::new();
    let names = env.online(1, "Medium");
    env.sweep("1-1000", None, None, None);
    let first = all_dispatches(&env.end());
    assert_eq!(first.len(), 4, "2 cores and one multiple queued until a task has run");
    // Tasks of 1 ms: 50 ms of work per core would be 50 multiples; the most is 16.
    for d in &first {
        env.finish_after(&names[0], d, 0, 1);
    }
    let short = all_dispatches(&env.end());
    assert_eq!(short.len(), 2 * (1 + 16), "the node now holds 16 multiples of its cores queued");
    // Tasks of 10 ms: 5 multiples. The average moves by an eighth per task.
    for d in &short {
        env.finish_after(&names[0], d, 0, 10);
    }
    let held = all_dispatches(&env.end());
    let node = &env.c.nodes[&names[0]];
    assert_eq!(node.queue_ahead(16), 6, "the average is near 10 ms: {:?}", node.task_us);
    assert_eq!(held.len(), 2 * (1 + 6));
    for d in &held {
        env.finish_after(&names[0], d, 0, 60_000);
    }
    env.end();
    assert_eq!(env.c.nodes[&names[0]].queue_ahead(16), 1, "minute-long tasks hold one multiple");
    assert_eq!(env.c.nodes[&names[0]].used_cores, 2 * 2);
    assert_eq!(Config { queue_ahead: 0, ..Config::default() }.queue_ahead, 0);
    assert_eq!(env.c.nodes[&names[0]].queue_ahead(0), 0, "--queue-ahead 0 holds nothing queued");
}

#[test]
fn only_online_nodes_with_health_ok_get_work() {
    let mut env = Env::new();
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.connect(&names[0], 1).unwrap();
    env.sweep("1-3", None, None, None);
    assert!(all_dispatches(&env.end()).is_empty(), "an Offline node takes no work");
    env.act(NodeAction::Online, &[&names[0]], false);
    let fx = env.end();
    assert_eq!(all_dispatches(&fx).len(), 2);
    assert_eq!(env.state(&names[0]), ("Online".into(), "OK".into()));
}

#[test]
fn dispatches_carry_the_substituted_command_and_environment() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("7-7", None, None, None);
    let d = all_dispatches(&env.end()).remove(0);
    assert_eq!(d.command, ["echo", "7"]);
    let env_of = |k: &str| d.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(env_of("THUNDERHEAD_SWEEP_INDEX").as_deref(), Some("7"));
    assert_eq!(env_of("THUNDERHEAD_TASK_ID"), Some(format!("{id}.7")));
    assert_eq!(env_of("THUNDERHEAD_NODE_NAME"), Some(names[0].clone()));
}

#[test]
fn a_lost_node_requeues_its_tasks_on_another_node() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    let id = env.sweep("1-2", None, None, None);
    let fx = env.end();
    let per_node = assigned(&fx);
    assert_eq!(per_node.len(), 2, "one task per node");
    let lost_session = per_node[0].0;
    let lost_task = per_node[0].1[0].key;
    env.c.agent_gone(&mut env.fx, lost_session, env.now);
    env.end();
    env.now += env.c.config().reconnect_grace + 1;
    for (name, session) in env.sessions.clone() {
        if session != lost_session {
            env.c.agent_heard(session, env.now, None);
            assert!(names.contains(&name));
        }
    }
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    let lost_name = names.iter().find(|n| env.sessions[*n] == lost_session).unwrap().clone();
    assert_eq!(env.state(&lost_name), ("Unknown".into(), "Error".into()));
    let again = all_dispatches(&fx);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].key, again[0].attempt), (lost_task, 2));
    assert_eq!(env.job_counts(id).running, 2);
}

#[test]
fn a_task_whose_node_is_lost_more_often_than_its_retries_fails() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("1-1", None, None, Some(0));
    env.end();
    env.c.agent_gone(&mut env.fx, env.sessions[&names[0]], env.now);
    env.now += env.c.config().reconnect_grace + 1;
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    assert_eq!(env.job_counts(id).failed, 1);
    assert_eq!(env.c.job(id).unwrap().state, "Failed");
    let failed = fx.ops.iter().find_map(|op| match op {
        Op::PutTask(r) if r.state == TaskState::Failed => r.message.clone(),
        _ => None,
    });
    assert!(failed.unwrap().contains("more than the job's 0 retries"));
}

#[test]
fn results_end_each_task_once_and_stale_attempts_are_ignored() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("1-3", None, None, None);
    let d = all_dispatches(&env.end());
    env.finish(&names[0], &d[0], 0);
    env.finish(&names[0], &d[0], 0);
    let fx = env.end();
    assert_eq!(env.job_counts(id).finished, 1, "a repeated result counts once");
    let acks: usize = fx
        .commands
        .iter()
        .map(|c| match c {
            Command::Ack { tasks, .. } => tasks.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(acks, 2, "both reports are acknowledged so the agent forgets them");
    let stale = Dispatch { attempt: 9, ..d[1].clone() };
    env.finish(&names[0], &stale, 1);
    env.end();
    assert_eq!(env.job_counts(id).failed, 0);
}

#[test]
fn taking_a_node_offline_drains_it_or_requeues_with_force() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    let id = env.sweep("1-4", None, None, None);
    let fx = env.end();
    let on_first: Vec<Dispatch> = assigned(&fx).into_iter().find(|(s, _)| *s == env.sessions[&names[0]]).unwrap().1;
    env.act(NodeAction::Offline, &[&names[0]], false);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Draining");
    for d in &on_first {
        env.finish(&names[0], d, 0);
    }
    env.end();
    assert_eq!(env.state(&names[0]).0, "Offline", "drained once its tasks ended");

    env.act(NodeAction::Offline, &[&names[1]], true);
    let fx = env.end();
    assert_eq!(env.state(&names[1]).0, "Offline");
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Cancel { tasks, .. } if tasks.len() == 2)));
    assert_eq!(env.job_counts(id).queued, 2, "forced offline requeues");
}

#[test]
fn a_restarted_head_node_keeps_running_tasks_and_requeues_what_agents_do_not_hold() {
    let mut env = Env::new();
    let names = env.online(1, "Medium");
    let id = env.sweep("1-10", None, None, None);
    let d = all_dispatches(&env.end());
    assert_eq!(d.len(), 4);
    env.finish(&names[0], &d[0], 0);
    let refill = all_dispatches(&env.end());
    assert_eq!(refill.len(), 1, "the freed slot is refilled");

    let snapshot = snapshot_of(&env.log);
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), snapshot, &mut fx, env.now);
    c.check_invariants().unwrap();
    assert_eq!(c.job(id).unwrap().tasks.running, 4);
    assert_eq!(c.node(&names[0]).unwrap().state, "Online");
    // The agent comes back holding two of the three attempts and the result of one.
    let attempt = |d: &Dispatch| TaskAttempt { key: d.key, attempt: d.attempt };
    let hello =
        Hello { name: names[0].clone(), cores: 2, running: vec![attempt(&d[1])], completed: vec![attempt(&d[2])] };
    c.agent_hello(&mut fx, 77, hello, env.now).unwrap();
    c.end_batch(&mut fx, env.now);
    c.check_invariants().unwrap();
    let job = c.job(id).unwrap();
    assert_eq!(job.tasks.finished, 1);
    let redispatched: Vec<Dispatch> = all_dispatches(&fx);
    for lost in [&d[3], &refill[0]] {
        assert!(
            redispatched.iter().any(|x| x.key == lost.key && x.attempt == 2),
            "a task the agent did not hold runs again"
        );
    }
    assert!(redispatched.iter().all(|x| x.key != d[1].key && x.key != d[2].key), "held tasks are not run twice");
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

#[test]
fn a_deployment_that_never_connects_times_out_to_unknown() {
    let mut env = Env::new();
    let names = env.add(1, "Large");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!({"pid": 1})), env.now);
    env.end();
    env.now += env.c.config().provision_timeout + 1;
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    assert_eq!(env.state(&names[0]), ("Unknown".into(), "Unapproved".into()));
    assert!(env.c.node(&names[0]).unwrap().cause.unwrap().contains("did not connect within 120 s"));
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Remove { .. })), "the half-deployed node is removed");
}

#[test]
fn a_stop_during_deployment_removes_the_node_when_the_deploy_returns() {
    let mut env = Env::new();
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.act(NodeAction::Stop, &[&names[0]], false);
    let fx = env.end();
    assert!(!fx.commands.iter().any(|c| matches!(c, Command::Remove { .. })), "nothing to remove yet");
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!({"pid": 1})), env.now);
    let fx = env.end();
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Remove { .. })));
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!({"pid": 1}), Ok(()), env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "NotDeployed");
}

#[test]
fn names_in_a_series_are_never_reused() {
    let mut env = Env::new();
    let first = env.add(2, "Small");
    assert_eq!(first, ["LocalCN-0001", "LocalCN-0002"]);
    env.act(NodeAction::Delete, &["LocalCN-0002"], false);
    env.end();
    assert_eq!(env.add(1, "Small"), ["LocalCN-0003"]);
}

#[test]
fn canceling_a_job_cancels_its_running_tasks_on_their_agents() {
    let mut env = Env::new();
    env.online(1, "Small");
    let id = env.sweep("1-100", None, None, None);
    env.end();
    env.c.cancel_job(&mut env.fx, id, env.now).unwrap();
    let fx = env.end();
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Cancel { tasks, .. } if tasks.len() == 2)));
    assert_eq!(env.job_counts(id).canceled, 100);
    assert!(env.c.cancel_job(&mut env.fx, id, env.now).unwrap_err().message.contains("already Canceled"));
}

#[test]
fn a_requeued_job_runs_its_failed_and_canceled_tasks_again_and_keeps_its_finished_ones() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("1-100", None, None, None);
    let d = all_dispatches(&env.end());
    assert!(env.c.requeue_job(&mut env.fx, id, None, &[]).unwrap_err().message.contains("is Running"));
    env.finish(&names[0], &d[0], 0);
    env.finish(&names[0], &d[1], 3);
    env.end();
    let seen: Vec<(String, String)> =
        env.c.node_tasks(&names[0], None).unwrap().into_iter().map(|t| (t.id, t.state)).collect();
    let expect = [(3, "Running"), (4, "Running"), (2, "Failed"), (1, "Finished")];
    assert_eq!(seen, expect.map(|(i, s)| (format!("{id}.{i}"), s.to_string())), "running first, then newest first");
    env.c.cancel_job(&mut env.fx, id, env.now).unwrap();
    env.end();
    // The store holds rows for the failed task and the two canceled while running; the 96
    // canceled before they ran are only counted.
    let ended_at = env.c.job(id).unwrap().ended_at;
    let stale = env.c.requeue_job(&mut env.fx, id, None, &[(2, 1)]).unwrap_err();
    assert!(stale.message.contains("changed while its tasks were read"), "{}", stale.message);
    let view = env.c.requeue_job(&mut env.fx, id, ended_at, &[(2, 1), (3, 1), (4, 1)]).unwrap();
    assert_eq!((view.state.as_str(), view.tasks.queued, view.tasks.finished), ("Queued", 99, 1));
    assert_eq!(view.tasks.failed + view.tasks.canceled, 0);
    let again = all_dispatches(&env.end());
    assert_eq!((again[0].key.index, again[0].attempt), (2, 2), "the failed task goes first, as a new attempt");
    assert_eq!((again[1].key.index, again[1].attempt), (3, 2));
    let mut next = again;
    for _ in 0..200 {
        for d in &next {
            env.finish(&names[0], d, 0);
        }
        next = all_dispatches(&env.end());
    }
    assert_eq!(env.job_counts(id).finished, 100);
    let done = env.c.requeue_job(&mut env.fx, id, env.c.job(id).unwrap().ended_at, &[]).unwrap_err();
    assert!(done.message.contains("nothing to requeue"), "{}", done.message);
}

#[test]
fn unknown_agents_join_as_on_premises_nodes_and_undeployed_names_are_refused() {
    let mut env = Env::new();
    env.connect("workstation-7", 16).unwrap();
    env.end();
    let n = env.c.node("workstation-7").unwrap();
    assert_eq!((n.template, n.state.as_str(), n.health.as_str(), n.cores), (None, "Offline", "OK", 16));
    let names = env.add(1, "Small");
    let err = env.connect(&names[0], 1).unwrap_err();
    assert!(err.message.contains("NotDeployed") && err.message.contains("node start"), "{err}");
}

#[test]
fn the_quota_counts_the_proxies_eighteen_small_nodes_fit_nineteen_do_not() {
    let mut env = Env::new();
    let req = |count| AddNodes { template: "t".into(), count, size: "Small".into() };
    let err = env.c.add_nodes(&mut env.fx, req(19), env.now).unwrap_err();
    assert!(err.message.contains("needs 21 cores") && err.message.contains("quota of 20"), "{err}");
    assert!(err.message.contains("add at most 18"), "{err}");
    assert!(env.end().ops.is_empty(), "a refused add changes nothing");
    env.c.add_nodes(&mut env.fx, req(18), env.now).unwrap();
    env.end();
    let err = env.c.add_nodes(&mut env.fx, req(1), env.now).unwrap_err();
    assert!(err.message.contains("18 cores of nodes"), "{err}");
}

#[test]
fn starting_beyond_a_lowered_quota_is_refused_per_node() {
    let mut env = Env::new();
    env.add(4, "Medium");
    let edit = TemplateEdit { quota_cores: Some(6), ..Default::default() };
    env.c.edit_template(&mut env.fx, "t", edit, env.now).unwrap();
    let req = NodeActionRequest { action: NodeAction::Start, template: Some("t".into()), names: vec![], force: false };
    let results = env.c.node_action(&mut env.fx, req, env.now).unwrap();
    env.end();
    let ok: Vec<bool> = results.iter().map(|r| r.ok).collect();
    assert_eq!(ok, [true, true, false, false], "2 Medium nodes and 2 proxies fill 6 cores");
    assert!(results[2].message.contains("over its quota of 6"), "{}", results[2].message);
}

#[test]
fn a_template_prefix_names_new_nodes() {
    let mut env = Env::new();
    let edit = TemplateEdit { series_prefix: Some("Burst-".into()), ..Default::default() };
    env.c.edit_template(&mut env.fx, "t", edit, env.now).unwrap();
    assert_eq!(env.add(2, "Small"), ["Burst-0001", "Burst-0002"]);
}

#[test]
fn a_silent_agent_gets_health_error_its_tasks_requeued_and_ok_when_it_returns() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    let id = env.sweep("1-4", None, None, None);
    let fx = env.end();
    let quiet = names[0].clone();
    let held: Vec<TaskAttempt> = assigned(&fx)
        .into_iter()
        .filter(|(s, _)| *s == env.sessions[&quiet])
        .flat_map(|(_, t)| t)
        .map(|d| TaskAttempt { key: d.key, attempt: d.attempt })
        .collect();
    // The other agent keeps talking; the quiet one does not.
    env.now += env.c.config().heartbeat_timeout / 2;
    env.c.agent_heard(env.sessions[&names[1]], env.now, None);
    env.now += env.c.config().heartbeat_timeout / 2 + 1;
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    assert_eq!(env.state(&quiet), ("Online".into(), "Error".into()));
    assert_eq!(env.state(&names[1]), ("Online".into(), "OK".into()));
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Disconnect { .. })));
    assert_eq!(env.job_counts(id).running + env.job_counts(id).queued, 4);
    // A node with health Error takes no work even though it is Online.
    assert!(assigned(&fx).iter().all(|(s, _)| *s != env.sessions[&quiet]));

    let session = 99;
    let hello = Hello { name: quiet.clone(), cores: 1, running: held.clone(), completed: vec![] };
    env.c.agent_hello(&mut env.fx, session, hello, env.now).unwrap();
    let fx = env.end();
    assert_eq!(env.state(&quiet), ("Online".into(), "OK".into()));
    let canceled: Vec<TaskAttempt> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Cancel { session: 99, tasks } => Some(tasks.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(canceled, held, "the attempts it held were requeued, so it must drop them");
}

#[test]
fn one_command_may_not_start_or_stop_two_sets() {
    let mut env = Env::new();
    let t2 = NewTemplate { name: "t2".into(), provider: "local".into(), ..Default::default() };
    env.c.create_template(&mut env.fx, t2, env.now).unwrap();
    env.add(1, "Small");
    env.c.add_nodes(&mut env.fx, AddNodes { template: "t2".into(), count: 1, size: "Small".into() }, env.now).unwrap();
    env.end();
    let req = NodeActionRequest {
        action: NodeAction::Start,
        template: None,
        names: vec!["LocalCN-0001".into(), "LocalCN-0002".into()],
        force: false,
    };
    let err = env.c.node_action(&mut env.fx, req, env.now).unwrap_err();
    assert!(err.message.contains("different sets") && err.message.contains("template t2"), "{err}");
    assert!(env.end().commands.is_empty());
}

#[test]
fn a_draining_node_whose_agent_returns_empty_handed_settles_offline() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    env.sweep("1-2", None, None, None);
    env.end();
    env.act(NodeAction::Offline, &[&names[0]], false);
    env.c.agent_gone(&mut env.fx, env.sessions[&names[0]], env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Draining");
    env.connect(&names[0], 1).unwrap();
    env.end();
    assert_eq!(env.state(&names[0]).0, "Offline", "nothing left to drain");
}

#[test]
fn a_stop_cut_short_by_a_restart_is_finished_by_removing_the_deployment() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), snapshot_of(&env.log), &mut fx, env.now);
    assert_eq!(c.node(&names[0]).unwrap().state, "Stopping");
    let handle = fx.commands.iter().find_map(|cmd| match cmd {
        Command::Remove { node, handle, .. } if node == &names[0] => Some(handle.clone()),
        _ => None,
    });
    let handle = handle.expect("the removal is sent again");
    c.removed(&mut fx, &names[0], &handle, Ok(()), env.now);
    assert_eq!(c.node(&names[0]).unwrap().state, "NotDeployed");
}

#[test]
fn restarting_a_failed_node_removes_its_old_deployment_and_old_answers_do_not_touch_the_new_one() {
    let mut env = Env::new();
    let names = env.add(1, "Small");
    let n = &names[0];
    let old = serde_json::json!({"pid": 1});
    env.act(NodeAction::Start, &[n], false);
    env.end();
    env.c.deployed(&mut env.fx, n, Ok(old.clone()), env.now);
    env.now += env.c.config().provision_timeout + 1;
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(env.state(n).0, "Unknown");
    let err = env.c.node_action(
        &mut env.fx,
        NodeActionRequest { action: NodeAction::Delete, template: None, names: vec![n.clone()], force: false },
        env.now,
    );
    assert!(err.unwrap()[0].message.contains("still has a deployment"));
    env.act(NodeAction::Start, &[n], false);
    let fx = env.end();
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Remove { handle, .. } if *handle == old)));
    assert!(deploys(&fx).is_empty(), "the new deployment waits until the old one is gone");
    env.c.removed(&mut env.fx, n, &old, Ok(()), env.now);
    assert_eq!(deploys(&env.end()), std::slice::from_ref(n));
    let new = serde_json::json!({"pid": 2});
    env.c.deployed(&mut env.fx, n, Ok(new.clone()), env.now);
    // A second, late answer about the old deployment (the timeout had asked for one too).
    env.c.removed(&mut env.fx, n, &old, Ok(()), env.now);
    env.end();
    assert_eq!(env.c.nodes[n].handle, Some(new), "the answer about the old deployment leaves the new one alone");
    assert_eq!(env.state(n).0, "Provisioning");
}

#[test]
fn an_agent_holding_an_old_result_and_a_new_attempt_of_one_task_keeps_running_it() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("1-1", None, None, None);
    let first = all_dispatches(&env.end()).remove(0);
    // The node is forced offline and back: the task is requeued and dispatched again.
    env.act(NodeAction::Offline, &[&names[0]], true);
    env.act(NodeAction::Online, &[&names[0]], false);
    let second = all_dispatches(&env.end()).remove(0);
    assert_eq!((second.key, second.attempt), (first.key, 2));
    env.c.agent_gone(&mut env.fx, env.sessions[&names[0]], env.now);
    let hello = Hello {
        name: names[0].clone(),
        cores: 1,
        running: vec![TaskAttempt { key: second.key, attempt: 2 }],
        completed: vec![TaskAttempt { key: first.key, attempt: 1 }],
    };
    env.c.agent_hello(&mut env.fx, 50, hello, env.now).unwrap();
    let fx = env.end();
    assert!(all_dispatches(&fx).is_empty(), "attempt 2 is still held, nothing runs again");
    assert_eq!(env.job_counts(id).running, 1);
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

#[test]
fn deployments_start_no_faster_than_the_template_rate() {
    let mut env = Env::new();
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { deploy_rate: Some(2), ..Default::default() }, env.now)
        .unwrap();
    env.add(5, "Small");
    let req = NodeActionRequest { action: NodeAction::Start, template: Some("t".into()), names: vec![], force: false };
    env.c.node_action(&mut env.fx, req, env.now).unwrap();
    assert_eq!(deploys(&env.end()), ["LocalCN-0001", "LocalCN-0002"]);
    env.now += 30_000;
    assert!(deploys(&env.end()).is_empty(), "still the same minute");
    env.now += 30_000;
    assert_eq!(deploys(&env.end()), ["LocalCN-0003", "LocalCN-0004"]);
    env.now += 60_000;
    assert_eq!(deploys(&env.end()), ["LocalCN-0005"]);
}

#[test]
fn a_transient_failure_is_retried_after_a_delay_and_a_fatal_one_is_not() {
    let mut env = Env::new();
    let names = env.add(2, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.act(NodeAction::Start, &[&names[1]], false);
    assert_eq!(deploys(&env.end()).len(), 2);
    env.c.deployed(&mut env.fx, &names[0], fail(true), env.now);
    env.c.deployed(&mut env.fx, &names[1], fail(false), env.now);
    assert!(deploys(&env.end()).is_empty(), "the retry waits");
    assert_eq!(env.state(&names[0]).0, "Provisioning");
    assert_eq!(env.state(&names[1]).0, "Unknown");
    env.now += RETRY_DELAY;
    assert_eq!(deploys(&env.end()), [names[0].clone()]);
    env.c.deployed(&mut env.fx, &names[0], fail(true), env.now);
    env.now += 2 * RETRY_DELAY;
    assert_eq!(deploys(&env.end()), [names[0].clone()], "the second of 2 retries");
    env.c.deployed(&mut env.fx, &names[0], fail(true), env.now);
    env.now += 10 * RETRY_DELAY;
    assert!(deploys(&env.end()).is_empty());
    assert_eq!(env.state(&names[0]).0, "Unknown", "retries used up");
    let log_has = |n: &str, text: &str| {
        env.log.iter().any(|op| matches!(op, Op::NodeLog { node, message, .. } if node == n && message.contains(text)))
    };
    assert!(log_has(&names[0], "deployment attempt 3 failed: no capacity (test)"));
}

#[test]
fn a_template_pauses_itself_after_consecutive_failures_until_resumed() {
    let mut env = Env::new();
    let edit = TemplateEdit { pause_after_failures: Some(2), deploy_rate: Some(2), ..Default::default() };
    env.c.edit_template(&mut env.fx, "t", edit, env.now).unwrap();
    let names = env.add(4, "Small");
    let req = NodeActionRequest { action: NodeAction::Start, template: Some("t".into()), names: vec![], force: false };
    env.c.node_action(&mut env.fx, req.clone(), env.now).unwrap();
    env.end();
    env.c.deployed(&mut env.fx, &names[0], fail(true), env.now);
    env.c.deployed(&mut env.fx, &names[1], fail(true), env.now);
    env.end();
    let t = env.c.template("t").unwrap();
    assert!(t.paused.as_deref().unwrap().contains("2 deployments in a row failed"), "{t:?}");
    for n in &names {
        assert_eq!(env.state(n).0, "Unknown", "{n}: nothing keeps looping");
    }
    let refused = env.c.node_action(&mut env.fx, req.clone(), env.now).unwrap();
    assert!(refused.iter().all(|r| !r.ok && r.message.contains("template resume t")), "{refused:?}");
    env.c.resume_template(&mut env.fx, "t").unwrap();
    env.now += 60_000;
    let again = env.c.node_action(&mut env.fx, req, env.now).unwrap();
    assert!(again.iter().all(|r| r.ok));
    assert_eq!(deploys(&env.end()).len(), 2);
}

#[test]
fn nodes_and_proxies_cost_from_start_to_removal_and_jobs_pay_for_core_time() {
    const HOUR: Millis = 3_600_000;
    let mut env = Env::new();
    let t0 = env.now;
    let names = env.online(1, "Medium");
    let id = env.sweep("1-1", None, None, None);
    let d = all_dispatches(&env.end()).remove(0);
    let result = TaskResult {
        key: d.key,
        attempt: d.attempt,
        exit_code: Some(0),
        message: None,
        started_at: t0,
        ended_at: t0 + HOUR,
        stdout: String::new(),
        stderr: String::new(),
        staging_error: None,
    };
    env.c.agent_results(&mut env.fx, env.sessions[&names[0]], vec![result], env.now);
    env.end();
    let job = env.c.job(id).unwrap();
    assert_eq!(job.core_hours, 1.0);
    assert_eq!(job.cost["USD"], 0.12, "one core of a 0.24/h two-core node for an hour");

    env.now = t0 + 2 * HOUR;
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!({"pid": 1}), Ok(()), env.now);
    env.end();
    let usage: Vec<crate::cost::Usage> = snapshot_usage(&env.log);
    assert!(usage.iter().all(|u| u.end.is_some()), "every stretch ended with the stop");
    let sets = crate::cost::summarize(&usage, 0, t0 + 10 * HOUR);
    assert_eq!((sets[0].node_hours, sets[0].proxy_hours), (2.0, 4.0));
    assert!((sets[0].cost["USD"] - (0.48 + 0.48)).abs() < 1e-9, "{sets:?}");
}

#[test]
fn open_paid_stretches_survive_a_restart() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), snapshot_of(&env.log), &mut fx, env.now);
    let req = NodeActionRequest { action: NodeAction::Stop, template: None, names: names.clone(), force: false };
    c.node_action(&mut fx, req, env.now + 1_000).unwrap();
    c.removed(&mut fx, &names[0], &serde_json::json!({"pid": 1}), Ok(()), env.now + 1_000);
    let mut log = env.log.clone();
    log.extend(fx.ops);
    let usage = snapshot_usage(&log);
    assert_eq!(usage.len(), 2, "the restart closed the same two stretches it found open: {usage:?}");
    assert!(usage.iter().all(|u| u.end == Some(env.now + 1_000)));
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

#[test]
fn a_started_set_runs_its_proxies_first_and_removes_them_with_its_last_node() {
    let mut env = Env::new();
    env.auto_proxies = false;
    let names = env.add(2, "Small");
    let req = |action| NodeActionRequest { action, template: Some("t".into()), names: vec![], force: false };
    env.c.node_action(&mut env.fx, req(NodeAction::Start), env.now).unwrap();
    let fx = env.end();
    let proxies: Vec<String> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::DeployProxy { proxy, .. } => Some(proxy.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(proxies, ["t-proxy-1", "t-proxy-2"]);
    assert!(deploys(&fx).is_empty(), "nodes wait for a proxy");
    env.c.proxy_deployed(&mut env.fx, "t-proxy-1", Ok((serde_json::json!(1), "http://127.0.0.1:1001".into())), env.now);
    assert!(deploys(&env.end()).is_empty(), "nodes wait until every proxy has answered");
    env.c.proxy_deployed(&mut env.fx, "t-proxy-2", Err("no capacity".into()), env.now);
    let fx = env.end();
    let via: Vec<Vec<String>> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Deploy { via, .. } => Some(via.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(via, vec![vec!["http://127.0.0.1:1001".to_string()]; 2]);
    let shown = env.c.template("t").unwrap().proxy_list;
    let states: Vec<&str> = shown.iter().map(|p| p.state.as_str()).collect();
    assert_eq!(states, ["Up", "Failed"]);

    // Stopping the set removes its proxies once no node is deployed.
    for n in &names {
        env.c.deployed(&mut env.fx, n, Ok(serde_json::json!({"node": n})), env.now);
    }
    env.c.node_action(&mut env.fx, req(NodeAction::Stop), env.now).unwrap();
    env.end();
    for n in &names {
        env.c.removed(&mut env.fx, n, &serde_json::json!({"node": n}), Ok(()), env.now);
    }
    let fx = env.end();
    let removals: Vec<(String, serde_json::Value)> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::RemoveProxy { proxy, handle, .. } => Some((proxy.clone(), handle.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(removals.len(), 1, "the failed proxy had nothing deployed");
    for (p, h) in removals {
        env.c.proxy_removed(&mut env.fx, &p, &h, Ok(()), env.now);
    }
    env.end();
    assert!(env.c.template("t").unwrap().proxy_list.is_empty());
}

#[test]
fn a_dead_proxy_is_redeployed_on_its_address() {
    let mut env = Env::new();
    env.online(1, "Small");
    env.c.proxy_gone(&mut env.fx, "t-proxy-1", &serde_json::json!({"proxy": "t-proxy-1"}), env.now);
    env.auto_proxies = false;
    let fx = env.end();
    let again = fx.commands.iter().find_map(|c| match c {
        Command::DeployProxy { proxy, address, .. } => Some((proxy.clone(), address.clone())),
        _ => None,
    });
    assert_eq!(again, Some(("t-proxy-1".into(), Some("http://127.0.0.1:9/t-proxy-1".into()))));
}

#[test]
fn when_no_proxy_can_be_deployed_the_waiting_nodes_fail_with_the_reason() {
    let mut env = Env::new();
    env.auto_proxies = false;
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.proxy_deployed(&mut env.fx, "t-proxy-1", Err("no capacity".into()), env.now);
    assert_eq!(env.state(&names[0]).0, "Provisioning", "the other proxy may still come up");
    env.c.proxy_deployed(&mut env.fx, "t-proxy-2", Err("no capacity".into()), env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Unknown");
    assert!(env.c.node(&names[0]).unwrap().cause.unwrap().contains("no proxy of set t is up: no capacity"));
}

#[test]
fn a_scheduled_set_starts_before_its_window_takes_work_in_it_drains_and_stops_at_its_end() {
    const MIN: Millis = 60_000;
    let mut env = Env::new();
    let schedule = crate::template::AvailabilityInput {
        availability: Some("schedule".into()),
        windows: Some(vec!["Mon 10:00-11:00".into()]),
        timezone: Some("UTC".into()),
        lead_time: Some("10m".into()),
        drain_before_end: Some("5m".into()),
    };
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { availability: schedule, ..Default::default() }, env.now)
        .unwrap();
    let names = env.add(2, "Small");
    let monday_10 = "2026-11-23T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis;
    let state = |env: &Env| names.iter().map(|n| env.state(n).0).collect::<Vec<_>>();

    env.now = monday_10 - 15 * MIN;
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(state(&env), ["NotDeployed", "NotDeployed"]);

    env.now = monday_10 - 9 * MIN;
    env.c.tick(&mut env.fx, env.now);
    assert_eq!(deploys(&env.end()).len(), 2, "started within the lead time");
    for n in &names {
        env.c.deployed(&mut env.fx, n, Ok(serde_json::json!({"n": n})), env.now);
        env.connect(n, 1).unwrap();
    }
    env.end();
    assert_eq!(state(&env), ["Offline", "Offline"], "deployed early, no work before the window");

    env.now = monday_10 + MIN;
    for s in env.sessions.values() {
        env.c.agent_heard(*s, env.now, None);
    }
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(state(&env), ["Online", "Online"]);

    env.now = monday_10 + 56 * MIN;
    for s in env.sessions.values() {
        env.c.agent_heard(*s, env.now, None);
    }
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(state(&env), ["Offline", "Offline"], "drained (nothing was running)");

    env.now = monday_10 + 60 * MIN;
    for s in env.sessions.values() {
        env.c.agent_heard(*s, env.now, None);
    }
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(state(&env), ["Stopping", "Stopping"], "stopped at the window's end");
}

#[test]
fn stopping_a_scheduled_set_by_hand_inside_its_window_sticks_until_the_next_window() {
    const MIN: Millis = 60_000;
    let mut env = Env::new();
    let schedule = crate::template::AvailabilityInput {
        windows: Some(vec!["Daily 10:00-11:00".into()]),
        lead_time: Some("0m".into()),
        ..Default::default()
    };
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { availability: schedule, ..Default::default() }, env.now)
        .unwrap();
    let names = env.add(1, "Small");
    let day_10 = "2026-11-23T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis;
    env.now = day_10 + MIN;
    env.c.tick(&mut env.fx, env.now);
    assert_eq!(deploys(&env.end()).len(), 1);
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Stopping");
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    env.end();
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!(1), Ok(()), env.now);
    env.now += 10 * MIN;
    env.c.tick(&mut env.fx, env.now);
    assert!(deploys(&env.end()).is_empty(), "the person's stop holds inside the window");
    assert_eq!(env.state(&names[0]).0, "NotDeployed");
    env.now = day_10 + 61 * MIN;
    env.c.tick(&mut env.fx, env.now);
    assert!(deploys(&env.end()).is_empty());
    env.now = day_10 + 24 * 60 * MIN + MIN;
    env.c.tick(&mut env.fx, env.now);
    assert_eq!(deploys(&env.end()).len(), 1, "the next window starts the set again");
}

#[test]
fn a_policy_that_missed_a_boundary_while_the_head_node_was_down_acts_again() {
    const MIN: Millis = 60_000;
    let mut env = Env::new();
    let schedule = crate::template::AvailabilityInput {
        windows: Some(vec!["Daily 10:00-11:00".into()]),
        lead_time: Some("0m".into()),
        ..Default::default()
    };
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { availability: schedule, ..Default::default() }, env.now)
        .unwrap();
    let names = env.add(1, "Small");
    let day_10 = "2026-11-23T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis;
    env.now = day_10 + MIN;
    env.c.tick(&mut env.fx, env.now);
    env.end();
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    env.end();
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!(1), Ok(()), env.now);
    env.end();
    // No tick for a day: the next day's window is a new phase even though it reads the same.
    env.now = day_10 + 24 * 60 * MIN + MIN;
    env.c.tick(&mut env.fx, env.now);
    assert_eq!(deploys(&env.end()).len(), 1);
}

#[test]
fn a_set_started_again_while_its_proxies_are_removed_gets_new_ones() {
    let mut env = Env::new();
    env.auto_proxies = false;
    let names = env.add(1, "Small");
    let n = &names[0];
    let proxy_commands = |fx: &Effects| -> (Vec<String>, Vec<(String, serde_json::Value)>) {
        let mut deploy = vec![];
        let mut remove = vec![];
        for c in &fx.commands {
            match c {
                Command::DeployProxy { proxy, .. } => deploy.push(proxy.clone()),
                Command::RemoveProxy { proxy, handle, .. } => remove.push((proxy.clone(), handle.clone())),
                _ => {}
            }
        }
        (deploy, remove)
    };
    env.act(NodeAction::Start, &[n], false);
    let (deploy, _) = proxy_commands(&env.end());
    for p in &deploy {
        env.c.proxy_deployed(&mut env.fx, p, Ok((serde_json::json!(p), format!("http://127.0.0.1:9/{p}"))), env.now);
    }
    env.end();
    env.c.deployed(&mut env.fx, n, Ok(serde_json::json!("n")), env.now);
    env.act(NodeAction::Stop, &[n], false);
    env.end();
    env.c.removed(&mut env.fx, n, &serde_json::json!("n"), Ok(()), env.now);
    let (_, removals) = proxy_commands(&env.end());
    assert_eq!(removals.len(), 2);
    env.act(NodeAction::Start, &[n], false);
    let (deploy, _) = proxy_commands(&env.end());
    assert!(deploy.is_empty(), "the old proxies are still being removed");
    for (p, h) in removals {
        env.c.proxy_removed(&mut env.fx, &p, &h, Ok(()), env.now);
    }
    let (deploy, _) = proxy_commands(&env.end());
    assert_eq!(deploy.len(), 2, "new proxies for the started set");
}

#[test]
fn deployments_queued_when_the_head_node_stopped_are_made_after_the_restart() {
    let mut env = Env::new();
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { deploy_rate: Some(1), ..Default::default() }, env.now)
        .unwrap();
    let names = env.add(3, "Small");
    let req = NodeActionRequest { action: NodeAction::Start, template: Some("t".into()), names: vec![], force: false };
    env.c.node_action(&mut env.fx, req, env.now).unwrap();
    assert_eq!(deploys(&env.end()).len(), 1, "one a minute");
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), snapshot_of(&env.log), &mut fx, env.now + 61_000);
    c.end_batch(&mut fx, env.now + 61_000);
    let again: Vec<String> = deploys(&fx);
    assert_eq!(again.len(), 1, "deployment goes on at the template's rate: {again:?}");
    assert!(names.contains(&again[0]));
    // Nothing is timed out as if it had been deployed.
    c.tick(&mut fx, env.now + 61_000 + Config::default().provision_timeout + 1);
    let unknown = names.iter().filter(|n| c.node(n).unwrap().state == "Unknown").count();
    assert_eq!(unknown, 0);
}

#[test]
fn a_failed_node_with_nothing_deployed_costs_nothing_and_keeps_no_proxies() {
    let mut env = Env::new();
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], fail(false), env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Unknown");
    assert!(snapshot_usage(&env.log).iter().all(|u| u.end.is_some()), "the node and proxies stopped costing");
    assert!(env.c.template("t").unwrap().proxy_list.is_empty(), "the set's proxies were removed");
    let err = env.c.delete_template(&mut env.fx, "t").unwrap_err();
    assert!(err.message.contains("still has 1 node"), "{err}");
}

#[test]
fn a_failed_proxy_is_tried_again_while_its_set_runs() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    // The second proxy dies and cannot be redeployed at first.
    env.auto_proxies = false;
    env.c.proxy_gone(&mut env.fx, "t-proxy-2", &serde_json::json!({"proxy": "t-proxy-2"}), env.now);
    env.end();
    env.c.proxy_deployed(&mut env.fx, "t-proxy-2", Err("no capacity".into()), env.now);
    env.end();
    env.now += crate::cluster::proxies::PROXY_RETRY;
    for s in env.sessions.values() {
        env.c.agent_heard(*s, env.now, None);
    }
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    assert!(
        fx.commands.iter().any(|c| matches!(c, Command::DeployProxy { proxy, .. } if proxy == "t-proxy-2")),
        "{:?}",
        fx.commands
    );
    assert_eq!(env.state(&names[0]).0, "Online");
}

#[test]
fn a_person_stopping_a_scheduled_set_is_remembered_across_a_restart() {
    const MIN: Millis = 60_000;
    let mut env = Env::new();
    let names = env.add(1, "Small");
    let day_10 = "2026-11-23T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis;
    env.now = day_10 + MIN;
    let schedule = crate::template::AvailabilityInput {
        windows: Some(vec!["Daily 10:00-11:00".into()]),
        lead_time: Some("0m".into()),
        ..Default::default()
    };
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { availability: schedule, ..Default::default() }, env.now)
        .unwrap();
    assert_eq!(deploys(&env.end()).len(), 1);
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    env.end();
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!(1), Ok(()), env.now);
    env.end();
    let mut fx = Effects::default();
    let later = env.now + 5 * MIN;
    let mut c = Cluster::restore(Config::default(), snapshot_of(&env.log), &mut fx, later);
    c.tick(&mut fx, later);
    c.end_batch(&mut fx, later);
    assert!(deploys(&fx).is_empty(), "the restarted head node keeps the person's stop");
    assert_eq!(c.node(&names[0]).unwrap().state, "NotDeployed");
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

#[test]
fn a_burst_node_installs_its_packages_before_it_is_offline() {
    let mut env = Env::new();
    for (name, v) in [("solver", 1), ("solver", 2), ("data", 1)] {
        assert_eq!(env.c.reserve_package_version(name, &format!("{name}.tar.gz"), None).unwrap().0, v);
        env.c.register_package(&mut env.fx, package(name, v, None)).unwrap();
    }
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    let session = env.connect(&names[0], 1).unwrap();
    let fx = env.end();
    assert_eq!(installs(&fx), vec![(session, vec!["data@1".to_string(), "solver@2".to_string()])]);
    assert_eq!(env.state(&names[0]).0, "Provisioning", "not Offline before its packages are in");
    let ok = |name: &str, version| packages::Installed { name: name.into(), version, error: None };
    env.c.agent_installed(&mut env.fx, session, vec![ok("data", 1), ok("solver", 2)], env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Offline");
    assert_eq!(env.c.node(&names[0]).unwrap().packages, ["data@1", "solver@2"]);
}

#[test]
fn a_package_that_fails_to_install_leaves_the_node_unknown_with_the_reason() {
    let mut env = Env::new();
    env.c.register_package(&mut env.fx, package("solver", 1, Some("t"))).unwrap();
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    let session = env.connect(&names[0], 1).unwrap();
    env.end();
    let failed = packages::Installed { name: "solver".into(), version: 1, error: Some("checksum mismatch".into()) };
    env.c.agent_installed(&mut env.fx, session, vec![failed], env.now);
    env.end();
    assert_eq!(env.state(&names[0]), ("Unknown".into(), "Unapproved".into()));
    assert!(
        env.c.node(&names[0]).unwrap().cause.unwrap().contains("package solver@1 failed to install: checksum mismatch")
    );
}

#[test]
fn pins_and_template_packages_choose_what_a_node_installs() {
    let mut env = Env::new();
    let t2 = NewTemplate { name: "t2".into(), provider: "local".into(), ..Default::default() };
    env.c.create_template(&mut env.fx, t2, env.now).unwrap();
    for p in [package("a", 1, None), package("a", 2, None), package("b", 1, Some("t2"))] {
        env.c.register_package(&mut env.fx, p).unwrap();
    }
    let chosen = |env: &Env, t: &str| {
        env.c.packages_for(t).iter().map(|p| format!("{}@{}", p.name, p.version)).collect::<Vec<_>>()
    };
    assert_eq!(chosen(&env, "t"), ["a@2"]);
    assert_eq!(chosen(&env, "t2"), ["a@2", "b@1"]);
    let pin = TemplateEdit { pin: Some(vec!["a=1".into()]), ..Default::default() };
    env.c.edit_template(&mut env.fx, "t", pin, env.now).unwrap();
    assert_eq!(chosen(&env, "t"), ["a@1"]);
    let gone = env.c.remove_package(&mut env.fx, "a", Some(1)).unwrap();
    assert_eq!(gone.len(), 1);
    assert!(env.c.package_file("a", Some(1)).unwrap_err().message.contains("no version 1"));
    assert_eq!(env.c.reserve_package_version("a", "a.zip", None).unwrap().0, 3, "versions are never reused");
}

#[test]
fn packages_are_installed_on_running_nodes_on_request() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    env.c.register_package(&mut env.fx, package("tool", 1, None)).unwrap();
    let results = env.c.install_packages(&mut env.fx, "t", env.now).unwrap();
    assert!(results.iter().all(|r| r.ok), "{results:?}");
    let fx = env.end();
    assert_eq!(installs(&fx).len(), 2);
    let ok = packages::Installed { name: "tool".into(), version: 1, error: None };
    env.c.agent_installed(&mut env.fx, env.sessions[&names[0]], vec![ok], env.now);
    env.end();
    assert_eq!(env.c.node(&names[0]).unwrap().packages, ["tool@1"]);
    assert_eq!(env.state(&names[0]).0, "Online");
}

#[test]
fn a_reserved_job_id_is_used_once_and_survives_a_restart() {
    let mut env = Env::new();
    let id = env.c.reserve_job_id(&mut env.fx);
    env.end();
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), snapshot_of(&env.log), &mut fx, env.now);
    let sub =
        |reserved| JobSubmission { command: Some(vec!["true".into()]), reserved_id: reserved, ..Default::default() };
    let other = c.submit(&mut fx, sub(None), env.now).unwrap();
    assert!(other > id, "a reserved id is not handed out again after a restart");
    assert_eq!(c.submit(&mut fx, sub(Some(id)), env.now).unwrap(), id);
    let err = c.submit(&mut fx, sub(Some(id)), env.now).unwrap_err();
    assert!(err.message.contains("taken"), "{err}");
    assert!(c.submit(&mut fx, sub(Some(999)), env.now).is_err());
    assert!(c.submit(&mut fx, sub(Some(0)), env.now).is_err(), "job ids start at 1");
}

#[test]
fn a_node_can_be_disconnected_by_name() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    env.end();
    assert_eq!(env.c.disconnect_node(&mut env.fx, &names[0], "its certificate was revoked"), 1);
    let fx = env.end();
    let closed: Vec<SessionId> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Disconnect { session, reason } if reason.contains("revoked") => Some(*session),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![env.sessions[&names[0]]]);
    assert_eq!(env.c.disconnect_node(&mut env.fx, "nobody", "x"), 0);
}
