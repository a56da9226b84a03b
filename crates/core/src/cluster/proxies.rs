//! The proxies of each set: deployed when a set's first node starts, removed when its last node
//! is gone, replaced on the same address when one dies. See [`crate::proxy`].

use super::deployment::{DeployEvent, Deployment};
use super::effects::{Command, Effects};
use super::{Cluster, log};
use crate::Millis;
use crate::node_state::NodeEvent;
use crate::persist::Op;
use crate::proxy::{ProxyRecord, ProxyState, ProxyView, proxy_name};
use crate::template::Template;

/// How long a failed proxy waits before it is deployed (or removed) again.
pub const PROXY_RETRY: Millis = 30_000;

impl Cluster {
    /// Brings the proxies of `template`'s set in line with whether the set is `active` (has a
    /// deployed node): the template's number of proxies while active, a failed one tried again
    /// after [`PROXY_RETRY`]; none while not.
    pub(super) fn ensure_proxies(&mut self, fx: &mut Effects, template: &Template, active: bool, now: Millis) {
        let names: Vec<String> =
            self.proxies.values().filter(|p| p.template == template.name).map(|p| p.name.clone()).collect();
        if !active {
            for name in names {
                self.retire_proxy(fx, &name, template, now);
            }
            return;
        }
        let wanted: Vec<String> = (1..=template.proxies).map(|n| proxy_name(&template.name, n)).collect();
        for name in names.iter().filter(|n| !wanted.contains(n)) {
            self.retire_proxy(fx, name, template, now);
        }
        for (n, name) in wanted.iter().enumerate() {
            let (address, state, handle, since) = match self.proxies.get(name) {
                None => (None, None, None, 0),
                Some(p) => (p.address.clone(), Some(p.state.clone()), p.handle.clone(), p.since),
            };
            match (state, handle) {
                (None, _) => {}
                (Some(ProxyState::Failed { .. }), None) if now.saturating_sub(since) >= PROXY_RETRY => {}
                (Some(ProxyState::Failed { .. }), Some(handle)) if now.saturating_sub(since) >= PROXY_RETRY => {
                    // Its removal failed: try it again; a new one follows once it is gone.
                    let p = self.proxies.get_mut(name).expect("listed");
                    p.state = ProxyState::Removing;
                    p.since = now;
                    fx.ops.push(Op::PutProxy(p.clone()));
                    fx.commands.push(Command::RemoveProxy { proxy: name.clone(), template: template.clone(), handle });
                    continue;
                }
                (Some(_), _) => continue,
            }
            let record = ProxyRecord {
                name: name.clone(),
                template: template.name.clone(),
                state: ProxyState::Deploying,
                handle: None,
                address: address.clone(),
                since: now,
                provider: template.provider.clone(),
            };
            fx.ops.push(Op::PutProxy(record.clone()));
            log(fx, name, now, format!("deploying proxy {} of set {}", n + 1, template.name));
            fx.commands.push(Command::DeployProxy { proxy: name.clone(), template: template.clone(), address });
            self.proxies.insert(name.clone(), record);
        }
    }

    /// Keeps every active set's proxies complete (retrying failed ones).
    pub(super) fn keep_proxies(&mut self, fx: &mut Effects, now: Millis) {
        let templates: Vec<Template> = self.templates.values().cloned().collect();
        for t in templates {
            if self.set_is_active(&t.name) {
                self.ensure_proxies(fx, &t, true, now);
            }
        }
    }

    /// Removes a proxy the set no longer needs: at once if nothing is deployed, else through
    /// its provider. A proxy still deploying is removed when its deployment answers.
    fn retire_proxy(&mut self, fx: &mut Effects, name: &str, template: &Template, now: Millis) {
        let Some(p) = self.proxies.get_mut(name) else { return };
        match (&p.state, p.handle.clone()) {
            (ProxyState::Deploying | ProxyState::Removing, _) => {}
            (ProxyState::Up { .. } | ProxyState::Failed { .. }, Some(handle)) => {
                p.state = ProxyState::Removing;
                p.since = now;
                fx.ops.push(Op::PutProxy(p.clone()));
                log(fx, name, now, "removing the proxy: its set has no deployed node");
                fx.commands.push(Command::RemoveProxy { proxy: name.to_string(), template: template.clone(), handle });
            }
            (ProxyState::Up { .. } | ProxyState::Failed { .. }, None) => {
                self.proxies.remove(name);
                fx.ops.push(Op::DeleteProxy(name.to_string()));
            }
        }
    }

    /// The addresses of the set's proxies that are up, for its agents, once none of its
    /// proxies is still deploying and at least one is up. None at all for a set without proxies:
    /// its agents reach the head node directly.
    pub(super) fn proxy_urls(&self, template: &str) -> Option<Vec<String>> {
        if self.templates.get(template).is_some_and(|t| t.proxies == 0) {
            return Some(vec![]);
        }
        let set: Vec<&ProxyRecord> = self.proxies.values().filter(|p| p.template == template).collect();
        if set.iter().any(|p| matches!(p.state, ProxyState::Deploying | ProxyState::Removing)) {
            return None;
        }
        let urls: Vec<String> = set
            .iter()
            .filter_map(|p| match &p.state {
                ProxyState::Up { url } => Some(url.clone()),
                _ => None,
            })
            .collect();
        (!urls.is_empty()).then_some(urls)
    }

    pub fn proxies_of(&self, template: &str) -> Vec<ProxyView> {
        self.proxies.values().filter(|p| p.template == template).map(ProxyRecord::view).collect()
    }

    /// Whether `name` is a proxy (its lifecycle log lives beside the nodes').
    pub fn is_proxy(&self, name: &str) -> bool {
        self.proxies.contains_key(name)
    }

    /// The provider answered a proxy deployment with its handle and address, or why it failed.
    pub fn proxy_deployed(
        &mut self,
        fx: &mut Effects,
        name: &str,
        result: std::result::Result<(serde_json::Value, String), String>,
        now: Millis,
    ) {
        let Some(p) = self.proxies.get(name) else { return };
        let Some(template) = self.templates.get(&p.template).cloned() else { return };
        let active = self.set_is_active(&template.name);
        let p = self.proxies.get_mut(name).expect("checked");
        match result {
            Ok((handle, url)) => {
                p.handle = Some(handle.clone());
                p.address = Some(url.clone());
                p.state = ProxyState::Up { url: url.clone() };
                p.since = now;
                fx.ops.push(Op::PutProxy(p.clone()));
                log(fx, name, now, format!("proxy up at {url}"));
                if !active {
                    self.retire_proxy(fx, name, &template, now);
                }
                self.dirty = true;
            }
            Err(cause) => {
                p.state = ProxyState::Failed { cause: cause.clone() };
                p.since = now;
                fx.ops.push(Op::PutProxy(p.clone()));
                log(fx, name, now, format!("proxy deployment failed: {cause}"));
                let hope = self.proxies.values().any(|q| {
                    q.template == template.name && matches!(q.state, ProxyState::Up { .. } | ProxyState::Deploying)
                });
                if !hope {
                    self.fail_waiting_nodes(
                        fx,
                        &template.name,
                        &format!("no proxy of set {} is up: {cause}", template.name),
                        now,
                    );
                }
            }
        }
    }

    /// Nodes of a set that wait to be deployed fail with `cause`.
    pub(super) fn fail_waiting_nodes(&mut self, fx: &mut Effects, template: &str, cause: &str, now: Millis) {
        let waiting: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.template.as_deref() == Some(template) && matches!(n.deployment, Deployment::Queued { .. }))
            .map(|n| n.name.clone())
            .collect();
        for node in waiting {
            self.nodes.get_mut(&node).expect("listed").deployment.on(DeployEvent::Withdrawn);
            let _ = self.transition(fx, &node, NodeEvent::Failed { cause: cause.to_string() }, now);
        }
    }

    pub fn proxy_removed(
        &mut self,
        fx: &mut Effects,
        name: &str,
        handle: &serde_json::Value,
        result: std::result::Result<(), String>,
        now: Millis,
    ) {
        let Some(p) = self.proxies.get_mut(name) else { return };
        if p.handle.as_ref() != Some(handle) {
            return;
        }
        match result {
            Ok(()) => {
                log(fx, name, now, "proxy removed");
                let template = p.template.clone();
                self.proxies.remove(name);
                fx.ops.push(Op::DeleteProxy(name.to_string()));
                // The set was started again while its proxies were being removed.
                if self.set_is_active(&template)
                    && let Some(t) = self.templates.get(&template).cloned()
                {
                    self.ensure_proxies(fx, &t, true, now);
                }
            }
            Err(cause) => {
                p.state = ProxyState::Failed { cause: format!("removal failed: {cause}") };
                p.since = now;
                fx.ops.push(Op::PutProxy(p.clone()));
                log(fx, name, now, format!("proxy removal failed: {cause}"));
            }
        }
    }

    /// Proxies that are up, to check with their provider.
    pub fn proxies_to_probe(&self) -> Vec<(String, Template, serde_json::Value)> {
        self.proxies
            .values()
            .filter(|p| matches!(p.state, ProxyState::Up { .. }))
            .filter_map(|p| Some((p.name.clone(), self.templates.get(&p.template)?.clone(), p.handle.clone()?)))
            .collect()
    }

    /// The provider reports a proxy gone: it is deployed again on the same address.
    pub fn proxy_gone(&mut self, fx: &mut Effects, name: &str, handle: &serde_json::Value, now: Millis) {
        let Some(p) = self.proxies.get_mut(name) else { return };
        if !matches!(p.state, ProxyState::Up { .. }) || p.handle.as_ref() != Some(handle) {
            return;
        }
        let Some(template) = self.templates.get(&p.template).cloned() else { return };
        p.state = ProxyState::Deploying;
        p.handle = None;
        p.since = now;
        fx.ops.push(Op::PutProxy(p.clone()));
        log(fx, name, now, "proxy gone; agents fail over to the others; redeploying it on the same address");
        fx.commands.push(Command::DeployProxy { proxy: name.to_string(), template, address: p.address.clone() });
    }

    /// Takes up the proxies a restarted head node finds in its state.
    pub(super) fn restore_proxies(&mut self, records: Vec<ProxyRecord>, fx: &mut Effects, now: Millis) {
        for p in records {
            // A proxy whose template was deleted while it was being removed is still removed.
            let template = self.templates.get(&p.template).cloned().or_else(|| {
                (p.state == ProxyState::Removing && !p.provider.is_empty())
                    .then(|| Template::new(&p.template, &p.provider))
            });
            match (&p.state, p.handle.clone(), template) {
                (ProxyState::Removing, Some(handle), Some(t)) => {
                    fx.commands.push(Command::RemoveProxy { proxy: p.name.clone(), template: t, handle });
                }
                // A deployment cut short by the restart is made again on the address it had.
                (ProxyState::Deploying, _, Some(t)) => {
                    log(fx, &p.name, now, "redeploying the proxy: the head node restarted during its deployment");
                    fx.commands.push(Command::DeployProxy {
                        proxy: p.name.clone(),
                        template: t,
                        address: p.address.clone(),
                    });
                }
                (ProxyState::Removing, None, _) => {
                    fx.ops.push(Op::DeleteProxy(p.name.clone()));
                    continue;
                }
                _ => {}
            }
            self.proxies.insert(p.name.clone(), p);
        }
    }
}
