//! Finding templates, nodes and jobs by name, with errors that say what to do.

use super::Cluster;
use super::node::Node;
use crate::job::Job;
use crate::template::Template;
use crate::{Error, JobId, Result};

impl Cluster {
    pub(super) fn template_named(&self, name: &str) -> Result<&Template> {
        self.templates.get(name).ok_or_else(|| {
            Error::not_found(format!(
                "template \"{name}\" does not exist (see thunderhead template list, or create it with thunderhead template create {name} --provider local)"
            ))
        })
    }

    /// Cores of the template's nodes that `filter` keeps.
    pub(super) fn template_cores(&self, template: &str, filter: impl Fn(&Node) -> bool) -> u32 {
        self.nodes.values().filter(|n| n.template.as_deref() == Some(template) && filter(n)).map(|n| n.cores).sum()
    }

    pub(super) fn node_named(&self, name: &str) -> Result<&Node> {
        self.nodes
            .get(name)
            .ok_or_else(|| Error::not_found(format!("node \"{name}\" does not exist (see thunderhead node list)")))
    }

    pub(super) fn burst_template(&self, name: &str) -> Result<Template> {
        let node = self.node_named(name)?;
        match &node.template {
            Some(t) => Ok(self.template_named(t)?.clone()),
            None => Err(Error::invalid(format!(
                "node \"{name}\" is an on-premises node: Thunderhead does not deploy it (start or stop its agent on that machine)"
            ))),
        }
    }

    pub(super) fn job_named(&self, id: JobId) -> Result<&Job> {
        self.jobs
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("job {id} does not exist (see thunderhead job list)")))
    }
}
