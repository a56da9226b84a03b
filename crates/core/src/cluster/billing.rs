//! Paid stretches of nodes and of each set's proxies.

use super::Cluster;
use super::effects::Effects;
use crate::Millis;
use crate::cost::{Usage, UsageKind};
use crate::persist::Op;
use crate::size::NodeSize;
use crate::template::Template;

impl Cluster {
    /// Opens or closes the paid stretch of a node that was deployed or removed, and of its
    /// set's proxies, which are paid while any node of the set is deployed.
    /// Called after anything that may change whether a node holds a deployment: idempotent.
    pub(super) fn account(&mut self, fx: &mut Effects, name: &str, now: Millis) {
        let Some(node) = self.nodes.get(name) else { return };
        let (Some(template), Some(size)) = (node.template.as_ref().and_then(|t| self.templates.get(t)), node.size)
        else {
            return;
        };
        let template = template.clone();
        let deployed = node.holds_deployment();
        self.set_usage(fx, UsageKind::Node, name, &template, size, 1, deployed, now);
        self.account_set(fx, &template, now);
    }

    /// Whether any node of the set holds a deployment (and so needs, and pays for, proxies).
    pub(super) fn set_is_active(&self, template: &str) -> bool {
        self.nodes.values().any(|n| n.template.as_deref() == Some(template) && n.holds_deployment())
    }

    /// The set's proxies and their paid stretch follow whether the set is active.
    pub(super) fn account_set(&mut self, fx: &mut Effects, template: &Template, now: Millis) {
        let set_active = self.set_is_active(&template.name);
        let proxies = template.proxies;
        // A changed number of proxies is billed from the change on.
        let key = (UsageKind::Proxies, template.name.clone());
        if self.usage.get(&key).is_some_and(|u| u.count != proxies) {
            self.set_usage(fx, UsageKind::Proxies, &template.name, template, NodeSize::Small, proxies, false, now);
        }
        self.set_usage(fx, UsageKind::Proxies, &template.name, template, NodeSize::Small, proxies, set_active, now);
        self.ensure_proxies(fx, template, set_active, now);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_usage(
        &mut self,
        fx: &mut Effects,
        kind: UsageKind,
        key: &str,
        template: &Template,
        size: NodeSize,
        count: u32,
        open: bool,
        now: Millis,
    ) {
        let key = (kind, key.to_string());
        match (open, self.usage.contains_key(&key)) {
            (true, false) => {
                let usage = Usage {
                    id: self.next_usage,
                    template: template.name.clone(),
                    kind,
                    name: if kind == UsageKind::Node { key.1.clone() } else { "proxies".into() },
                    size,
                    count,
                    rate_micros: template.rate_micros(size),
                    currency: template.currency.clone(),
                    start: now,
                    end: None,
                };
                self.next_usage += 1;
                fx.ops.push(Op::PutUsage(usage.clone()));
                self.usage.insert(key, usage);
            }
            (false, true) => {
                let mut usage = self.usage.remove(&key).expect("checked");
                usage.end = Some(now);
                fx.ops.push(Op::PutUsage(usage));
            }
            _ => {}
        }
    }
}
