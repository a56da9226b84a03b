//! What the API returns and accepts, with stable field names that scripts rely on.

use crate::job::{JobSpec, TaskCounts};
use crate::{JobId, Millis};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateView {
    pub name: String,
    pub provider: String,
    pub description: String,
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Number of nodes added from this template.
    pub nodes: u64,
    /// Cores of those nodes.
    pub node_cores: u32,
    /// Cores the provider account may run at once, proxies included.
    pub quota_cores: u32,
    /// Proxies a started set deploys (Small, one core each).
    pub proxies: u32,
    /// The prefix of the names of new nodes.
    pub series_prefix: String,
    /// Deployments started per minute, at most.
    pub deploy_rate: u32,
    /// Times a failed deployment of a node is tried again.
    pub deploy_retries: u32,
    /// Consecutive failed deployments after which the template pauses itself.
    pub pause_after_failures: u32,
    /// Why the template paused itself; `null` while it deploys.
    pub paused: Option<String>,
    /// Hourly prices in millionths by size name, where they differ from the 2011 list prices.
    pub rates: std::collections::BTreeMap<String, u64>,
    pub currency: String,
    /// The set's proxies while it is started.
    pub proxy_list: Vec<crate::proxy::ProxyView>,
    /// Package versions its nodes install instead of the newest, by package name.
    #[serde(default)]
    pub pins: std::collections::BTreeMap<String, u32>,
    /// Where its packages are kept; `null` for the head node's store.
    pub blob_store: Option<String>,
    /// `{"policy": "manual"}` or `{"policy": "schedule", "windows": [...], "timezone", "lead_time",
    /// "drain_before_end"}` (times in milliseconds).
    pub availability: crate::availability::Availability,
    /// How long a deployed node may take until its agent connects, in milliseconds; `null` for
    /// the head node's default.
    #[serde(default)]
    pub boot_timeout: Option<Millis>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    /// `null` for on-premises nodes.
    pub template: Option<String>,
    pub size: Option<String>,
    pub cores: u32,
    pub state: String,
    pub health: String,
    /// Whether the node's agent is connected right now.
    pub connected: bool,
    pub running_tasks: u64,
    pub cores_in_use: u32,
    /// When the node entered its state.
    pub since: Option<Millis>,
    /// Why a node is `Unknown`.
    pub cause: Option<String>,
    /// The packages it installed, `name@version`.
    pub packages: Vec<String>,
    /// The tasks running there, `JOB.INDEX`.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// What its agent last measured: CPU use of the machine in percent, and memory in MiB;
    /// `null` until an agent reports (and for agents that do not measure).
    #[serde(default)]
    pub cpu_percent: Option<u8>,
    #[serde(default)]
    pub memory_used_mb: Option<u64>,
    #[serde(default)]
    pub memory_total_mb: Option<u64>,
}

/// What an agent measures of its machine with each heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetrics {
    pub cpu_percent: u8,
    pub memory_used_mb: u64,
    pub memory_total_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddNodes {
    pub template: String,
    pub count: u32,
    pub size: String,
}

pub use crate::node_state::NodeAction;

/// A node operation on a set (`template`) or on named nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeActionRequest {
    pub action: NodeAction,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub names: Vec<String>,
    /// For `offline`: requeue running tasks instead of draining.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeActionResult {
    pub node: String,
    pub ok: bool,
    /// The node's state after the action, or why the action was refused for it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLogEntry {
    pub at: Millis,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: JobId,
    pub name: String,
    /// The user who submitted it.
    #[serde(default)]
    pub owner: String,
    pub state: String,
    pub priority: String,
    pub cores_per_task: u32,
    pub retries: u32,
    /// Number of tasks per state.
    pub tasks: TaskCounts,
    /// Core-hours its tasks ran.
    pub core_hours: f64,
    /// What its tasks cost on burst nodes, per currency (core-time at each node's price).
    pub cost: std::collections::BTreeMap<String, f64>,
    pub total_tasks: u64,
    pub spec: JobSpecView,
    pub submitted_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
}

/// The most tasks of a job file a job's view lists.
pub const SHOWN_TASKS: usize = 10;

/// What a job runs, as answers show it: a sweep's command and range, or how many tasks a job
/// file lists with the first [`SHOWN_TASKS`] of them (the whole list can hold 100,000, and
/// every answer about the job would carry it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobSpecView {
    Sweep { command: Vec<String>, range: crate::sweep::SweepRange },
    Tasks { count: u64, tasks: Vec<crate::job::TaskDef> },
}

impl From<&JobSpec> for JobSpecView {
    fn from(spec: &JobSpec) -> JobSpecView {
        match spec {
            JobSpec::Sweep { command, range } => JobSpecView::Sweep { command: command.clone(), range: *range },
            JobSpec::Tasks { tasks } => JobSpecView::Tasks {
                count: tasks.len() as u64,
                tasks: (0..tasks.len().min(SHOWN_TASKS)).map(|i| tasks.def(i)).collect(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitReply {
    pub id: JobId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// `JOB.INDEX`
    pub id: String,
    pub job: JobId,
    pub index: u64,
    pub state: String,
    pub attempt: u32,
    pub node: Option<String>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOutput {
    pub id: String,
    pub state: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The body of every error answer of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub kind: crate::ErrorKind,
    pub message: String,
}

/// What `thunderhead cost` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// The period, in milliseconds since the epoch.
    pub since: Millis,
    pub until: Millis,
    /// Node-hours, proxy-hours and cost per set.
    pub sets: Vec<crate::cost::SetCost>,
    /// Core-hours and cost attributed to each job.
    pub jobs: Vec<JobCost>,
    /// What the sets cost (or, with a job filter, what that job cost), per currency.
    pub total: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobCost {
    pub id: JobId,
    pub name: String,
    pub core_hours: f64,
    pub cost: std::collections::BTreeMap<String, f64>,
}

/// One version of a package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageView {
    pub name: String,
    pub version: u32,
    /// How many versions of the package there are.
    pub versions: u32,
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
    /// `null` for packages every template installs.
    pub template: Option<String>,
    pub uploaded_at: Millis,
}

/// A provider of this build, as it declares itself: what `provider list` and `provider show`
/// print. Settings are listed by name and kind only, secrets included; no value is involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderView {
    pub name: String,
    /// What it deploys, in one line.
    pub summary: String,
    /// Whether this build deploys its nodes; templates of the others are checked and kept.
    pub deployable: bool,
    /// Whether its started sets run proxies that their agents reach the head node through.
    pub proxies: bool,
    /// The version of the deployment handles it writes.
    pub handle_version: u64,
    /// Its own sizes; `null` for the standard sizes and their list prices.
    pub sizes: Option<Vec<ProviderSizeView>>,
    /// The settings a template of it takes, in the order it declares them.
    pub settings: Vec<SettingView>,
}

/// A size of its own that a provider offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSizeView {
    pub name: String,
    pub cores: u32,
}

/// One setting a provider takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingView {
    pub name: String,
    /// `text`, `number`, `duration`, `bool`, `file` or `secret` (given with its own option and
    /// sealed by the head node, never as a plain setting).
    pub kind: String,
    /// What applies when a template does not set it; `null` for nothing.
    pub default: Option<String>,
    /// The rule a value follows, in one line.
    pub rule: String,
}
