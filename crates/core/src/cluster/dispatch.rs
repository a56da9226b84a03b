//! Entry: the end of a batch, where deployments go out and queued tasks are placed.

use super::effects::{Command, Effects};
use super::messages::Dispatch;
use super::records::job_progress;
use super::{Cluster, Running};
use crate::job::{Job, TaskState};
use crate::persist::{Op, TaskRow};
use crate::scheduler::{self, JobDemand, NodeSlots};
use crate::{Millis, TaskKey};
use std::collections::BTreeMap;

impl Cluster {
    /// Ends a batch of events: places queued tasks on nodes with room, and persists the
    /// progress of every job that changed. Call once per batch, before committing its ops.
    pub fn end_batch(&mut self, fx: &mut Effects, now: Millis) {
        self.dispatch_deploys(fx, now);
        if self.dirty {
            self.dirty = false;
            self.schedule(fx, now);
        }
        for id in std::mem::take(&mut self.progressed) {
            if let Some(job) = self.jobs.get(&id) {
                fx.ops.push(Op::JobProgress(job_progress(job, now)));
            }
        }
    }

    fn schedule(&mut self, fx: &mut Effects, now: Millis) {
        if self.active.is_empty() {
            return;
        }
        // Only nodes with room take part: a steady round looks at the few that freed cores.
        let most = self.config.queue_ahead;
        let (slots, names): (Vec<NodeSlots>, Vec<String>) = self
            .nodes
            .values()
            .filter(|n| n.takes_work())
            .map(|n| (n, n.cores.saturating_mul(n.queue_ahead(most).saturating_add(1)).saturating_sub(n.used_cores)))
            .filter(|(_, free)| *free > 0)
            .map(|(n, free_cores)| (NodeSlots { free_cores, cores: n.cores }, n.name.clone()))
            .unzip();
        if slots.is_empty() {
            return;
        }
        let demand: Vec<JobDemand> = self
            .active
            .iter()
            .map(|id| &self.jobs[id])
            .map(|j| JobDemand {
                job: j.id,
                priority: j.priority,
                cores_per_task: j.cores_per_task,
                pending: j.pending(),
            })
            .filter(|d| d.pending > 0)
            .collect();
        let placements = scheduler::plan(&demand, &slots);
        let mut per_node: BTreeMap<usize, Vec<Dispatch>> = BTreeMap::new();
        for p in placements {
            let name = &names[p.node];
            let job = self.jobs.get_mut(&p.job).expect("active job");
            let taken = job.take(p.count as u64);
            job.mark_running(taken.len() as u64, now);
            let node = self.nodes.get_mut(name).expect("eligible node");
            for t in taken {
                let key = TaskKey { job: job.id, index: t.index };
                job.note_started(t.index);
                node.running.insert(key);
                node.used_cores = node.used_cores.saturating_add(job.cores_per_task);
                self.running.insert(
                    key,
                    Running { attempt: t.attempt, losses: t.losses, node: name.clone(), cores: job.cores_per_task },
                );
                let mut row = TaskRow::new(job.id, t.index);
                row.state = TaskState::Running;
                row.attempt = t.attempt;
                row.losses = t.losses;
                row.node = Some(name.clone());
                row.started_at = Some(now);
                fx.ops.push(Op::PutTask(row));
                per_node.entry(p.node).or_default().push(Dispatch {
                    key,
                    attempt: t.attempt,
                    command: job.command_of(t.index),
                    env: task_env(job, t.index, t.attempt, name),
                    cores: job.cores_per_task,
                    staging: job.staging.for_task(job.id, t.index),
                });
            }
            self.progressed.insert(p.job);
        }
        for (i, tasks) in per_node {
            let session = self.nodes[&names[i]].session().expect("eligible nodes are connected");
            fx.commands.push(Command::Assign { session, tasks });
        }
    }
}

fn task_env(job: &Job, index: u64, attempt: u32, node: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("THUNDERHEAD_JOB_ID".to_string(), job.id.to_string()),
        ("THUNDERHEAD_TASK_ID".to_string(), format!("{}.{index}", job.id)),
        ("THUNDERHEAD_TASK_ATTEMPT".to_string(), attempt.to_string()),
        ("THUNDERHEAD_NODE_NAME".to_string(), node.to_string()),
    ];
    if matches!(job.spec, crate::job::JobSpec::Sweep { .. }) {
        env.push(("THUNDERHEAD_SWEEP_INDEX".to_string(), index.to_string()));
    }
    env
}
