//! What is persisted and shown of nodes and jobs, made from the domain types.

use super::RECENT_TASKS;
use super::node::Node;
use crate::Millis;
use crate::job::Job;
use crate::node_state::{Health, NodeState};
use crate::persist::{JobProgress, JobRecord, NodeRecord, TaskRow};
use crate::view::{JobView, NodeView};

impl Node {
    pub(super) fn record(&self) -> NodeRecord {
        NodeRecord {
            name: self.name.clone(),
            template: self.template.clone(),
            size: self.size,
            cores: self.cores,
            state: self.state.clone(),
            health: self.health,
            handle: self.handle().cloned(),
        }
    }

    pub(super) fn view(&self) -> NodeView {
        let (since, cause) = match &self.state {
            NodeState::NotDeployed => (None, None),
            NodeState::Provisioning { since }
            | NodeState::Offline { since }
            | NodeState::Online { since }
            | NodeState::Draining { since }
            | NodeState::Stopping { since } => (Some(*since), None),
            NodeState::Unknown { since, cause } => (Some(*since), Some(cause.clone())),
        };
        NodeView {
            name: self.name.clone(),
            template: self.template.clone(),
            size: self.size.map(|s| s.name().to_string()),
            cores: self.cores,
            state: self.state.name().to_string(),
            health: self.health.name().to_string(),
            connected: self.session().is_some(),
            running_tasks: self.running.len() as u64,
            cores_in_use: self.used_cores,
            since,
            cause,
            packages: self.packages.clone(),
            tasks: self.running.iter().map(|k| format!("{}.{}", k.job, k.index)).collect(),
            cpu_percent: self.metrics.map(|m| m.cpu_percent),
            memory_used_mb: self.metrics.map(|m| m.memory_used_mb),
            memory_total_mb: self.metrics.map(|m| m.memory_total_mb),
        }
    }

    /// Notes a task that ended on this node, forgetting the oldest beyond [`RECENT_TASKS`].
    pub(super) fn task_done(&mut self, row: &TaskRow) {
        if self.recent.len() == RECENT_TASKS {
            self.recent.pop_front();
        }
        self.recent.push_back(row.view());
    }

    pub(super) fn takes_work(&self) -> bool {
        matches!(self.state, NodeState::Online { .. }) && self.health == Health::OK && self.session().is_some()
    }
}

pub(super) fn job_record(job: &Job) -> JobRecord {
    JobRecord {
        id: job.id,
        name: job.name.clone(),
        owner: job.owner.clone(),
        priority: job.priority,
        cores_per_task: job.cores_per_task,
        retries: job.retries,
        spec: job.spec.clone(),
        staging: job.staging.clone(),
        state: job.state,
        submitted_at: job.submitted_at,
        started_at: job.started_at,
        ended_at: job.ended_at,
        cursor: job.cursor,
        counts: job.counts,
        core_ms: job.core_ms,
        cost_micros: job.cost_micros.clone(),
    }
}

pub(super) fn job_progress(job: &Job, now: Millis) -> JobProgress {
    JobProgress {
        id: job.id,
        state: job.state,
        started_at: job.started_at,
        ended_at: job.ended_at,
        cursor: job.cursor,
        counts: job.counts,
        core_ms: job.core_ms,
        cost_micros: job.cost_micros.clone(),
        at: now,
    }
}

pub(super) fn job_view(job: &Job) -> JobView {
    JobView {
        id: job.id,
        name: job.name.clone(),
        owner: job.owner.clone(),
        state: job.state.name().to_string(),
        priority: job.priority.name().to_string(),
        cores_per_task: job.cores_per_task,
        retries: job.retries,
        tasks: job.counts,
        core_hours: job.core_ms as f64 / 3_600_000.0,
        cost: job.cost_micros.iter().map(|(c, m)| (c.clone(), *m as f64 / 1e6)).collect(),
        total_tasks: job.total(),
        spec: (&job.spec).into(),
        submitted_at: job.submitted_at,
        started_at: job.started_at,
        ended_at: job.ended_at,
    }
}

/// Rebuilds a job from its stored record and the stored rows of its tasks.
pub(super) fn job_of(record: JobRecord, rows: &[TaskRow]) -> Job {
    let valid = crate::job::ValidJob {
        name: record.name,
        owner: record.owner,
        priority: record.priority,
        cores_per_task: record.cores_per_task,
        retries: record.retries,
        spec: record.spec,
        staging: record.staging,
    };
    let mut job = Job::new(record.id, valid, record.submitted_at);
    job.state = record.state;
    job.started_at = record.started_at;
    job.ended_at = record.ended_at;
    job.counts = record.counts;
    job.core_ms = record.core_ms;
    job.cost_micros = record.cost_micros;
    job.cursor = record.cursor;
    let tasks: Vec<crate::job::StoredTask> = rows
        .iter()
        .map(|r| crate::job::StoredTask { index: r.index, state: r.state, attempt: r.attempt, losses: r.losses })
        .collect();
    job.resume(&tasks)
}
