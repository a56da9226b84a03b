//! What a user asks a job to do: a sweep or a set of tasks, with its limits and their checks.
//!
//! A job is either a *sweep* (one command line, `*` replaced by each index of a range) or a
//! set of *tasks* with dependencies between them. [`JobSubmission::validate`] checks a
//! submission against every limit and makes the [`ValidJob`] a [`crate::job::Job`] is made from.

use crate::sweep::{self, SweepRange};
use crate::{Error, JobId, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
}
