//! Entry: job requests (reserve an id, submit, cancel, requeue, list).

use super::effects::{Command, Effects};
use super::lifecycle::canceled_row;
use super::messages::TaskAttempt;
use super::records::{job_record, job_view};
use super::{Cluster, JOB_SERIES, SessionId};
use crate::job::{Job, JobState, JobSubmission, TaskState};
use crate::persist::{Op, TaskRow};
use crate::view::JobView;
use crate::{Error, JobId, Millis, Result, TaskKey};
use std::collections::{BTreeMap, BTreeSet};

impl Cluster {
    /// Hands out a job id ahead of a submission, so a client can stage the job's files in its
    /// area first. The id is durable: it is never handed out again.
    pub fn reserve_job_id(&mut self, fx: &mut Effects) -> JobId {
        let id = self.next_job;
        self.next_job += 1;
        fx.ops.push(Op::PutSeries { prefix: JOB_SERIES.into(), last: id });
        id
    }

    pub fn submit(&mut self, fx: &mut Effects, submission: JobSubmission, now: Millis) -> Result<JobId> {
        let reserved = submission.reserved_id;
        let valid = submission.validate()?;
        let id = match reserved {
            Some(id) if id >= 1 && id < self.next_job && !self.jobs.contains_key(&id) => id,
            Some(id) => {
                return Err(Error::conflict(format!(
                    "job id {id} was not reserved or is taken (reserve one with POST /api/v1/jobs/reserve)"
                )));
            }
            None => {
                let id = self.next_job;
                self.next_job += 1;
                id
            }
        };
        let job = Job::new(id, valid, now);
        fx.ops.push(Op::InsertJob(job_record(&job)));
        if let crate::job::JobSpec::Tasks { tasks } = &job.spec {
            fx.ops.extend((1..=tasks.len() as u64).map(|i| Op::PutTask(TaskRow::new(id, i))));
        }
        self.jobs.insert(id, job);
        self.active.insert(id);
        self.dirty = true;
        Ok(id)
    }

    pub fn cancel_job(&mut self, fx: &mut Effects, id: JobId, now: Millis) -> Result<JobView> {
        let job = self.job_named(id)?;
        if job.state.is_terminal() {
            return Err(Error::conflict(format!("job {id} is already {} (nothing to cancel)", job.state.name())));
        }
        let keys: Vec<TaskKey> = self.running.keys().filter(|k| k.job == id).copied().collect();
        let mut per_session: BTreeMap<SessionId, Vec<TaskAttempt>> = BTreeMap::new();
        let mut drained = BTreeSet::new();
        for key in keys {
            let r = self.running.remove(&key).expect("listed above");
            if let Some(node) = self.nodes.get_mut(&r.node) {
                node.running.remove(&key);
                node.used_cores = node.used_cores.saturating_sub(r.cores);
                if let Some(s) = node.session() {
                    per_session.entry(s).or_default().push(TaskAttempt { key, attempt: r.attempt });
                }
                drained.insert(r.node.clone());
            }
            let mut row = TaskRow::new(id, key.index);
            row.state = TaskState::Canceled;
            row.attempt = r.attempt;
            row.losses = r.losses;
            row.node = Some(r.node);
            row.ended_at = Some(now);
            row.message = Some("canceled while running".into());
            if let Some(node) = row.node.as_ref().and_then(|n| self.nodes.get_mut(n)) {
                node.task_done(&row);
            }
            fx.ops.push(Op::PutTask(row));
        }
        let job = self.jobs.get_mut(&id).expect("checked above");
        // Queued tasks that have a row (requeued ones, and every task of a job with explicit
        // tasks) are marked; queued sweep indices without a row are only counted.
        for (index, attempt) in job.queued_with_rows() {
            fx.ops.push(canceled_row(id, index, attempt, now, "canceled before it ran"));
        }
        job.cancel(now);
        self.active.remove(&id);
        self.progressed.insert(id);
        for (session, tasks) in per_session {
            fx.commands.push(Command::Cancel { session, tasks });
        }
        for name in drained {
            self.settle_drain(fx, &name, now);
        }
        self.dirty = true;
        Ok(job_view(&self.jobs[&id]))
    }

    /// Requeues the failed and canceled tasks of ended job `id`; `ended` holds the stored rows
    /// of those tasks (index, last attempt), which the caller read from the store while the job
    /// had ended at `ended_at`.
    pub fn requeue_job(
        &mut self,
        fx: &mut Effects,
        id: JobId,
        ended_at: Option<Millis>,
        ended: &[(u64, u32)],
    ) -> Result<JobView> {
        let job = self.job_named(id)?;
        if job.ended_at != ended_at {
            return Err(Error::conflict(format!(
                "job {id} changed while its tasks were read (another requeue?); look at it again and retry"
            )));
        }
        match job.state {
            JobState::Failed | JobState::Canceled => {}
            JobState::Finished => {
                return Err(Error::conflict(format!(
                    "job {id} finished: every task succeeded, so there is nothing to requeue (submit it again to rerun it)"
                )));
            }
            state => {
                return Err(Error::conflict(format!(
                    "job {id} is {} (only a Failed or Canceled job can be requeued; cancel it first)",
                    state.name()
                )));
            }
        }
        // The list was read from the store beside the actor: the job's ended tasks that have rows
        // (tasks canceled before they started have none), each once.
        let distinct: BTreeSet<u64> = ended.iter().map(|(i, _)| *i).collect();
        let expected = job.counts.failed + job.counts.canceled;
        if distinct.len() != ended.len() || ended.len() as u64 > expected || !distinct.iter().all(|i| job.has_index(*i))
        {
            return Err(Error::conflict(format!(
                "job {id} changed while its tasks were read ({} ended tasks read, at most {expected} expected); look at it again and retry",
                ended.len()
            )));
        }
        let job = self.jobs.get_mut(&id).expect("checked above");
        for (index, attempt) in job.requeue_ended(ended) {
            let mut row = TaskRow::new(id, index);
            row.message = Some("requeued".into());
            row.attempt = attempt;
            fx.ops.push(Op::PutTask(row));
        }
        self.active.insert(id);
        self.progressed.insert(id);
        self.dirty = true;
        Ok(job_view(&self.jobs[&id]))
    }

    pub fn jobs(&self) -> Vec<JobView> {
        self.jobs.values().map(job_view).collect()
    }

    pub fn job(&self, id: JobId) -> Result<JobView> {
        Ok(job_view(self.job_named(id)?))
    }

    /// Checks that `index` names a task of job `id`.
    pub fn check_task(&self, id: JobId, index: u64) -> Result<()> {
        if self.job_named(id)?.has_index(index) {
            Ok(())
        } else {
            Err(Error::not_found(format!("job {id} has no task with index {index} (see thunderhead task list {id})")))
        }
    }
}
