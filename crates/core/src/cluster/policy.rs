//! Availability schedules acting on their sets.

use super::effects::Effects;
use super::{Cluster, POLICY_GAP, log};
use crate::Millis;
use crate::persist::Op;
use crate::view::NodeAction;
use std::collections::BTreeSet;

impl Cluster {
    /// Writes a set's policy state with its template.
    pub(super) fn save_policy(&mut self, fx: &mut Effects, template: &str) {
        if let Some(t) = self.templates.get_mut(template) {
            t.policy_state = self.policy.get(template).cloned();
            fx.ops.push(Op::PutTemplate(t.clone()));
        }
    }

    /// Moves the nodes of every scheduled set one step toward where its policy wants it.
    ///
    /// The policy acts at the boundaries of its phases: when a phase begins, every node of the
    /// set is the policy's to move, and it keeps moving them (a node it started is brought
    /// online once its agent connects). A node a person acts on during the phase is theirs until
    /// the next boundary, so stopping a set by hand inside a window sticks.
    pub(super) fn apply_availability(&mut self, fx: &mut Effects, now: Millis) {
        let scheduled: Vec<(String, crate::availability::Phase)> = self
            .templates
            .values()
            .filter_map(|t| Some((t.name.clone(), crate::availability::phase(&t.availability, now)?)))
            .collect();
        self.policy.retain(|t, _| scheduled.iter().any(|(s, _)| s == t));
        for (template, phase) in scheduled {
            // A phase seen again after a long gap (the head node was down) may be a later
            // occurrence of it: it counts as a new phase.
            let fresh =
                self.policy.get(&template).is_none_or(|s| s.phase != phase || now.saturating_sub(s.seen) > POLICY_GAP);
            if fresh {
                let all: BTreeSet<String> = self
                    .nodes
                    .values()
                    .filter(|n| n.template.as_deref() == Some(&template))
                    .map(|n| n.name.clone())
                    .collect();
                self.policy
                    .insert(template.clone(), crate::availability::PolicyState { phase, managed: all, seen: now });
                self.save_policy(fx, &template);
            }
            let entry = self.policy.get_mut(&template).expect("inserted above");
            // The last look is written now and then, for a restart to tell a gap from a pause.
            let stale = now.saturating_sub(entry.seen) >= POLICY_GAP / 6;
            entry.seen = now;
            if stale {
                self.save_policy(fx, &template);
            }
            let managed = &self.policy[&template].managed;
            let actions = crate::availability::decide(
                phase,
                managed.iter().filter_map(|n| self.nodes.get(n)).map(|n| (n.name.as_str(), &n.state)),
            );
            for (node, action) in actions {
                let outcome = match action {
                    NodeAction::Start => self.start_node(fx, &node, now),
                    NodeAction::Stop => self.stop_node(fx, &node, now),
                    NodeAction::Online => self.online_node(fx, &node, now),
                    NodeAction::Offline => self.offline_node(fx, &node, false, now),
                    NodeAction::Delete => Ok(()),
                };
                if outcome.is_ok() {
                    log(fx, &node, now, format!("availability policy of {template}: {phase:?}"));
                    self.dirty = true;
                }
            }
        }
    }
}
