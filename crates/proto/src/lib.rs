//! Messages between the head node and its agents, version 1.
//!
//! Agents open a WebSocket to `/agent/v1` and exchange JSON text frames, one message per frame.
//! The first message of a connection is [`AgentMsg::Hello`], carrying [`PROTOCOL_VERSION`]; the
//! head node answers [`ServerMsg::Welcome`] or [`ServerMsg::Refused`]. Every dispatch names its
//! attempt, and an agent keeps each result in an on-disk outbox until the head node
//! acknowledges it, so a result is never lost and never counted twice.

use serde::{Deserialize, Serialize};

/// The version of this protocol. A head node refuses agents that speak another major version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The most bytes one message may have; larger frames close the connection.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The path agents connect to.
pub const AGENT_PATH: &str = "/agent/v1";

/// One attempt of one task: `job.index`, attempt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    pub job: u64,
    pub index: u64,
    pub attempt: u32,
}

impl std::fmt::Display for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}#{}", self.job, self.index, self.attempt)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub task: TaskRef,
    /// Program and arguments, run directly (not through a shell).
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cores: u32,
    /// `(source, local path)`: fetched from `GET /agent/v1/blobs?location=SOURCE` before the task.
    #[serde(default)]
    pub inputs: Vec<(String, String)>,
    /// `(glob, prefix)`: matching files uploaded to `PUT /agent/v1/blobs?location=PREFIX+PATH`.
    #[serde(default)]
    pub outputs: Vec<(String, String)>,
    /// `success`, `failure` or `always`.
    #[serde(default)]
    pub upload_on: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: TaskRef,
    /// `None` if the process could not start or was killed by a signal.
    pub exit_code: Option<i32>,
    /// Why the task failed without an exit code, e.g. `cannot start "foo": not found`.
    pub message: Option<String>,
    pub started_at: u64,
    pub ended_at: u64,
    /// The last bytes of standard output and error (at most [`OUTPUT_TAIL_BYTES`] each).
    pub stdout: String,
    pub stderr: String,
    /// Why an input could not be fetched (the task did not run) or an output not uploaded.
    #[serde(default)]
    pub staging_error: Option<String>,
}

/// A package an agent installs: fetched from `GET /agent/v1/blobs/{key}` on the head node and
/// checked against its size and SHA-256 before it is unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub version: u32,
    pub key: String,
    /// Where to fetch it: `GET /agent/v1/blobs?location=LOCATION`.
    #[serde(default)]
    pub location: String,
    pub sha256: String,
    pub size: u64,
}

/// How one package installed; `error` says why it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallResult {
    pub name: String,
    pub version: u32,
    pub error: Option<String>,
}

/// The path agents fetch blobs from.
pub const BLOB_PATH: &str = "/agent/v1/blobs";

/// Where an agent without a node certificate trades its join token for one.
pub const JOIN_PATH: &str = "/agent/v1/join";

/// The name every head node certificate carries, and the one agents check: they may reach the
/// head node through relays at any address, but only the head node holds a certificate of
/// the cluster's authority with this name.
pub const HEAD_NAME: &str = "thunderhead-head";

/// What an agent sends to [`JOIN_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    pub name: String,
}

/// The node certificate and its private key (PEM), and the cluster's authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReply {
    pub certificate: String,
    pub key: String,
    pub ca: String,
}

/// How much of a task's standard output and error the head node keeps.
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMsg {
    Hello {
        protocol: u32,
        agent_version: String,
        name: String,
        cores: u32,
        /// Attempts running or queued on the agent.
        running: Vec<TaskRef>,
        /// Attempts whose results wait in the outbox; they follow right after.
        completed: Vec<TaskRef>,
        /// When the agent's machine is taken back (a batch allocation's time limit, less a
        /// margin), in milliseconds since the Unix epoch: the node takes no task from then on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leaves_at: Option<u64>,
    },
    Results {
        results: Vec<TaskResult>,
    },
    /// The outcome of an `install`.
    Installed {
        results: Vec<InstallResult>,
    },
    /// The agent is alive; it sends what it measured of its machine, if it measures.
    Heartbeat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metrics: Option<Metrics>,
    },
}

/// What an agent measured of its machine: CPU use since the last heartbeat, and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    pub cpu_percent: u8,
    pub memory_used_mb: u64,
    pub memory_total_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Welcome {
        node: String,
        heartbeat_secs: u32,
    },
    Refused {
        reason: String,
    },
    Assign {
        tasks: Vec<Assignment>,
    },
    /// Kill these attempts (with their process groups) or drop them from the queue.
    Cancel {
        tasks: Vec<TaskRef>,
    },
    /// These results are durable on the head node: delete them from the outbox.
    Ack {
        tasks: Vec<TaskRef>,
    },
    /// The node is being stopped: kill every task and exit.
    Shutdown,
    /// Install these packages (replacing older versions), then answer `installed`.
    Install {
        packages: Vec<PackageRef>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes is larger than the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

pub fn encode<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).expect("protocol messages always serialise")
}

pub fn decode<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, DecodeError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(text.len()));
    }
    Ok(serde_json::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_a_type_tag() {
        let msg = AgentMsg::Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            name: "n1".into(),
            cores: 2,
            running: vec![TaskRef { job: 1, index: 7, attempt: 2 }],
            completed: vec![],
            leaves_at: Some(1_800_000_000_000),
        };
        let text = encode(&msg);
        assert!(text.starts_with(r#"{"type":"hello""#), "{text}");
        assert_eq!(decode::<AgentMsg>(&text).unwrap(), msg);
        // An agent of an earlier build says nothing of when its machine is taken back.
        let earlier = r#"{"type":"hello","protocol":1,"agent_version":"0.1.0","name":"n1","cores":2,"running":[],"completed":[]}"#;
        assert!(matches!(decode::<AgentMsg>(earlier).unwrap(), AgentMsg::Hello { leaves_at: None, .. }));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert!(matches!(decode::<ServerMsg>("{\"type\":\"nope\"}"), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode::<ServerMsg>("not json"), Err(DecodeError::Malformed(_))));
    }
}
