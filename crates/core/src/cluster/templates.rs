//! Entry: template requests (create, edit, delete, resume, list).

use super::Cluster;
use super::effects::Effects;
use crate::persist::Op;
use crate::template::{NewTemplate, Template, TemplateEdit};
use crate::view::TemplateView;
use crate::{Error, Millis, Result};

impl Cluster {
    pub fn create_template(&mut self, fx: &mut Effects, req: NewTemplate, now: Millis) -> Result<TemplateView> {
        let template = req.validate(now, self.rules.as_ref())?;
        if self.templates.contains_key(&template.name) {
            return Err(Error::conflict(format!(
                "template \"{}\" already exists (choose another name, or edit or delete the existing one)",
                template.name
            )));
        }
        fx.ops.push(Op::PutTemplate(template.clone()));
        let view = self.template_view(&template);
        self.templates.insert(template.name.clone(), template);
        Ok(view)
    }

    pub fn delete_template(&mut self, fx: &mut Effects, name: &str) -> Result<()> {
        self.template_named(name)?;
        let nodes = self.nodes.values().filter(|n| n.template.as_deref() == Some(name)).count();
        if nodes > 0 {
            return Err(Error::conflict(format!(
                "template \"{name}\" still has {nodes} node(s) (stop and delete them first: thunderhead node stop --template {name}; thunderhead node delete --template {name})"
            )));
        }
        // Proxies being removed finish without their template; one still deploying would be
        // left behind.
        let deploying = self
            .proxies
            .values()
            .filter(|p| p.template == name && p.state == crate::proxy::ProxyState::Deploying)
            .count();
        if deploying > 0 {
            return Err(Error::conflict(format!(
                "template \"{name}\" still has {deploying} proxies being deployed (try again in a moment)"
            )));
        }
        self.templates.remove(name);
        fx.ops.push(Op::DeleteTemplate(name.to_string()));
        Ok(())
    }

    pub fn templates(&self) -> Vec<TemplateView> {
        self.templates.values().map(|t| self.template_view(t)).collect()
    }

    pub fn template(&self, name: &str) -> Result<TemplateView> {
        Ok(self.template_view(self.template_named(name)?))
    }

    /// The whole template, settings included, for the runtime to hand to its provider.
    pub fn template_record(&self, name: &str) -> Result<Template> {
        self.template_named(name).cloned()
    }

    pub(super) fn template_view(&self, t: &Template) -> TemplateView {
        TemplateView {
            name: t.name.clone(),
            provider: t.provider.clone(),
            description: t.description.clone(),
            settings: t.settings.clone(),
            nodes: self.nodes.values().filter(|n| n.template.as_deref() == Some(&t.name)).count() as u64,
            node_cores: self.template_cores(&t.name, |_| true),
            quota_cores: t.quota_cores,
            proxies: t.proxies,
            series_prefix: t.prefix(),
            deploy_rate: t.deploy_rate,
            deploy_retries: t.deploy_retries,
            pause_after_failures: t.pause_after_failures,
            paused: t.paused.clone(),
            rates: t.rates.clone(),
            currency: t.currency.clone(),
            proxy_list: self.proxies_of(&t.name),
            pins: t.pins.clone(),
            blob_store: t.blob_store.clone(),
            availability: t.availability.clone(),
            boot_timeout: t.boot_timeout,
            created_at: t.created_at,
        }
    }

    /// Changes a template; a deployed set picks the changes up at its next start.
    /// A new availability policy applies at once, so that what a person does right after
    /// setting it is not undone by the policy's first look.
    pub fn edit_template(
        &mut self,
        fx: &mut Effects,
        name: &str,
        edit: TemplateEdit,
        now: Millis,
    ) -> Result<TemplateView> {
        let edited = self.template_named(name)?.edited(edit, self.rules.as_ref())?;
        let policy_changed = edited.availability != self.templates[name].availability;
        fx.ops.push(Op::PutTemplate(edited.clone()));
        self.templates.insert(name.to_string(), edited);
        if policy_changed {
            self.policy.remove(name);
            self.apply_availability(fx, now);
        }
        self.template(name)
    }

    /// Clears a template's pause so its nodes can be started again.
    pub fn resume_template(&mut self, fx: &mut Effects, name: &str) -> Result<TemplateView> {
        let mut t = self.template_named(name)?.clone();
        t.paused = None;
        self.failures.remove(name);
        fx.ops.push(Op::PutTemplate(t.clone()));
        self.templates.insert(name.to_string(), t);
        self.template(name)
    }
}
