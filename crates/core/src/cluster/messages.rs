//! What agents are sent and what they report.

use crate::{Millis, TaskKey};

/// One dispatched attempt of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TaskAttempt {
    pub key: TaskKey,
    pub attempt: u32,
}

/// What an agent needs to run one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub key: TaskKey,
    pub attempt: u32,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cores: u32,
    /// This task's inputs and outputs, `*` substituted.
    pub staging: crate::staging::Staging,
}

/// How an attempt ended, as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    pub key: TaskKey,
    pub attempt: u32,
    /// `None` when the process could not start or was killed by a signal.
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub started_at: Millis,
    pub ended_at: Millis,
    pub stdout: String,
    pub stderr: String,
    /// Why the task's inputs or outputs could not be staged: the task failed whatever its exit
    /// code.
    pub staging_error: Option<String>,
}

/// An agent introducing itself on a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub name: String,
    pub cores: u32,
    /// Attempts the agent is running or holds queued.
    pub running: Vec<TaskAttempt>,
    /// Attempts whose results the agent holds and is about to send.
    pub completed: Vec<TaskAttempt>,
    /// When the agent's machine is taken back (a batch allocation's end, less a margin); the
    /// node takes no task from then on.
    pub leaves_at: Option<Millis>,
}
