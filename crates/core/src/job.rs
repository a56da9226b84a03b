//! Jobs and tasks: what a user submits, and how a job hands out its tasks.
//!
//! A job is either a *sweep* (one command line, `*` replaced by each index of a range) or a
//! set of *tasks* with dependencies between them. Sweeps are lazy: indices that have not started
//! exist only as the part of the range past [`Job::cursor`], so a million-index sweep is one
//! record. Only started indices get a row in the store.

use crate::sweep::{self, SweepRange};
use crate::{Error, JobId, Millis, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The most tasks a job file may list (sweeps have their own limit).
pub const MAX_FILE_TASKS: usize = 100_000;
/// The most bytes the commands of a job file's tasks may hold together.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub enum Priority {
    Lowest,
    BelowNormal,
    #[default]
    Normal,
    AboveNormal,
    Highest,
}

impl Priority {
    pub const ALL: [Priority; 5] =
        [Priority::Lowest, Priority::BelowNormal, Priority::Normal, Priority::AboveNormal, Priority::Highest];

    pub fn name(self) -> &'static str {
        match self {
            Priority::Lowest => "Lowest",
            Priority::BelowNormal => "BelowNormal",
            Priority::Normal => "Normal",
            Priority::AboveNormal => "AboveNormal",
            Priority::Highest => "Highest",
        }
    }

    pub fn parse(text: &str) -> Result<Priority> {
        Priority::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(text.trim())).ok_or_else(|| {
            Error::invalid(format!(
                "priority \"{text}\" is not known (choose Lowest, BelowNormal, Normal, AboveNormal or Highest)"
            ))
        })
    }
}

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

/// One task of a job file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    pub name: String,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobSpec {
    /// One command per index of the range, task index = sweep index.
    Sweep { command: Vec<String>, range: SweepRange },
    /// Explicit tasks numbered from 1 in the order given.
    Tasks { tasks: TaskList },
}

/// The tasks of a job file, packed: a job file may list 100,000 tasks, and as separate strings
/// each would cost several small allocations (about 300 bytes a task, which the allocator keeps
/// after the job is gone). Here every name and argument lies in one text, found by offsets, and
/// dependencies are task positions. It reads and writes as a list of [`TaskDef`], as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskList {
    /// Every name and argument, one after another.
    text: String,
    /// Where each name or argument ends in `text`.
    ends: Vec<u32>,
    /// For each task, its first string (its name; its arguments follow) in `ends`, and one more
    /// entry past the last task.
    first: Vec<u32>,
    /// For each task, where its dependencies start in `deps`, and one more past the last.
    dep_start: Vec<u32>,
    /// Positions of the tasks each task depends on.
    deps: Vec<u32>,
}

impl TaskList {
    /// Packs `defs`; a dependency on a name that is not in the list is left out (validation
    /// refuses those before).
    pub fn new(defs: &[TaskDef]) -> TaskList {
        let position: HashMap<&str, u32> = defs.iter().enumerate().map(|(i, t)| (t.name.as_str(), i as u32)).collect();
        let bytes: usize = defs.iter().map(|t| t.name.len() + t.command.iter().map(String::len).sum::<usize>()).sum();
        let mut list = TaskList {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(defs.iter().map(|t| 1 + t.command.len()).sum()),
            first: Vec::with_capacity(defs.len() + 1),
            dep_start: Vec::with_capacity(defs.len() + 1),
            deps: Vec::new(),
        };
        for t in defs {
            list.first.push(list.ends.len() as u32);
            list.dep_start.push(list.deps.len() as u32);
            for part in std::iter::once(&t.name).chain(&t.command) {
                list.text.push_str(part);
                list.ends.push(list.text.len() as u32);
            }
            list.deps.extend(t.depends_on.iter().filter_map(|d| position.get(d.as_str()).copied()));
        }
        list.first.push(list.ends.len() as u32);
        list.dep_start.push(list.deps.len() as u32);
        list
    }

    pub fn len(&self) -> usize {
        self.first.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn part(&self, n: usize) -> &str {
        let start = if n == 0 { 0 } else { self.ends[n - 1] as usize };
        &self.text[start..self.ends[n] as usize]
    }

    /// The name of task `i` (0-based).
    pub fn name(&self, i: usize) -> &str {
        self.part(self.first[i] as usize)
    }

    /// The command of task `i` (0-based); empty when there is no such task.
    pub fn command(&self, i: usize) -> Vec<String> {
        if i >= self.len() {
            return Vec::new();
        }
        (self.first[i] as usize + 1..self.first[i + 1] as usize).map(|n| self.part(n).to_string()).collect()
    }

    /// The positions of the tasks task `i` depends on.
    pub fn depends_on(&self, i: usize) -> &[u32] {
        &self.deps[self.dep_start[i] as usize..self.dep_start[i + 1] as usize]
    }

    /// Task `i` as it was submitted.
    pub fn def(&self, i: usize) -> TaskDef {
        TaskDef {
            name: self.name(i).to_string(),
            command: self.command(i),
            depends_on: self.depends_on(i).iter().map(|&d| self.name(d as usize).to_string()).collect(),
        }
    }
}

impl Serialize for TaskList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for i in 0..self.len() {
            seq.serialize_element(&self.def(i))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TaskList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<TaskList, D::Error> {
        Ok(TaskList::new(&Vec::<TaskDef>::deserialize(deserializer)?))
    }
}

/// A job as submitted by a client (`job submit`, or a JSON/TOML job file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JobSubmission {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub cores_per_task: Option<u32>,
    #[serde(default)]
    pub retries: Option<u32>,
    /// The command of a single task or of a sweep.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// `START-END[:STEP]`: makes the job a sweep over `command`.
    #[serde(default)]
    pub sweep: Option<String>,
    /// Explicit tasks, instead of `command`.
    #[serde(default)]
    pub tasks: Option<Vec<TaskDef>>,
    /// `SOURCE[:LOCAL_PATH]` files fetched into each task's directory before it runs.
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
    /// `GLOB[:BLOB_PREFIX]` files uploaded after each task ends.
    #[serde(default)]
    pub outputs: Option<Vec<String>>,
    /// `success` (default), `failure` or `always`: when outputs are uploaded.
    #[serde(default)]
    pub upload_on: Option<String>,
    /// A job id reserved beforehand (to stage the job's files in its area first).
    #[serde(default)]
    pub reserved_id: Option<JobId>,
    /// The user who submits it: set by the head node from the caller's token, never by clients.
    #[serde(skip)]
    pub owner: String,
}

/// A submission that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidJob {
    pub name: String,
    pub owner: String,
    pub priority: Priority,
    pub cores_per_task: u32,
    pub retries: u32,
    pub spec: JobSpec,
    pub staging: crate::staging::Staging,
}

pub const DEFAULT_RETRIES: u32 = 3;
/// The most times a task may be retried.
pub const MAX_RETRIES: u32 = 1_000;
/// The most cores one task may ask for.
pub const MAX_CORES_PER_TASK: u32 = 65_536;
/// The most arguments a command line may have.
pub const MAX_COMMAND_ARGS: usize = 4_096;
/// The most bytes a command line may have, all arguments together (Linux takes 128 KiB per
/// argument and about 2 MiB in all; an index substituted into a sweep's command adds to it).
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;
/// The most input or output staging entries a job may have.
pub const MAX_STAGING_ENTRIES: usize = 1_000;
/// The longest job or task name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Checks a command line against the limits, naming `what` it belongs to.
fn check_command(command: &[String], what: &str) -> Result<()> {
    if command.is_empty() || command[0].is_empty() {
        return Err(Error::invalid(format!(
            "{what} has no command (give the program and its arguments, e.g. -- echo hello)"
        )));
    }
    if command.len() > MAX_COMMAND_ARGS {
        return Err(Error::invalid(format!(
            "{what} has a command of {} arguments, more than the limit of {MAX_COMMAND_ARGS} (pass long lists in an \
             input file)",
            command.len()
        )));
    }
    let bytes: usize = command.iter().map(String::len).sum();
    if bytes > MAX_COMMAND_BYTES {
        return Err(Error::invalid(format!(
            "{what} has a command of {bytes} bytes, more than the limit of {MAX_COMMAND_BYTES} (pass long text in an \
             input file)"
        )));
    }
    if let Some(arg) = command.iter().find(|a| a.contains('\0')) {
        return Err(Error::invalid(format!(
            "{what} has an argument with a NUL character (\"{}\"), which no program can receive (remove it)",
            crate::text::escape(arg)
        )));
    }
    Ok(())
}

impl JobSubmission {
    pub fn validate(self) -> Result<ValidJob> {
        let priority = match &self.priority {
            Some(p) => Priority::parse(p)?,
            None => Priority::Normal,
        };
        let cores_per_task = self.cores_per_task.unwrap_or(1);
        if cores_per_task == 0 {
            return Err(Error::invalid("cores per task 0 is not allowed (a task needs at least 1 core)"));
        }
        if cores_per_task > MAX_CORES_PER_TASK {
            return Err(Error::invalid(format!(
                "cores per task {cores_per_task} is more than the limit of {MAX_CORES_PER_TASK} (ask for fewer cores)"
            )));
        }
        let retries = self.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > MAX_RETRIES {
            return Err(Error::invalid(format!(
                "retries {retries} is more than the limit of {MAX_RETRIES} (a task that fails that often will not \
                 succeed; fix it and requeue)"
            )));
        }
        for (what, entries) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            let count = entries.as_ref().map_or(0, Vec::len);
            if count > MAX_STAGING_ENTRIES {
                return Err(Error::invalid(format!(
                    "the job has {count} {what}, more than the limit of {MAX_STAGING_ENTRIES} (use a glob or an \
                     archive)"
                )));
            }
        }
        let spec = match (self.command, self.tasks) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "a job has either a command (with an optional sweep) or a list of tasks, not both",
                ));
            }
            (None, None) => {
                return Err(Error::invalid(
                    "the job has no command and no tasks (give -- COMMAND ARGS, or a job file with [[tasks]])",
                ));
            }
            (Some(command), None) => {
                check_command(&command, "the job")?;
                match &self.sweep {
                    Some(range) => {
                        let range = SweepRange::parse(range)?;
                        sweep::check_pattern(&command)?;
                        JobSpec::Sweep { command, range }
                    }
                    None => {
                        let task = TaskDef { name: "task".into(), command, depends_on: vec![] };
                        JobSpec::Tasks { tasks: TaskList::new(&[task]) }
                    }
                }
            }
            (None, Some(tasks)) => {
                if self.sweep.is_some() {
                    return Err(Error::invalid(
                        "a sweep applies to the job's command; a job with a list of tasks cannot have one",
                    ));
                }
                validate_tasks(&tasks)?;
                JobSpec::Tasks { tasks: TaskList::new(&tasks) }
            }
        };
        let name = self.name.unwrap_or_else(|| default_name(&spec));
        crate::text::check_line("job name", &name, MAX_NAME_CHARS)?;
        let staging = crate::staging::Staging {
            inputs: self.inputs.iter().flatten().map(|i| crate::staging::parse_input(i)).collect::<Result<_>>()?,
            outputs: self.outputs.iter().flatten().map(|o| crate::staging::parse_output(o)).collect::<Result<_>>()?,
            upload_on: match &self.upload_on {
                Some(u) => crate::staging::UploadOn::parse(u)?,
                None => Default::default(),
            },
        };
        Ok(ValidJob { name, owner: self.owner, priority, cores_per_task, retries, spec, staging })
    }
}

fn default_name(spec: &JobSpec) -> String {
    match spec {
        JobSpec::Sweep { command, .. } => command[0].rsplit('/').next().unwrap_or("job").to_string(),
        JobSpec::Tasks { tasks } if tasks.len() == 1 => {
            tasks.command(0).first().and_then(|p| p.rsplit('/').next()).unwrap_or("job").to_string()
        }
        JobSpec::Tasks { .. } => "job".to_string(),
    }
}

fn validate_tasks(tasks: &[TaskDef]) -> Result<()> {
    if tasks.is_empty() {
        return Err(Error::invalid("the job file lists no tasks (add at least one [[tasks]] entry)"));
    }
    if tasks.len() > MAX_FILE_TASKS {
        return Err(Error::invalid(format!(
            "the job file lists {} tasks, more than the limit of {MAX_FILE_TASKS} (use a sweep for many similar tasks)",
            tasks.len()
        )));
    }
    let mut names = HashMap::new();
    let mut bytes = 0usize;
    let mut edges = 0usize;
    for (i, t) in tasks.iter().enumerate() {
        crate::text::check_line("task name", &t.name, MAX_NAME_CHARS)?;
        check_command(&t.command, &format!("task \"{}\"", t.name))?;
        bytes += t.command.iter().map(String::len).sum::<usize>();
        edges += t.depends_on.len();
        if bytes > MAX_FILE_BYTES {
            return Err(Error::invalid(format!(
                "the job file's commands hold more than {MAX_FILE_BYTES} bytes in all (use a sweep, or pass long \
                 text in input files)"
            )));
        }
        if edges > MAX_FILE_TASKS * 10 {
            return Err(Error::invalid(format!(
                "the job file lists more than {} dependencies (at most 10 a task on average)",
                MAX_FILE_TASKS * 10
            )));
        }
        if names.insert(t.name.as_str(), i).is_some() {
            return Err(Error::invalid(format!("task name \"{}\" is used twice (task names must be unique)", t.name)));
        }
    }
    for t in tasks {
        for d in &t.depends_on {
            if !names.contains_key(d.as_str()) {
                return Err(Error::invalid(format!(
                    "task \"{}\" depends on \"{d}\", which is not a task of this job",
                    t.name
                )));
            }
        }
    }
    // Kahn's algorithm: what cannot be ordered is on a cycle.
    let deps: Vec<Vec<usize>> =
        tasks.iter().map(|t| t.depends_on.iter().map(|d| names[d.as_str()]).collect()).collect();
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); tasks.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..tasks.len()).filter(|&i| remaining[i] == 0).collect();
    let mut ordered = 0;
    while let Some(i) = ready.pop() {
        ordered += 1;
        for &j in &dependents[i] {
            remaining[j] -= 1;
            if remaining[j] == 0 {
                ready.push(j);
            }
        }
    }
    if ordered < tasks.len() {
        let on_cycle = tasks.iter().zip(&remaining).find(|(_, r)| **r > 0).map(|(t, _)| t.name.as_str()).unwrap_or("?");
        return Err(Error::invalid(format!(
            "the task dependencies form a cycle through \"{on_cycle}\" (remove one of the depends_on entries)"
        )));
    }
    Ok(())
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

    #[test]
    fn a_packed_task_list_reads_and_writes_as_the_list_it_was() {
        let defs = vec![
            TaskDef {
                name: "prep".into(),
                command: vec!["sh".into(), "-c".into(), "echo ✓ > a".into()],
                depends_on: vec![],
            },
            TaskDef {
                name: "empty-arg".into(),
                command: vec!["echo".into(), String::new()],
                depends_on: vec!["prep".into()],
            },
            TaskDef {
                name: "last".into(),
                command: vec!["cat".into()],
                depends_on: vec!["prep".into(), "empty-arg".into()],
            },
        ];
        let list = TaskList::new(&defs);
        assert_eq!(list.len(), 3);
        assert_eq!((0..3).map(|i| list.def(i)).collect::<Vec<_>>(), defs);
        assert_eq!(list.depends_on(2), &[0, 1]);
        assert_eq!(list.command(3), Vec::<String>::new(), "no such task");
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, serde_json::to_string(&defs).unwrap(), "stored as before");
        assert_eq!(serde_json::from_str::<TaskList>(&json).unwrap(), list);
        assert!(TaskList::new(&[]).is_empty());
    }

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
    fn bad_priority_and_zero_cores_are_refused() {
        let err =
            JobSubmission { priority: Some("Urgent".into()), command: Some(vec!["x".into()]), ..Default::default() }
                .validate()
                .unwrap_err();
        assert!(err.message.contains("\"Urgent\"") && err.message.contains("AboveNormal"), "{err}");
        let err = JobSubmission { cores_per_task: Some(0), command: Some(vec!["x".into()]), ..Default::default() }
            .validate()
            .unwrap_err();
        assert!(err.message.contains("at least 1"), "{err}");
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
