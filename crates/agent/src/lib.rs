//! The compute-node agent: connects to the head node, runs the tasks it is given, reports.
//!
//! The agent keeps working while the head node is away: tasks keep running, results wait in an
//! on-disk outbox (`WORK_DIR/outbox`) until the head node acknowledges them, and the agent
//! reconnects with backoff. Tasks run directly (no shell) in their own process group with
//! standard output and error written to files; the agent is a child subreaper, so processes a
//! task leaves behind are reaped, and when a task ends or is canceled its whole group is killed
//! and so is every process of it that left the group (`stray`). A task gets only the
//! documented environment ([`task_env`]), and may run as another Unix user ([`task_user`]).
//!
//! The agent's process must have no child of its own besides its tasks: every child that is
//! not a running task's is killed as a stray.

pub mod archive;
mod event_loop;
mod event_sources;
mod held_tasks;
mod install;
pub mod join_grant;
mod joining;
mod light_agent;
pub mod link;
mod metrics;
mod outbox;
mod reaper;
mod relay;
mod staging;
mod stray;
mod task_dir;
pub mod task_env;
mod task_lifecycle;
mod task_phase;
mod task_spec;
pub mod task_user;

pub use staging::{encode_query, glob_match};

pub use event_loop::{AgentConfig, AgentError, run};
pub use join_grant::JoinGrant;
pub use light_agent::run_light;
pub use relay::{ProxyConfig, run_proxy};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
