//! What changed, by topic, for clients that follow the cluster live (the dashboard): each topic
//! names the API resources to fetch again.

use crate::persist::Op;

/// A set of topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Topics(u8);

impl Topics {
    pub const NONE: Topics = Topics(0);
    pub const NODES: Topics = Topics(1);
    pub const JOBS: Topics = Topics(2);
    pub const TEMPLATES: Topics = Topics(4);
    pub const PACKAGES: Topics = Topics(8);
    pub const COST: Topics = Topics(16);
    pub const ALL: Topics = Topics(31);

    const NAMES: [(Topics, &'static str); 5] = [
        (Topics::NODES, "nodes"),
        (Topics::JOBS, "jobs"),
        (Topics::TEMPLATES, "templates"),
        (Topics::PACKAGES, "packages"),
        (Topics::COST, "cost"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Topics) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES.iter().filter(|(t, _)| self.contains(*t)).map(|(_, n)| *n).collect()
    }

    /// What a durable change touches. A node counts toward its template's totals, a task toward
    /// its node's cores in use, and a proxy toward what its set costs.
    pub fn of(op: &Op) -> Topics {
        match op {
            Op::PutTemplate(_) | Op::DeleteTemplate(_) => Topics::TEMPLATES,
            Op::PutNode(_) | Op::DeleteNode(_) => Topics::NODES | Topics::TEMPLATES,
            Op::NodeLog { .. } => Topics::NODES,
            Op::InsertJob(_) | Op::JobProgress(_) => Topics::JOBS,
            Op::PutTask(_) => Topics::JOBS | Topics::NODES,
            Op::PutUsage(_) => Topics::COST,
            Op::PutProxy(_) | Op::DeleteProxy(_) => Topics::TEMPLATES | Topics::COST,
            Op::PutPackage(_) | Op::DeletePackage { .. } => Topics::PACKAGES,
            // A series counter is shown nowhere: the nodes it names come with their own ops.
            Op::PutSeries { .. }
            | Op::PutUser(_)
            | Op::DeleteUser(_)
            | Op::PutJoinToken(_)
            | Op::DeleteJoinToken(_)
            | Op::PutNodeCert(_) => Topics::NONE,
        }
    }
}

impl std::ops::BitOr for Topics {
    type Output = Topics;
    fn bitor(self, rhs: Topics) -> Topics {
        Topics(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Topics {
    fn bitor_assign(&mut self, rhs: Topics) {
        self.0 |= rhs.0;
    }
}

/// Generations per topic: each change of a topic counts up its generation. A follower compares
/// two readings to learn what changed in between, however many changes it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generations([u64; 5]);

impl Generations {
    pub fn bump(&mut self, topics: Topics) {
        for (i, (t, _)) in Topics::NAMES.iter().enumerate() {
            if topics.contains(*t) {
                self.0[i] += 1;
            }
        }
    }

    /// The topics whose generation differs from `earlier`.
    pub fn since(&self, earlier: &Generations) -> Topics {
        let mut out = Topics::NONE;
        for (i, (t, _)) in Topics::NAMES.iter().enumerate() {
            if self.0[i] != earlier.0[i] {
                out |= *t;
            }
        }
        out
    }

    /// A number that grows with every change.
    pub fn seq(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_learns_every_topic_that_changed_since_its_last_reading() {
        let mut g = Generations::default();
        let seen = g;
        g.bump(Topics::of(&Op::DeleteNode("n".into())));
        g.bump(Topics::of(&Op::PutUsage(crate::cost::Usage {
            id: 1,
            template: "t".into(),
            kind: crate::cost::UsageKind::Node,
            name: "n".into(),
            size: crate::size::NodeSize::Small,
            count: 1,
            rate_micros: 1,
            currency: "USD".into(),
            start: 0,
            end: None,
        })));
        g.bump(Topics::of(&Op::DeleteUser("u".into())));
        assert_eq!(g.since(&seen).names(), ["nodes", "templates", "cost"]);
        assert_eq!(g.seq(), 3);
        assert!(g.since(&g).is_empty());
        assert_eq!(Topics::ALL.names().len(), 5);
    }
}
