//! What a handler asks of the runtime: ops to commit, then commands to carry out.

use super::SessionId;
use super::messages::{Dispatch, TaskAttempt};
use crate::persist::Op;
use crate::size::NodeSize;
use crate::template::Template;

/// What the runtime must do after the ops of the batch are committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Assign {
        session: SessionId,
        tasks: Vec<Dispatch>,
    },
    Cancel {
        session: SessionId,
        tasks: Vec<TaskAttempt>,
    },
    Ack {
        session: SessionId,
        tasks: Vec<TaskAttempt>,
    },
    /// The agent must end its tasks and exit: its node is being stopped.
    Shutdown {
        session: SessionId,
    },
    /// Close a connection that was replaced or refused.
    Disconnect {
        session: SessionId,
        reason: String,
    },
    /// Deploy a node whose agent connects through `via` (the set's proxies).
    Deploy {
        node: String,
        template: Template,
        size: NodeSize,
        via: Vec<String>,
    },
    /// Deploy a proxy, on `address` if it had one before.
    DeployProxy {
        proxy: String,
        template: Template,
        address: Option<String>,
    },
    RemoveProxy {
        proxy: String,
        template: Template,
        handle: serde_json::Value,
    },
    /// Install these packages on the agent.
    Install {
        session: SessionId,
        packages: Vec<crate::package::Package>,
    },
    Remove {
        node: String,
        template: Template,
        handle: serde_json::Value,
    },
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    pub ops: Vec<Op>,
    pub commands: Vec<Command>,
}
