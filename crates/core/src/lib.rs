//! The pure domain of Thunderhead.
//!
//! Everything here is plain data and plain functions: no sockets, no files, no clock, no async.
//! Time comes in as a [`Millis`] parameter. The head node runtime feeds events into
//! [`cluster::Cluster`] and carries out the [`cluster::Effects`] it returns; the store persists
//! the [`persist::Op`]s; the scheduler is a pure function of a snapshot ([`scheduler::plan`]).

pub mod access;
pub mod availability;
pub mod cluster;
pub mod cost;
pub mod duration;
pub mod error;
pub mod feed;
pub mod job;
pub mod job_spec;
pub mod node_state;
pub mod package;
pub mod persist;
pub mod provider_rules;
pub mod proxy;
pub mod scheduler;
pub mod size;
pub mod staging;
pub mod sweep;
pub mod template;
pub mod text;
pub mod view;

pub use error::{Error, ErrorKind, Result};

/// Milliseconds since the Unix epoch. The core never reads a clock: callers pass `now`.
pub type Millis = u64;

/// Identifier of a job, assigned by the head node from 1 upwards.
pub type JobId = u64;

/// A task within a job: the sweep index for sweeps, the task number for other jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TaskKey {
    pub job: JobId,
    pub index: u64,
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.job, self.index)
    }
}
