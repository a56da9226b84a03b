//! A burst node's deployment as the head node follows it, and its agent link.
//!
//! ```text
//!            Start                  Call                 answer: made
//!   None ----------> Queued ----------------> Deploying --------------> Made
//!    ^  ^             |  ^  (retry delay)        |  answer: failed, retry  |
//!    |  |             |  +-----------------------+                         |
//!    |  +-- Withdrawn-+ (stopped or failed while waiting)                  |
//!    +------------------------------- Removed / Forgotten -----------------+
//! ```
//!
//! A start while something is still deployed queues the node behind the removal of that
//! `earlier` deployment (they may share a directory or a name at the provider); a stop before
//! that removal answers leaves the node `Clearing` it. The provider's own view of a deployment
//! (a process alive, a VM running) is an input to these transitions, not one of these states.

use super::SessionId;
use crate::Millis;

/// What a provider returns for a deployment and is given back to look at or remove it.
pub type Handle = serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Deployment {
    /// Nothing deployed that the head node knows of.
    None,
    /// Nothing current; an earlier deployment is being removed.
    Clearing { earlier: Handle },
    /// Started and waiting for its turn: the template's deploy rate, the set's proxies, a retry
    /// delay (`not_before`) or the removal of an `earlier` deployment. `attempts` deploy calls
    /// were made since the start.
    Queued { attempts: u32, not_before: Millis, earlier: Option<Handle> },
    /// Deploy call number `attempt` is out.
    Deploying { attempt: u32 },
    /// The provider made it at `at`; the boot timeout runs from there. `waiting` is the
    /// provider's last word on why it is not running yet (a batch queue's reason), if it said.
    Made { handle: Handle, at: Millis, waiting: Option<String> },
}

/// What happens to a deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployEvent {
    /// The node is started: deploy it once its turn comes. A deployment still there is queued
    /// for removal first; a deploy call still out is left to answer.
    Start { now: Millis },
    /// Its turn came: a deploy call goes out.
    Call,
    /// The provider answered the deploy call with a deployment.
    Made { handle: Handle, at: Millis },
    /// The provider answered the deploy call with a failure; `retry_at` when it is tried again.
    CallFailed { retry_at: Option<Millis> },
    /// The node no longer waits to be deployed (it was stopped or failed while waiting).
    Withdrawn,
    /// The provider removed the deployment with this handle.
    Removed { handle: Handle },
    /// The node is back to NotDeployed: the head node forgets what it deployed (a removal of an
    /// earlier deployment still out is kept).
    Forgotten,
}

/// A deployment event that does not apply in the deployment's phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a deployment that is {phase} cannot {event}")]
pub struct IllegalDeployment {
    pub phase: &'static str,
    pub event: &'static str,
}

impl Deployment {
    pub fn phase(&self) -> &'static str {
        match self {
            Deployment::None => "none",
            Deployment::Clearing { .. } => "clearing an earlier deployment",
            Deployment::Queued { .. } => "queued",
            Deployment::Deploying { .. } => "deploying",
            Deployment::Made { .. } => "made",
        }
    }

    /// The handle of the current deployment, if the provider made one.
    pub fn handle(&self) -> Option<&Handle> {
        match self {
            Deployment::Made { handle, .. } => Some(handle),
            Deployment::None
            | Deployment::Clearing { .. }
            | Deployment::Queued { .. }
            | Deployment::Deploying { .. } => None,
        }
    }

    /// Records the provider's word that the deployment with `handle` waits (for `reason`);
    /// returns whether that is news. Said of another deployment, it changes nothing.
    pub fn note_waiting(&mut self, of: &Handle, reason: &str) -> bool {
        match self {
            Deployment::Made { handle, waiting, .. } if handle == of && waiting.as_deref() != Some(reason) => {
                *waiting = Some(reason.to_string());
                true
            }
            _ => false,
        }
    }

    /// An earlier deployment being removed before the node is deployed again, if any.
    pub fn earlier(&self) -> Option<&Handle> {
        match self {
            Deployment::Clearing { earlier } | Deployment::Queued { earlier: Some(earlier), .. } => Some(earlier),
            Deployment::None
            | Deployment::Queued { earlier: None, .. }
            | Deployment::Deploying { .. }
            | Deployment::Made { .. } => None,
        }
    }

    /// The phase after `event`. Exhaustive on purpose, like [`crate::node_state::NodeState::apply`].
    pub fn apply(&self, event: DeployEvent) -> Result<Deployment, IllegalDeployment> {
        use DeployEvent as E;
        use Deployment as D;
        let illegal = |event: &'static str| IllegalDeployment { phase: self.phase(), event };
        let queued = |now, earlier| D::Queued { attempts: 0, not_before: now, earlier };
        let without_call = |earlier: Option<Handle>| earlier.map_or(D::None, |earlier| D::Clearing { earlier });
        Ok(match (self, event) {
            (D::None, E::Start { now }) => queued(now, None),
            (D::Clearing { earlier }, E::Start { now }) => queued(now, Some(earlier.clone())),
            (D::Made { handle, .. }, E::Start { now }) => queued(now, Some(handle.clone())),
            (D::Queued { earlier, .. }, E::Start { now }) => queued(now, earlier.clone()),
            (D::Deploying { .. }, E::Start { .. }) => self.clone(),

            (D::Queued { attempts, earlier: None, .. }, E::Call) => D::Deploying { attempt: attempts + 1 },
            (D::Queued { earlier: Some(_), .. }, E::Call) => return Err(illegal("be deployed before it is cleared")),
            (D::None | D::Clearing { .. } | D::Deploying { .. } | D::Made { .. }, E::Call) => {
                return Err(illegal("be deployed"));
            }

            // An answer replaces what the head node knew, as the provider says it holds it now.
            (
                D::None | D::Clearing { .. } | D::Queued { .. } | D::Deploying { .. } | D::Made { .. },
                E::Made { handle, at },
            ) => D::Made { handle, at, waiting: None },

            (D::Deploying { attempt }, E::CallFailed { retry_at: Some(not_before) }) => {
                D::Queued { attempts: *attempt, not_before, earlier: None }
            }
            (D::Deploying { .. }, E::CallFailed { retry_at: None }) => D::None,
            (D::None | D::Clearing { .. } | D::Queued { .. } | D::Made { .. }, E::CallFailed { .. }) => self.clone(),

            (D::Queued { earlier, .. }, E::Withdrawn) => without_call(earlier.clone()),
            (D::None | D::Clearing { .. } | D::Deploying { .. } | D::Made { .. }, E::Withdrawn) => self.clone(),

            (D::Clearing { earlier }, E::Removed { handle }) if *earlier == handle => D::None,
            (D::Queued { attempts, not_before, earlier: Some(earlier) }, E::Removed { handle })
                if *earlier == handle =>
            {
                D::Queued { attempts: *attempts, not_before: *not_before, earlier: None }
            }
            (D::Made { handle: current, .. }, E::Removed { handle }) if *current == handle => D::None,
            (
                D::None | D::Clearing { .. } | D::Queued { .. } | D::Deploying { .. } | D::Made { .. },
                E::Removed { .. },
            ) => self.clone(),

            (D::Queued { earlier, .. }, E::Forgotten) => without_call(earlier.clone()),
            (D::Clearing { .. }, E::Forgotten) => self.clone(),
            (D::None | D::Deploying { .. } | D::Made { .. }, E::Forgotten) => D::None,
        })
    }

    /// Applies an event that every phase takes (all but [`DeployEvent::Call`]).
    pub(super) fn on(&mut self, event: DeployEvent) {
        debug_assert!(event != DeployEvent::Call, "a deploy call is made through apply, which may refuse it");
        if let Ok(next) = self.apply(event) {
            *self = next;
        }
    }
}

/// A node's agent as the head node hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentLink {
    /// No agent is connected and none is awaited back.
    None,
    /// Connected on `session`, last heard at `heard`; `installing` the set's packages before the
    /// node is Offline.
    Connected { session: SessionId, heard: Millis, installing: bool },
    /// Its connection went away at `since`; it has the reconnect grace to come back.
    Away { since: Millis },
}

impl AgentLink {
    pub fn session(&self) -> Option<SessionId> {
        match self {
            AgentLink::Connected { session, .. } => Some(*session),
            AgentLink::None | AgentLink::Away { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DeployEvent, Deployment};
    use DeployEvent as E;
    use Deployment as D;
    use serde_json::json;

    fn made(h: u32) -> Deployment {
        D::Made { handle: json!(h), at: 5, waiting: None }
    }

    #[test]
    fn a_start_queues_a_deployment_that_is_called_made_and_removed() {
        let queued = D::None.apply(E::Start { now: 7 }).unwrap();
        assert_eq!(queued, D::Queued { attempts: 0, not_before: 7, earlier: None });
        let calling = queued.apply(E::Call).unwrap();
        assert_eq!(calling, D::Deploying { attempt: 1 });
        let done = calling.apply(E::Made { handle: json!(1), at: 9 }).unwrap();
        assert_eq!(done.handle(), Some(&json!(1)));
        assert_eq!(done.apply(E::Removed { handle: json!(1) }).unwrap(), D::None);
    }

    #[test]
    fn a_failed_call_is_queued_again_with_its_count_or_given_up() {
        let calling = D::Deploying { attempt: 2 };
        let again = calling.apply(E::CallFailed { retry_at: Some(20) }).unwrap();
        assert_eq!(again, D::Queued { attempts: 2, not_before: 20, earlier: None });
        assert_eq!(again.apply(E::Call).unwrap(), D::Deploying { attempt: 3 });
        assert_eq!(calling.apply(E::CallFailed { retry_at: None }).unwrap(), D::None);
    }

    #[test]
    fn a_restart_waits_for_the_earlier_deployment_to_be_removed() {
        let queued = made(1).apply(E::Start { now: 7 }).unwrap();
        assert_eq!(queued, D::Queued { attempts: 0, not_before: 7, earlier: Some(json!(1)) });
        assert!(queued.apply(E::Call).is_err(), "no deploy call before the earlier deployment is gone");
        assert_eq!(queued.apply(E::Removed { handle: json!(2) }).unwrap(), queued, "another handle changes nothing");
        let cleared = queued.apply(E::Removed { handle: json!(1) }).unwrap();
        assert_eq!(cleared.apply(E::Call).unwrap(), D::Deploying { attempt: 1 });
        // Stopped before the removal answered: the node keeps clearing, and a start waits again.
        let clearing = queued.apply(E::Withdrawn).unwrap();
        assert_eq!(clearing, D::Clearing { earlier: json!(1) });
        assert_eq!(clearing.apply(E::Forgotten).unwrap(), clearing);
        assert_eq!(clearing.apply(E::Start { now: 8 }).unwrap(), queued.apply(E::Start { now: 8 }).unwrap());
        assert_eq!(clearing.apply(E::Removed { handle: json!(1) }).unwrap(), D::None);
    }

    #[test]
    fn a_start_while_a_call_is_out_waits_for_its_answer() {
        let calling = D::Deploying { attempt: 1 };
        assert_eq!(calling.apply(E::Start { now: 3 }).unwrap(), calling);
        assert!(calling.apply(E::Call).is_err());
    }

    #[test]
    fn only_a_queued_deployment_is_called() {
        for d in [D::None, D::Clearing { earlier: json!(1) }, D::Deploying { attempt: 1 }, made(1)] {
            assert!(d.apply(E::Call).is_err(), "{d:?}");
        }
    }

    #[test]
    fn forgetting_drops_the_current_deployment_and_keeps_a_removal_still_out() {
        assert_eq!(made(1).apply(E::Forgotten).unwrap(), D::None);
        assert_eq!(D::Deploying { attempt: 1 }.apply(E::Forgotten).unwrap(), D::None);
        let queued = D::Queued { attempts: 1, not_before: 0, earlier: Some(json!(4)) };
        assert_eq!(queued.apply(E::Forgotten).unwrap(), D::Clearing { earlier: json!(4) });
    }

    #[test]
    fn answers_that_do_not_concern_the_phase_change_nothing() {
        assert_eq!(made(1).apply(E::CallFailed { retry_at: Some(1) }).unwrap(), made(1));
        assert_eq!(made(1).apply(E::Withdrawn).unwrap(), made(1));
        assert_eq!(made(1).apply(E::Removed { handle: json!(2) }).unwrap(), made(1));
        assert_eq!(D::None.apply(E::Removed { handle: json!(2) }).unwrap(), D::None);
    }
}
