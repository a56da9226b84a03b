//! Rebuilding the model from a store snapshot when the head node starts.

use super::deployment::{AgentLink, Deployment};
use super::effects::{Command, Effects};
use super::node::Node;
use super::records::job_of;
use super::{Cluster, Config, JOB_SERIES, Running};
use crate::cost::UsageKind;
use crate::job::TaskState;
use crate::node_state::NodeState;
use crate::persist::{Op, Snapshot, TaskRow};
use crate::provider_rules::ProviderRules;
use crate::{JobId, Millis, TaskKey};
use std::collections::HashMap;
use std::sync::Arc;

impl Cluster {
    /// Rebuilds the cluster a head node had when it stopped. Nodes whose agents were connected
    /// get [`Config::reconnect_grace`] to reconnect; running tasks stay running until their agent
    /// says otherwise.
    pub fn restore(
        config: Config,
        rules: Arc<dyn ProviderRules>,
        snapshot: Snapshot,
        fx: &mut Effects,
        now: Millis,
    ) -> Cluster {
        let mut c = Cluster::new(config, rules);
        c.templates = snapshot.templates.into_iter().map(|t| (t.name.clone(), t)).collect();
        c.policy = c.templates.values().filter_map(|t| Some((t.name.clone(), t.policy_state.clone()?))).collect();
        c.series = snapshot.series.into_iter().collect();
        c.next_job = c.series.get(JOB_SERIES).map_or(1, |last| last + 1);
        c.next_usage = snapshot.next_usage.max(1);
        for u in snapshot.open_usage {
            let key = match u.kind {
                UsageKind::Node => (UsageKind::Node, u.name.clone()),
                UsageKind::Proxies => (UsageKind::Proxies, u.template.clone()),
            };
            c.usage.insert(key, u);
        }
        for mut r in snapshot.nodes {
            // The provision timeout runs from the restart: agents may be reconnecting right now.
            let provisioning = matches!(r.state, NodeState::Provisioning { .. });
            if let NodeState::Provisioning { since } = &mut r.state {
                *since = now;
            }
            // A deployment that was queued or under way when the head node stopped has no
            // handle yet: it is made again. One with a handle waits for its agent.
            let deployment = match r.handle {
                Some(handle) => Deployment::Made { handle, at: now, waiting: None },
                None if provisioning => Deployment::Queued { attempts: 0, not_before: now, earlier: None },
                None => Deployment::None,
            };
            let agent = if r.state.expects_agent() { AgentLink::Away { since: now } } else { AgentLink::None };
            let node =
                Node { deployment, agent, ..Node::new(r.name.clone(), r.template, r.size, r.cores, r.state, r.health) };
            c.nodes.insert(r.name, node);
        }
        let mut rows_by_job: HashMap<JobId, Vec<TaskRow>> = HashMap::new();
        for row in snapshot.active_tasks {
            rows_by_job.entry(row.job).or_default().push(row);
        }
        for record in snapshot.jobs {
            let id = record.id;
            c.next_job = c.next_job.max(id + 1);
            let rows = rows_by_job.remove(&id).unwrap_or_default();
            let mut job = job_of(record, &rows);
            if !job.state.is_terminal() {
                c.active.insert(id);
                for row in rows.iter().filter(|r| r.state == TaskState::Running) {
                    let key = TaskKey { job: id, index: row.index };
                    let node = row.node.clone().unwrap_or_default();
                    if let Some(n) = c.nodes.get_mut(&node) {
                        n.running.insert(key);
                        n.used_cores += job.cores_per_task;
                        let r = Running { attempt: row.attempt, losses: row.losses, node, cores: job.cores_per_task };
                        c.running.insert(key, r);
                    } else {
                        // Its node was deleted while the head node was down: run it again.
                        job.requeue(row.index, row.attempt, row.losses);
                        fx.ops.push(Op::PutTask(TaskRow { state: TaskState::Queued, ..row.clone() }));
                        c.progressed.insert(id);
                    }
                }
            }
            c.jobs.insert(id, job);
        }
        c.restore_proxies(snapshot.proxies, fx, now);
        c.packages = snapshot.packages.into_iter().map(|p| ((p.name.clone(), p.version), p)).collect();
        // A stop that was under way when the head node went down is finished now.
        let stopping: Vec<String> = c
            .nodes
            .values()
            .filter(|n| matches!(n.state, NodeState::Stopping { .. }))
            .map(|n| n.name.clone())
            .collect();
        for name in stopping {
            let node = &c.nodes[&name];
            match (node.handle().cloned(), node.template.as_ref().and_then(|t| c.templates.get(t)).cloned()) {
                (Some(handle), Some(template)) => {
                    fx.commands.push(Command::Remove { node: name.clone(), template, handle });
                }
                _ => c.finish_stop(fx, &name, now),
            }
        }
        c.dirty = true;
        c
    }
}
