//! The node lifecycle: state and health, two separate axes, as in HPC Pack.
//!
//! ```text
//! NotDeployed --Start--> Provisioning --AgentJoined--> Offline --BringOnline--> Online
//!      ^                    |  Failed                     ^  <--TakeOffline(force)-- |
//!      |                    v                             |                          | TakeOffline
//!      +--Removed-- Stopping <--Stop-- (any deployed)   Offline <--Drained-- Draining <+
//!                                                        Unknown <--Lost/Failed--
//! ```
//!
//! A node's *state* says where it is in its lifecycle; its *health* says whether it may take
//! work. Only `Online` nodes with health `OK` get tasks. Transitions go through
//! [`NodeState::apply`], the one place that decides which moves are legal.

use crate::Millis;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum NodeState {
    /// Added to the cluster, nothing deployed.
    NotDeployed,
    /// The provider is deploying the node; waiting for its agent to connect.
    Provisioning { since: Millis },
    /// The agent is connected; the node takes no work.
    Offline { since: Millis },
    /// The node takes work.
    Online { since: Millis },
    /// Taking the node offline: running tasks finish, no new ones start.
    Draining { since: Millis },
    /// The provider is removing the deployment.
    Stopping { since: Millis },
    /// Deployment failed or the node was lost; the cause says which.
    Unknown { since: Millis, cause: String },
}

/// What can happen to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// The user (or a policy) starts the node: deploy it.
    Start,
    /// Its agent connected and registered.
    AgentJoined,
    BringOnline,
    /// Take offline; without `force` running tasks finish first.
    TakeOffline {
        force: bool,
    },
    /// The last running task of a draining node ended.
    Drained,
    /// Remove the deployment.
    Stop,
    /// The provider confirmed the deployment is gone.
    Removed,
    /// Deployment or removal failed.
    Failed {
        cause: String,
    },
    /// The agent stopped answering.
    Lost {
        cause: String,
    },
}

/// What a person or an availability policy does to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAction {
    Start,
    Stop,
    Online,
    Offline,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    OK,
    Warning,
    Error,
    Transitional,
    Unapproved,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::OK => "OK",
            Health::Warning => "Warning",
            Health::Error => "Error",
            Health::Transitional => "Transitional",
            Health::Unapproved => "Unapproved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event} a node that is {state}")]
pub struct IllegalTransition {
    pub state: &'static str,
    pub event: &'static str,
}

impl NodeEvent {
    pub fn verb(&self) -> &'static str {
        match self {
            NodeEvent::Start => "start",
            NodeEvent::AgentJoined => "register the agent of",
            NodeEvent::BringOnline => "bring online",
            NodeEvent::TakeOffline { .. } => "take offline",
            NodeEvent::Drained => "finish draining",
            NodeEvent::Stop => "stop",
            NodeEvent::Removed => "finish removing",
            NodeEvent::Failed { .. } => "fail",
            NodeEvent::Lost { .. } => "lose",
        }
    }
}

impl NodeState {
    pub fn name(&self) -> &'static str {
        match self {
            NodeState::NotDeployed => "NotDeployed",
            NodeState::Provisioning { .. } => "Provisioning",
            NodeState::Offline { .. } => "Offline",
            NodeState::Online { .. } => "Online",
            NodeState::Draining { .. } => "Draining",
            NodeState::Stopping { .. } => "Stopping",
            NodeState::Unknown { .. } => "Unknown",
        }
    }

    /// Whether the provider has (or may have) something deployed for this node.
    pub fn is_deployed(&self) -> bool {
        !matches!(self, NodeState::NotDeployed)
    }

    /// Whether an agent is expected to be connected in this state.
    pub fn expects_agent(&self) -> bool {
        matches!(self, NodeState::Offline { .. } | NodeState::Online { .. } | NodeState::Draining { .. })
    }

    /// The state after `event`, or the reason it is not allowed. Exhaustive on purpose: adding a
    /// state or an event must make the author decide every case.
    pub fn apply(&self, event: &NodeEvent, now: Millis) -> Result<NodeState, IllegalTransition> {
        use NodeEvent as E;
        use NodeState as S;
        let illegal = || IllegalTransition { state: self.name(), event: event.verb() };
        let next = match (self, event) {
            (S::NotDeployed | S::Unknown { .. }, E::Start) => S::Provisioning { since: now },
            (
                S::Provisioning { .. } | S::Offline { .. } | S::Online { .. } | S::Draining { .. } | S::Stopping { .. },
                E::Start,
            ) => {
                return Err(illegal());
            }

            (S::Provisioning { .. } | S::Unknown { .. }, E::AgentJoined) => S::Offline { since: now },
            (S::Offline { .. } | S::Online { .. } | S::Draining { .. }, E::AgentJoined) => self.clone(),
            (S::NotDeployed | S::Stopping { .. }, E::AgentJoined) => return Err(illegal()),

            (S::Offline { .. } | S::Draining { .. }, E::BringOnline) => S::Online { since: now },
            (S::Online { .. }, E::BringOnline) => self.clone(),
            (S::NotDeployed | S::Provisioning { .. } | S::Stopping { .. } | S::Unknown { .. }, E::BringOnline) => {
                return Err(illegal());
            }

            (S::Online { .. }, E::TakeOffline { force: false }) => S::Draining { since: now },
            (S::Online { .. } | S::Draining { .. }, E::TakeOffline { force: true }) => S::Offline { since: now },
            (S::Draining { .. }, E::TakeOffline { force: false }) => self.clone(),
            (S::Offline { .. }, E::TakeOffline { .. }) => self.clone(),
            (
                S::NotDeployed | S::Provisioning { .. } | S::Stopping { .. } | S::Unknown { .. },
                E::TakeOffline { .. },
            ) => {
                return Err(illegal());
            }

            (S::Draining { .. }, E::Drained) => S::Offline { since: now },
            (
                S::NotDeployed
                | S::Provisioning { .. }
                | S::Offline { .. }
                | S::Online { .. }
                | S::Stopping { .. }
                | S::Unknown { .. },
                E::Drained,
            ) => {
                return Err(illegal());
            }

            (
                S::Provisioning { .. } | S::Offline { .. } | S::Online { .. } | S::Draining { .. } | S::Unknown { .. },
                E::Stop,
            ) => S::Stopping { since: now },
            (S::Stopping { .. }, E::Stop) => self.clone(),
            (S::NotDeployed, E::Stop) => return Err(illegal()),

            (S::Stopping { .. }, E::Removed) => S::NotDeployed,
            (
                S::NotDeployed
                | S::Provisioning { .. }
                | S::Offline { .. }
                | S::Online { .. }
                | S::Draining { .. }
                | S::Unknown { .. },
                E::Removed,
            ) => {
                return Err(illegal());
            }

            (S::Provisioning { .. } | S::Stopping { .. }, E::Failed { cause }) => {
                S::Unknown { since: now, cause: cause.clone() }
            }
            (
                S::NotDeployed | S::Offline { .. } | S::Online { .. } | S::Draining { .. } | S::Unknown { .. },
                E::Failed { .. },
            ) => {
                return Err(illegal());
            }

            (S::Provisioning { .. } | S::Offline { .. } | S::Online { .. } | S::Draining { .. }, E::Lost { cause }) => {
                S::Unknown { since: now, cause: cause.clone() }
            }
            (S::NotDeployed | S::Stopping { .. } | S::Unknown { .. }, E::Lost { .. }) => {
                return Err(illegal());
            }
        };
        Ok(next)
    }

    /// The health a node has on entering this state.
    pub fn entry_health(&self, event: &NodeEvent) -> Health {
        match (self, event) {
            (NodeState::Unknown { .. }, NodeEvent::Lost { .. }) => Health::Error,
            (NodeState::NotDeployed | NodeState::Provisioning { .. } | NodeState::Unknown { .. }, _) => {
                Health::Unapproved
            }
            (NodeState::Stopping { .. }, _) => Health::Transitional,
            (NodeState::Offline { .. } | NodeState::Online { .. } | NodeState::Draining { .. }, _) => Health::OK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeEvent as E;

    fn all_states() -> Vec<NodeState> {
        vec![
            NodeState::NotDeployed,
            NodeState::Provisioning { since: 1 },
            NodeState::Offline { since: 1 },
            NodeState::Online { since: 1 },
            NodeState::Draining { since: 1 },
            NodeState::Stopping { since: 1 },
            NodeState::Unknown { since: 1, cause: "x".into() },
        ]
    }

    fn all_events() -> Vec<NodeEvent> {
        vec![
            E::Start,
            E::AgentJoined,
            E::BringOnline,
            E::TakeOffline { force: false },
            E::TakeOffline { force: true },
            E::Drained,
            E::Stop,
            E::Removed,
            E::Failed { cause: "boom".into() },
            E::Lost { cause: "gone".into() },
        ]
    }

    /// Every (state, event) pair with the name of the state it leads to, or None if illegal.
    fn expected(state: &str, event: &NodeEvent) -> Option<&'static str> {
        let force = matches!(event, E::TakeOffline { force: true });
        Some(match (state, event) {
            ("NotDeployed" | "Unknown", E::Start) => "Provisioning",
            ("Provisioning" | "Unknown", E::AgentJoined) => "Offline",
            ("Offline", E::AgentJoined) => "Offline",
            ("Online", E::AgentJoined) => "Online",
            ("Draining", E::AgentJoined) => "Draining",
            ("Offline" | "Draining" | "Online", E::BringOnline) => "Online",
            ("Online", E::TakeOffline { .. }) if force => "Offline",
            ("Online", E::TakeOffline { .. }) => "Draining",
            ("Draining", E::TakeOffline { .. }) if force => "Offline",
            ("Draining", E::TakeOffline { .. }) => "Draining",
            ("Offline", E::TakeOffline { .. }) => "Offline",
            ("Draining", E::Drained) => "Offline",
            ("Provisioning" | "Offline" | "Online" | "Draining" | "Unknown" | "Stopping", E::Stop) => "Stopping",
            ("Stopping", E::Removed) => "NotDeployed",
            ("Provisioning" | "Stopping", E::Failed { .. }) => "Unknown",
            ("Provisioning" | "Offline" | "Online" | "Draining", E::Lost { .. }) => "Unknown",
            _ => return None,
        })
    }

    #[test]
    fn every_transition_is_legal_or_illegal_as_the_table_says() {
        let mut legal = 0;
        for state in all_states() {
            for event in all_events() {
                let got = state.apply(&event, 5);
                match expected(state.name(), &event) {
                    Some(name) => {
                        legal += 1;
                        assert_eq!(got.as_ref().map(|s| s.name()), Ok(name), "{} + {event:?}", state.name())
                    }
                    None => {
                        let err = got.expect_err(&format!("{} + {event:?} must be illegal", state.name()));
                        assert!(err.to_string().contains(state.name()), "{err}");
                    }
                }
            }
        }
        assert_eq!(legal, 30);
    }

    #[test]
    fn failure_keeps_the_cause_and_leaves_the_node_unapproved() {
        let next = NodeState::Provisioning { since: 1 }.apply(&E::Failed { cause: "disk full".into() }, 9).unwrap();
        assert_eq!(next, NodeState::Unknown { since: 9, cause: "disk full".into() });
        assert_eq!(next.entry_health(&E::Failed { cause: String::new() }), Health::Unapproved);
    }

    #[test]
    fn a_lost_node_has_health_error_and_a_joined_node_ok() {
        let lost = NodeState::Online { since: 1 }.apply(&E::Lost { cause: "timeout".into() }, 2).unwrap();
        assert_eq!(lost.entry_health(&E::Lost { cause: String::new() }), Health::Error);
        let joined = NodeState::Provisioning { since: 1 }.apply(&E::AgentJoined, 2).unwrap();
        assert_eq!(joined.entry_health(&E::AgentJoined), Health::OK);
    }

    #[test]
    fn states_survive_a_json_round_trip() {
        for state in all_states() {
            let text = serde_json::to_string(&state).unwrap();
            assert_eq!(serde_json::from_str::<NodeState>(&text).unwrap(), state);
        }
    }
}
