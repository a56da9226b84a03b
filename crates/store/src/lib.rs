//! Durable state of the head node behind one trait, [`Store`].
//!
//! The head node applies each batch of [`Op`]s in one transaction with [`Store::apply`] before it
//! acknowledges anything in that batch, and reads everything back with [`Store::load`] when it
//! starts. Queries that would be too large to keep in memory (task rows, node logs) are read
//! from the store directly. [`sqlite::SqliteStore`] is the embedded engine.

pub mod sqlite;

use thunderhead_core::JobId;
use thunderhead_core::job::TaskState;
use thunderhead_core::persist::{Op, Snapshot, TaskRow};
use thunderhead_core::view::NodeLogEntry;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database was written by a newer Thunderhead; fatal until the binary is upgraded.
    #[error(
        "the database {path} has schema version {found}, newer than the {supported} this thunderhead knows (upgrade thunderhead, or use another --state-dir)"
    )]
    NewerVersion { path: String, found: i64, supported: i64 },
    /// The file is damaged or is not a Thunderhead database; fatal.
    #[error(
        "the database {path} is damaged or not a Thunderhead database ({reason}); restore it from a backup or use another --state-dir"
    )]
    Corrupt { path: String, reason: String },
    /// Any other failure of the engine (disk full, I/O error); may succeed when retried.
    #[error("database error: {0}")]
    Engine(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A page of task rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskQuery {
    pub job: JobId,
    /// Only indices greater than this.
    pub after: Option<u64>,
    pub limit: u32,
    pub state: Option<TaskState>,
}

/// Durable state of a head node. Implementations are safe to call from several threads: one
/// writer applies batches while readers answer queries.
pub trait Store: Send + Sync {
    /// Everything a restarting head node needs.
    fn load(&self) -> Result<Snapshot>;
    /// Applies every op in one transaction; when it returns `Ok`, the ops are durable.
    fn apply(&self, ops: &[Op]) -> Result<()>;
    /// Task rows without their output, ordered by index.
    fn tasks(&self, query: TaskQuery) -> Result<Vec<TaskRow>>;
    /// One task row with its output.
    fn task(&self, job: JobId, index: u64) -> Result<Option<TaskRow>>;
    /// The lifecycle log of a node, oldest first.
    fn node_log(&self, node: &str) -> Result<Vec<NodeLogEntry>>;
    /// Paid stretches that lasted past `since` (milliseconds since the epoch), oldest first.
    fn usage(&self, since: u64) -> Result<Vec<thunderhead_core::cost::Usage>>;
    /// Samples of each job's running cost up to `until`: the last one at or before `since` and
    /// every later one, ordered by job, then time.
    fn job_cost(&self, since: u64, until: u64) -> Result<Vec<thunderhead_core::cost::JobCostSample>>;
    /// Checks the database's own consistency.
    fn integrity_check(&self) -> Result<()>;
}

#[cfg(test)]
mod contract;
