//! Jobs and their tasks at run time: how a job hands out its tasks and counts them (what a job
//! is asked to do, and its checks, are in [`crate::job_spec`]).
//!
//! A job is either a *sweep* (one command line, `*` replaced by each index of a range) or a
//! set of *tasks* with dependencies between them. Sweeps are lazy: indices that have not started
//! exist only as the part of the range past [`Job::cursor`], so a million-index sweep is one
//! record. Only started indices get a row in the store.

use crate::sweep;
use crate::{JobId, Millis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

// What a job is asked to do lives in `job_spec`; its names stay reachable here.
pub use crate::job_spec::{
    DEFAULT_RETRIES, JobSpec, JobSubmission, MAX_COMMAND_ARGS, MAX_COMMAND_BYTES, MAX_CORES_PER_TASK, MAX_FILE_BYTES,
    MAX_FILE_TASKS, MAX_NAME_CHARS, MAX_RETRIES, MAX_STAGING_ENTRIES, Priority, TaskDef, TaskList, ValidJob,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    Queued,
    Running,
    Finished,
    Failed,
    Canceled,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Finished | JobState::Failed | JobState::Canceled)
    }
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "Queued",
            JobState::Running => "Running",
            JobState::Finished => "Finished",
            JobState::Failed => "Failed",
            JobState::Canceled => "Canceled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Queued,
    Running,
    Finished,
    Failed,
    Canceled,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Finished | TaskState::Failed | TaskState::Canceled)
    }
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Queued => "Queued",
            TaskState::Running => "Running",
            TaskState::Finished => "Finished",
            TaskState::Failed => "Failed",
            TaskState::Canceled => "Canceled",
        }
    }
    pub fn parse(text: &str) -> Option<TaskState> {
        [TaskState::Queued, TaskState::Running, TaskState::Finished, TaskState::Failed, TaskState::Canceled]
            .into_iter()
            .find(|s| s.name() == text)
    }
}

/// How many tasks of a job are in each state. Serialised with the state names as keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskCounts {
    #[serde(rename = "Queued")]
    pub queued: u64,
    #[serde(rename = "Running")]
    pub running: u64,
    #[serde(rename = "Finished")]
    pub finished: u64,
    #[serde(rename = "Failed")]
    pub failed: u64,
    #[serde(rename = "Canceled")]
    pub canceled: u64,
}

impl TaskCounts {
    pub fn total(&self) -> u64 {
        self.queued + self.running + self.finished + self.failed + self.canceled
    }
    fn slot(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Queued => &mut self.queued,
            TaskState::Running => &mut self.running,
            TaskState::Finished => &mut self.finished,
            TaskState::Failed => &mut self.failed,
            TaskState::Canceled => &mut self.canceled,
        }
    }
    /// Moves one task from `from` to `to`.
    pub fn shift(&mut self, from: TaskState, to: TaskState) {
        let from = self.slot(from);
        debug_assert!(*from > 0, "no task to move");
        *from = from.saturating_sub(1);
        *self.slot(to) += 1;
    }
}

/// A task that goes back to the queue: its last attempt and how often its node was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requeued {
    pub attempt: u32,
    pub losses: u32,
}

/// A task taken from a job to be dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub index: u64,
    pub attempt: u32,
    pub losses: u32,
}

/// Dependency bookkeeping of a job with explicit tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Graph {
    /// Unfinished dependencies of each task (index `i` is task `i + 1`).
    waiting_on: Vec<u32>,
    dependents: Vec<Vec<u32>>,
    state: Vec<TaskState>,
    /// Tasks whose dependencies are done and that have never started.
    ready: BTreeSet<u64>,
}

/// What the store kept of one task of a job, to rebuild the job's bookkeeping from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredTask {
    pub index: u64,
    pub state: TaskState,
    pub attempt: u32,
    pub losses: u32,
}

/// A job and the runtime bookkeeping of its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub name: String,
    /// The user who submitted it.
    pub owner: String,
    pub priority: Priority,
    pub cores_per_task: u32,
    pub retries: u32,
    pub spec: JobSpec,
    /// Files staged in and out of each task.
    pub staging: crate::staging::Staging,
    pub state: JobState,
    pub submitted_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub counts: TaskCounts,
    /// Core-milliseconds its tasks ran.
    pub core_ms: u64,
    /// What its tasks cost, in millionths, per currency.
    pub cost_micros: std::collections::BTreeMap<String, u64>,
    /// Sweeps: how many positions of the range have been taken.
    pub cursor: u64,
    /// Tasks that went back to the queue, taken before new ones.
    pub requeued: BTreeMap<u64, Requeued>,
    graph: Option<Graph>,
}

impl Job {
    pub fn new(id: JobId, valid: ValidJob, now: Millis) -> Job {
        let total = match &valid.spec {
            JobSpec::Sweep { range, .. } => range.len(),
            JobSpec::Tasks { tasks } => tasks.len() as u64,
        };
        let graph = Self::graph_of(&valid.spec);
        Job {
            id,
            name: valid.name,
            owner: valid.owner,
            priority: valid.priority,
            cores_per_task: valid.cores_per_task,
            retries: valid.retries,
            spec: valid.spec,
            staging: valid.staging,
            state: JobState::Queued,
            submitted_at: now,
            started_at: None,
            ended_at: None,
            counts: TaskCounts { queued: total, ..Default::default() },
            core_ms: 0,
            cost_micros: Default::default(),
            cursor: 0,
            requeued: BTreeMap::new(),
            graph,
        }
    }

    fn graph_of(spec: &JobSpec) -> Option<Graph> {
        let JobSpec::Tasks { tasks } = spec else {
            return None;
        };
        let mut dependents = vec![Vec::new(); tasks.len()];
        let mut waiting_on = vec![0; tasks.len()];
        for (i, waiting) in waiting_on.iter_mut().enumerate() {
            for &p in tasks.depends_on(i) {
                dependents[p as usize].push(i as u32);
                *waiting += 1;
            }
        }
        let ready = (0..tasks.len()).filter(|&i| waiting_on[i] == 0).map(|i| i as u64 + 1).collect();
        Some(Graph { waiting_on, dependents, state: vec![TaskState::Queued; tasks.len()], ready })
    }

    /// The indices of the job's tasks, in order.
    pub fn total(&self) -> u64 {
        self.counts.total()
    }

    /// Whether `index` names a task of this job.
    pub fn has_index(&self, index: u64) -> bool {
        match &self.spec {
            JobSpec::Sweep { range, .. } => range.position(index).is_some(),
            JobSpec::Tasks { tasks } => index >= 1 && index <= tasks.len() as u64,
        }
    }

    /// Tasks that could start now.
    pub fn pending(&self) -> u64 {
        if self.state.is_terminal() {
            return 0;
        }
        let fresh = match (&self.spec, &self.graph) {
            (JobSpec::Sweep { range, .. }, _) => range.len() - self.cursor,
            (_, Some(g)) => g.ready.len() as u64,
            (JobSpec::Tasks { .. }, None) => 0,
        };
        self.requeued.len() as u64 + fresh
    }

    /// Takes up to `n` tasks to dispatch: requeued ones first, then new ones in index order.
    /// The caller records them as running with [`Job::mark_running`].
    pub fn take(&mut self, n: u64) -> Vec<Taken> {
        let mut out = Vec::with_capacity(n.min(1024) as usize);
        while (out.len() as u64) < n {
            let Some((index, r)) = self.requeued.pop_first() else {
                break;
            };
            out.push(Taken { index, attempt: r.attempt + 1, losses: r.losses });
        }
        while (out.len() as u64) < n {
            let index = match (&self.spec, &mut self.graph) {
                (JobSpec::Sweep { range, .. }, _) => match range.nth(self.cursor) {
                    Some(i) => {
                        self.cursor += 1;
                        i
                    }
                    None => break,
                },
                (_, Some(g)) => match g.ready.pop_first() {
                    Some(i) => i,
                    None => break,
                },
                (JobSpec::Tasks { .. }, None) => break,
            };
            out.push(Taken { index, attempt: 1, losses: 0 });
        }
        out
    }

    /// Records that taken tasks are now running.
    pub fn mark_running(&mut self, count: u64, now: Millis) {
        for _ in 0..count {
            self.counts.shift(TaskState::Queued, TaskState::Running);
        }
        if self.started_at.is_none() {
            self.started_at = Some(now);
        }
        if self.state == JobState::Queued && count > 0 {
            self.state = JobState::Running;
        }
    }

    fn set_graph_state(&mut self, index: u64, state: TaskState) {
        if let Some(g) = &mut self.graph {
            g.state[(index - 1) as usize] = state;
        }
    }

    /// Notes that a task of a graph job is running (the graph keeps per-task states).
    pub fn note_started(&mut self, index: u64) {
        self.set_graph_state(index, TaskState::Running);
    }

    /// A running task goes back to the queue as a new attempt.
    pub fn requeue(&mut self, index: u64, attempt: u32, losses: u32) {
        self.counts.shift(TaskState::Running, TaskState::Queued);
        self.set_graph_state(index, TaskState::Queued);
        self.requeued.insert(index, Requeued { attempt, losses });
    }

    /// A running task ended in `state`. Returns the tasks canceled because they depended on it
    /// (for jobs with dependencies), which the caller persists.
    pub fn task_ended(&mut self, index: u64, state: TaskState) -> Vec<u64> {
        debug_assert!(state.is_terminal());
        self.counts.shift(TaskState::Running, state);
        let mut canceled = Vec::new();
        if let Some(g) = &mut self.graph {
            g.state[(index - 1) as usize] = state;
            let mut stack = vec![index];
            while let Some(i) = stack.pop() {
                for &d in &g.dependents[(i - 1) as usize] {
                    let d = d as usize;
                    if state == TaskState::Finished {
                        g.waiting_on[d] -= 1;
                        if g.waiting_on[d] == 0 && g.state[d] == TaskState::Queued {
                            g.ready.insert(d as u64 + 1);
                        }
                    } else if g.state[d] == TaskState::Queued {
                        g.state[d] = TaskState::Canceled;
                        g.ready.remove(&(d as u64 + 1));
                        self.counts.shift(TaskState::Queued, TaskState::Canceled);
                        canceled.push(d as u64 + 1);
                        stack.push(d as u64 + 1);
                    }
                }
                if state == TaskState::Finished {
                    break;
                }
            }
        }
        canceled
    }

    /// Settles the job's state from its counts; returns true if it just ended.
    pub fn settle(&mut self, now: Millis) -> bool {
        if self.state.is_terminal() {
            return false;
        }
        let c = self.counts;
        if c.queued + c.running > 0 {
            return false;
        }
        self.state = if c.failed > 0 || c.canceled > 0 { JobState::Failed } else { JobState::Finished };
        self.ended_at = Some(now);
        true
    }

    /// Queued tasks that have a stored row, with their last attempt: requeued ones, and every
    /// queued task of a job with explicit tasks.
    pub fn queued_with_rows(&self) -> Vec<(u64, u32)> {
        let mut out: Vec<(u64, u32)> = self.requeued.iter().map(|(i, r)| (*i, r.attempt)).collect();
        if let Some(g) = &self.graph {
            out.extend(
                (0..g.state.len())
                    .filter(|&i| g.state[i] == TaskState::Queued && !self.requeued.contains_key(&(i as u64 + 1)))
                    .map(|i| (i as u64 + 1, 0)),
            );
        }
        out
    }

    /// Cancels every task that has not ended. The caller cancels the running ones on their
    /// nodes; queued sweep indices are counted, not listed.
    pub fn cancel(&mut self, now: Millis) {
        let c = &mut self.counts;
        c.canceled += c.queued + c.running;
        c.queued = 0;
        c.running = 0;
        self.requeued.clear();
        if let Some(g) = &mut self.graph {
            g.ready.clear();
            for s in &mut g.state {
                if !s.is_terminal() {
                    *s = TaskState::Canceled;
                }
            }
        }
        self.state = JobState::Canceled;
        self.ended_at = Some(now);
    }

    /// Puts the failed and canceled tasks of an ended job back in the queue, as HPC Pack's
    /// requeue does: `ended` lists the stored rows of those tasks (index, last attempt); queued
    /// sweep indices that a cancel only counted are taken again from where the sweep stopped.
    /// Finished tasks stay finished. Returns each requeued task with the attempt it keeps (0
    /// for a task that starts over).
    pub fn requeue_ended(&mut self, ended: &[(u64, u32)]) -> Vec<(u64, u32)> {
        debug_assert!(matches!(self.state, JobState::Failed | JobState::Canceled));
        let c = &mut self.counts;
        c.queued += c.failed + c.canceled;
        c.failed = 0;
        c.canceled = 0;
        self.state = JobState::Queued;
        self.ended_at = None;
        if let Some(g) = &mut self.graph {
            for &(index, _) in ended {
                g.state[(index - 1) as usize] = TaskState::Queued;
            }
            g.waiting_on.iter_mut().for_each(|w| *w = 0);
            for (p, of) in g.dependents.iter().enumerate() {
                if g.state[p] != TaskState::Finished {
                    for &d in of {
                        g.waiting_on[d as usize] += 1;
                    }
                }
            }
        }
        let mut rows = Vec::with_capacity(ended.len());
        for &(index, attempt) in ended {
            // A task of a job with explicit tasks waits for its dependencies again, and starts
            // over at attempt 1 when they are done.
            let ready = self.graph.as_ref().is_none_or(|g| g.waiting_on[(index - 1) as usize] == 0);
            if ready && attempt > 0 {
                self.requeued.insert(index, Requeued { attempt, losses: 0 });
                rows.push((index, attempt));
            } else {
                rows.push((index, 0));
            }
        }
        if let Some(g) = &mut self.graph {
            g.ready = (0..g.state.len())
                .filter(|&i| {
                    g.state[i] == TaskState::Queued
                        && g.waiting_on[i] == 0
                        && !self.requeued.contains_key(&(i as u64 + 1))
                })
                .map(|i| i as u64 + 1)
                .collect();
        }
        rows
    }

    /// The command line of task `index`, with the sweep index substituted.
    pub fn command_of(&self, index: u64) -> Vec<String> {
        match &self.spec {
            JobSpec::Sweep { command, .. } => sweep::substitute_all(command, index),
            JobSpec::Tasks { tasks } => index.checked_sub(1).map(|i| tasks.command(i as usize)).unwrap_or_default(),
        }
    }

    /// Rebuilds the bookkeeping of a job read back from the store (made with [`Job::new`], its
    /// stored progress set) from the stored rows of its tasks.
    pub fn resume(mut self, rows: &[StoredTask]) -> Job {
        let job = &mut self;
        if let Some(g) = &mut job.graph {
            for row in rows {
                let i = (row.index - 1) as usize;
                if i >= g.state.len() {
                    continue;
                }
                g.state[i] = row.state;
            }
            for row in rows.iter().filter(|r| r.state == TaskState::Finished) {
                for &d in &g.dependents[(row.index - 1) as usize] {
                    g.waiting_on[d as usize] -= 1;
                }
            }
            g.ready = (0..g.state.len())
                .filter(|&i| g.state[i] == TaskState::Queued && g.waiting_on[i] == 0)
                .map(|i| i as u64 + 1)
                .collect();
        }
        for row in rows.iter().filter(|r| r.state == TaskState::Queued && r.attempt > 0) {
            if let Some(g) = &mut job.graph {
                g.ready.remove(&row.index);
            }
            job.requeued.insert(row.index, Requeued { attempt: row.attempt, losses: row.losses });
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;

    fn sweep(range: &str) -> ValidJob {
        JobSubmission {
            command: Some(vec!["echo".into(), "*".into()]),
            sweep: Some(range.into()),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    fn graph(tasks: &[(&str, &[&str])]) -> Result<ValidJob> {
        JobSubmission {
            tasks: Some(
                tasks
                    .iter()
                    .map(|(n, d)| TaskDef {
                        name: n.to_string(),
                        command: vec!["true".into()],
                        depends_on: d.iter().map(|s| s.to_string()).collect(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }
        .validate()
    }

    #[test]
    fn a_requeued_job_with_dependencies_runs_the_failed_task_before_what_waits_on_it() {
        let mut job = Job::new(1, graph(&[("a", &[]), ("b", &["a"]), ("c", &[])]).unwrap(), 0);
        let taken: Vec<u64> = job.take(3).iter().map(|t| t.index).collect();
        assert_eq!(taken, [1, 3]);
        job.mark_running(2, 0);
        assert_eq!(job.task_ended(1, TaskState::Failed), [2], "b is canceled with a");
        job.task_ended(3, TaskState::Finished);
        assert!(job.settle(5));
        assert_eq!(job.state, JobState::Failed);
        let rows = job.requeue_ended(&[(1, 1), (2, 0)]);
        assert_eq!(rows, [(1, 1), (2, 0)]);
        assert_eq!((job.state, job.counts.queued, job.counts.finished), (JobState::Queued, 2, 1));
        let again = job.take(3);
        assert_eq!(again.iter().map(|t| (t.index, t.attempt)).collect::<Vec<_>>(), [(1, 2)], "b waits for a");
        job.mark_running(1, 6);
        job.task_ended(1, TaskState::Finished);
        assert_eq!(job.take(3).iter().map(|t| (t.index, t.attempt)).collect::<Vec<_>>(), [(2, 1)]);
    }

    #[test]
    fn a_sweep_hands_out_indices_in_order_and_requeued_ones_first() {
        let mut job = Job::new(1, sweep("10-14"), 0);
        assert_eq!(job.pending(), 5);
        let first: Vec<u64> = job.take(2).iter().map(|t| t.index).collect();
        assert_eq!(first, [10, 11]);
        job.mark_running(2, 5);
        job.requeue(11, 1, 1);
        let next = job.take(2);
        assert_eq!(next[0], Taken { index: 11, attempt: 2, losses: 1 });
        assert_eq!(next[1].index, 12);
        assert_eq!(job.state, JobState::Running);
    }

    #[test]
    fn a_million_index_sweep_is_one_record() {
        let job = Job::new(1, sweep("1-1000000"), 0);
        assert_eq!(job.pending(), 1_000_000);
        assert_eq!(job.counts.queued, 1_000_000);
        assert!(job.requeued.is_empty());
    }

    #[test]
    fn a_job_ends_finished_only_if_every_task_finished() {
        let mut job = Job::new(1, sweep("1-2"), 0);
        job.take(2);
        job.mark_running(2, 1);
        job.task_ended(1, TaskState::Finished);
        assert!(!job.settle(2));
        job.task_ended(2, TaskState::Failed);
        assert!(job.settle(3));
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.counts, TaskCounts { finished: 1, failed: 1, ..Default::default() });
    }

    #[test]
    fn dependencies_release_tasks_and_failures_cancel_dependents() {
        let mut job = Job::new(1, graph(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]).unwrap(), 0);
        assert_eq!(job.pending(), 2);
        let t: Vec<u64> = job.take(10).iter().map(|t| t.index).collect();
        assert_eq!(t, [1, 4]);
        job.mark_running(2, 0);
        job.task_ended(1, TaskState::Finished);
        assert_eq!(job.take(10).iter().map(|t| t.index).collect::<Vec<_>>(), [2]);
        job.mark_running(1, 0);
        let canceled = job.task_ended(2, TaskState::Failed);
        assert_eq!(canceled, [3]);
        job.task_ended(4, TaskState::Finished);
        assert!(job.settle(1));
        assert_eq!(job.counts, TaskCounts { finished: 2, failed: 1, canceled: 1, ..Default::default() });
    }

    #[test]
    fn bad_job_files_are_refused_with_the_task_named() {
        let cycle = graph(&[("a", &["b"]), ("b", &["a"])]).unwrap_err();
        assert!(cycle.message.contains("cycle"), "{cycle}");
        let missing = graph(&[("a", &["zzz"])]).unwrap_err();
        assert!(missing.message.contains("\"zzz\""), "{missing}");
        let twice = graph(&[("a", &[]), ("a", &[])]).unwrap_err();
        assert!(twice.message.contains("twice"), "{twice}");
    }

    #[test]
    fn canceling_counts_every_unfinished_index() {
        let mut job = Job::new(1, sweep("1-100"), 0);
        job.take(3);
        job.mark_running(3, 0);
        job.task_ended(1, TaskState::Finished);
        job.cancel(5);
        assert_eq!(job.counts, TaskCounts { finished: 1, canceled: 99, ..Default::default() });
        assert_eq!(job.pending(), 0);
    }
}
