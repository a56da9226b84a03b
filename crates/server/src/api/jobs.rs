//! Routes of jobs and their tasks: reserve an id, stage inputs, submit, show, cancel, requeue,
//! and the files their tasks uploaded. A caller acts only on jobs they may manage.

use super::blobs::{check_location, locate};
use super::{Answer, Api, ApiError, ask, blocking};
use crate::actor::Request;
use crate::locations::Who;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use thunderhead_core::Error;
use thunderhead_core::access::{Caller, FileUse, Role};
use thunderhead_core::job::{JobSubmission, TaskState};
use thunderhead_core::persist::TaskRow;
use thunderhead_core::view::{JobView, SubmitReply, TaskOutput, TaskView};
use thunderhead_store::TaskQuery;

/// The jobs the caller may see: a User's own, every job for the administrators.
pub(super) async fn visible_jobs(api: &Api, caller: &Caller) -> Result<Vec<JobView>, ApiError> {
    let jobs = api.handle.ask(Request::ListJobs).await?;
    Ok(jobs.into_iter().filter(|j| caller.may_manage_job(&j.owner)).collect())
}

/// Job `id`, if the caller may act on it.
pub(super) async fn own_job(api: &Api, caller: &Caller, id: u64) -> Result<JobView, ApiError> {
    let job = api.handle.ask(|r| Request::ShowJob(id, r)).await?;
    caller.check_job(id, &job.owner)?;
    Ok(job)
}

pub(super) async fn list_jobs(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Answer<Vec<JobView>> {
    Ok(Json(visible_jobs(&api, &caller).await?))
}

pub(super) async fn submit_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<JobSubmission>, JsonRejection>,
) -> Answer<SubmitReply> {
    let mut submission = body?.0;
    if let Some(id) = submission.reserved_id {
        match api.handle.ask(|r| Request::ReservedBy(id, r)).await? {
            Some(reserver) => caller.check_job(id, &reserver)?,
            // Reservations are kept in memory: one made before a restart has no known owner.
            None if caller.role < Role::JobAdministrator => {
                return Err(Error::conflict(format!(
                    "job id {id} is not reserved by you (it may have been reserved before the head node restarted); submit again: the client reserves a new one"
                ))
                .into());
            }
            None => {}
        }
    }
    submission.owner = caller.name.clone();
    check_staging(&api, &caller, &submission).await?;
    ask(&api, |r| Request::Submit(submission, r)).await
}

/// Every location a submission names, through the one check: inputs are read, output prefixes
/// written, by the submitting user. Entries that do not parse are left to the job's validation.
pub(super) async fn check_staging(api: &Api, caller: &Caller, submission: &JobSubmission) -> Result<(), ApiError> {
    use thunderhead_core::staging::{parse_input, parse_output};
    let inputs =
        submission.inputs.iter().flatten().filter_map(|i| parse_input(i).ok()).map(|i| (i.source, FileUse::Read));
    let outputs =
        submission.outputs.iter().flatten().filter_map(|o| parse_output(o).ok()?.prefix).map(|p| (p, FileUse::Write));
    for (location, use_) in inputs.chain(outputs).collect::<Vec<_>>() {
        // A `*` stands for the sweep index: a job's area must be named by its number.
        check_location(api, &location, use_, Who::User(caller, None)).await?;
    }
    Ok(())
}

pub(super) async fn show_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Answer<JobView> {
    Ok(Json(own_job(&api, &caller, id).await?))
}

pub(super) async fn cancel_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Answer<JobView> {
    own_job(&api, &caller, id).await?;
    ask(&api, |r| Request::CancelJob(id, r)).await
}

/// Puts the failed and canceled tasks of an ended job back in the queue.
pub(super) async fn requeue_job(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Answer<JobView> {
    let seen = own_job(&api, &caller, id).await?;
    let store = api.store.clone();
    let ended = blocking(move || {
        let mut ended = Vec::new();
        for state in [TaskState::Failed, TaskState::Canceled] {
            let mut after = None;
            loop {
                let rows = store.tasks(TaskQuery { job: id, after, limit: 10_000, state: Some(state) })?;
                ended.extend(rows.iter().map(|r| (r.index, r.attempt)));
                match rows.last() {
                    Some(last) if rows.len() == 10_000 => after = Some(last.index),
                    _ => break,
                }
            }
        }
        ended.sort_unstable();
        Ok::<_, thunderhead_store::StoreError>(ended)
    })
    .await??;
    ask(&api, |reply| Request::RequeueJob { id, ended_at: seen.ended_at, ended, reply }).await
}

#[derive(Deserialize)]
pub(super) struct TaskFilter {
    after: Option<u64>,
    limit: Option<u32>,
    state: Option<String>,
}

/// Rows of tasks that have started at least once (and of every task of a job with explicit
/// tasks), a page at a time: `?after=INDEX&limit=N&state=Failed`.
pub(super) async fn list_tasks(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    Query(filter): Query<TaskFilter>,
) -> Answer<Vec<TaskView>> {
    own_job(&api, &caller, id).await?;
    let state = match filter.state.as_deref() {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            Error::invalid(format!(
                "task state \"{s}\" is not known (use Queued, Running, Finished, Failed or Canceled)"
            ))
        })?),
    };
    let query = TaskQuery { job: id, after: filter.after, limit: filter.limit.unwrap_or(10_000).min(100_000), state };
    let store = api.store.clone();
    let rows = blocking(move || store.tasks(query)).await??;
    Ok(Json(rows.iter().map(TaskRow::view).collect()))
}

pub(super) async fn show_task(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path((id, index)): Path<(u64, u64)>,
) -> Answer {
    own_job(&api, &caller, id).await?;
    api.handle.ask(|r| Request::CheckTask(id, index, r)).await?;
    let store = api.store.clone();
    let row = blocking(move || store.task(id, index)).await??;
    let row = row.unwrap_or_else(|| thunderhead_core::persist::TaskRow::new(id, index));
    let view = serde_json::json!({
        "task": row.view(),
        "output": TaskOutput {
            id: format!("{id}.{index}"),
            state: row.state.name().to_string(),
            exit_code: row.exit_code,
            stdout: row.stdout.clone().unwrap_or_default(),
            stderr: row.stderr.clone().unwrap_or_default(),
        },
    });
    Ok(Json(view))
}

/// A job id for a submission to come, so its input files can go to its area first.
pub(super) async fn reserve_job(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Answer<SubmitReply> {
    ask(&api, |reply| Request::ReserveJob { owner: caller.name, reply }).await
}

/// Stores a file a client stages as a task input, in the job's area: `jobs/JOB/inputs/PATH`.
pub(super) async fn upload_input(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(u64, String)>,
    body: Body,
) -> Answer {
    if path.split('/').any(|p| p.is_empty() || p == "..") {
        let path = thunderhead_core::text::escape(&path);
        return Err(Error::invalid(format!("upload path \"{path}\" is not a relative path")).into());
    }
    let key = format!("{}/inputs/{path}", thunderhead_core::package::job_area(id));
    let (store, key) = locate(&api, &format!("thunderhead:{key}"), FileUse::Write, Who::User(&caller, None)).await?;
    let info = store.put_stream(&key, body.into_data_stream()).await?;
    Ok(Json(serde_json::json!({"location": format!("thunderhead:{key}"), "size": info.size})))
}

/// The files a job's tasks uploaded to its area: `[{index, path, size, location}]`.
pub(super) async fn job_outputs(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Answer {
    own_job(&api, &caller, id).await?;
    let area = format!("{}/", thunderhead_core::package::job_area(id));
    let listed = api.blobs.list(&area).await?;
    let files: Vec<Value> = listed
        .into_iter()
        .filter_map(|(key, size)| {
            let rest = key.strip_prefix(&area)?;
            let (index, path) = rest.split_once('/').filter(|(i, _)| i.parse::<u64>().is_ok())?;
            Some(serde_json::json!({"index": index, "path": path, "size": size, "location": format!("thunderhead:{key}")}))
        })
        .collect();
    Ok(Json(Value::Array(files)))
}
