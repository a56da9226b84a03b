//! What the head node writes to its store, as plain data.
//!
//! Event handlers push [`Op`]s; the runtime commits every op of a batch of events in one
//! transaction before it answers any client or agent about that batch. A [`Snapshot`] is what
//! a restarted head node reads back.

use crate::job::{JobSpec, JobState, Priority, TaskCounts, TaskState};
use crate::node_state::{Health, NodeState};
use crate::size::NodeSize;
use crate::template::Template;
use crate::{JobId, Millis};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    PutTemplate(Template),
    DeleteTemplate(String),
    /// The last number used in a naming series (never reused).
    PutSeries {
        prefix: String,
        last: u64,
    },
    PutNode(NodeRecord),
    DeleteNode(String),
    NodeLog {
        node: String,
        at: Millis,
        message: String,
    },
    InsertJob(JobRecord),
    JobProgress(JobProgress),
    /// Inserts or replaces the row of one task.
    PutTask(TaskRow),
    /// Inserts or replaces a stretch of paid time.
    PutUsage(crate::cost::Usage),
    PutProxy(crate::proxy::ProxyRecord),
    DeleteProxy(String),
    PutPackage(crate::package::Package),
    DeletePackage {
        name: String,
        version: u32,
    },
    PutUser(crate::access::UserRecord),
    DeleteUser(String),
    PutJoinToken(crate::access::JoinTokenRecord),
    DeleteJoinToken(String),
    PutNodeCert(crate::access::NodeCertRecord),
}

fn first_owner() -> String {
    crate::access::ADMIN.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub template: Option<String>,
    pub size: Option<NodeSize>,
    pub cores: u32,
    pub state: NodeState,
    pub health: Health,
    /// The provider's handle to the deployment, opaque to the core.
    pub handle: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub name: String,
    /// Jobs stored before users existed belong to the administrator.
    #[serde(default = "first_owner")]
    pub owner: String,
    pub priority: Priority,
    pub cores_per_task: u32,
    pub retries: u32,
    pub spec: JobSpec,
    #[serde(default)]
    pub staging: crate::staging::Staging,
    pub state: JobState,
    pub submitted_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub cursor: u64,
    pub counts: TaskCounts,
    #[serde(default)]
    pub core_ms: u64,
    #[serde(default)]
    pub cost_micros: std::collections::BTreeMap<String, u64>,
}

/// The parts of a job record that change while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    pub id: JobId,
    pub state: JobState,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub cursor: u64,
    pub counts: TaskCounts,
    #[serde(default)]
    pub core_ms: u64,
    #[serde(default)]
    pub cost_micros: std::collections::BTreeMap<String, u64>,
    /// When this progress was made; stores keep a sample of the cost over time from it.
    #[serde(default)]
    pub at: Millis,
}

/// The stored row of a task that has started at least once (sweeps), or of every task
/// (jobs with explicit tasks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRow {
    pub job: JobId,
    pub index: u64,
    pub state: TaskState,
    /// 0 before the first dispatch.
    pub attempt: u32,
    /// How often the task was requeued because its node was lost.
    pub losses: u32,
    pub node: Option<String>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

impl TaskRow {
    /// What the API shows of the row (its output is shown on its own).
    pub fn view(&self) -> crate::view::TaskView {
        crate::view::TaskView {
            id: format!("{}.{}", self.job, self.index),
            job: self.job,
            index: self.index,
            state: self.state.name().to_string(),
            attempt: self.attempt,
            node: self.node.clone(),
            exit_code: self.exit_code,
            message: self.message.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
        }
    }

    pub fn new(job: JobId, index: u64) -> TaskRow {
        TaskRow {
            job,
            index,
            state: TaskState::Queued,
            attempt: 0,
            losses: 0,
            node: None,
            exit_code: None,
            message: None,
            started_at: None,
            ended_at: None,
            stdout: None,
            stderr: None,
        }
    }
}

/// Everything a head node needs to resume.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub templates: Vec<Template>,
    pub series: Vec<(String, u64)>,
    pub nodes: Vec<NodeRecord>,
    /// Every job; the terminal ones only as history.
    pub jobs: Vec<JobRecord>,
    /// Rows of tasks of unfinished jobs that are queued again or running, and every row of
    /// unfinished jobs with explicit tasks.
    pub active_tasks: Vec<TaskRow>,
    /// Paid stretches that have not ended.
    pub open_usage: Vec<crate::cost::Usage>,
    /// The id the next usage record gets.
    pub next_usage: u64,
    pub proxies: Vec<crate::proxy::ProxyRecord>,
    pub packages: Vec<crate::package::Package>,
    pub users: Vec<crate::access::UserRecord>,
    pub join_tokens: Vec<crate::access::JoinTokenRecord>,
    pub node_certs: Vec<crate::access::NodeCertRecord>,
}
