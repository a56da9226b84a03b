//! Packages on nodes: installed when a burst node deploys (before it is `Offline`), and on
//! running nodes on request (`package install`, the `hpcsync` of 2011).

use super::deployment::AgentLink;
use super::effects::{Command, Effects};
use super::{Cluster, SessionId, log};
use crate::package::{Package, validate_file_name, validate_package_name};
use crate::persist::Op;
use crate::view::{NodeActionResult, PackageView};
use crate::{Error, Millis, Result};

/// How one package installed on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    pub version: u32,
    pub error: Option<String>,
}

fn view(p: &Package, versions: usize) -> PackageView {
    PackageView {
        name: p.name.clone(),
        version: p.version,
        versions: versions as u32,
        file_name: p.file_name.clone(),
        size: p.size,
        sha256: p.sha256.clone(),
        template: p.template.clone(),
        uploaded_at: p.uploaded_at,
    }
}

impl Cluster {
    /// The version the next upload of `name` gets. Versions are never reused, even when an
    /// upload fails half way.
    /// Returns it with the blob store the package goes to (its template's, or `None` for the
    /// head node's).
    pub fn reserve_package_version(
        &mut self,
        name: &str,
        file_name: &str,
        template: Option<&str>,
    ) -> Result<(u32, Option<String>)> {
        validate_package_name(name)?;
        validate_file_name(file_name)?;
        let store = match template {
            Some(t) => self.template_named(t)?.blob_store.clone(),
            None => None,
        };
        let stored = self.packages.keys().filter(|(n, _)| n == name).map(|(_, v)| *v).max().unwrap_or(0);
        let reserved = self.package_versions.get(name).copied().unwrap_or(0);
        let next = stored.max(reserved) + 1;
        self.package_versions.insert(name.to_string(), next);
        Ok((next, store))
    }

    /// Records an uploaded package whose file is in the blob store.
    pub fn register_package(&mut self, fx: &mut Effects, package: Package) -> Result<PackageView> {
        if let Some(t) = &package.template {
            self.template_named(t)?;
        }
        fx.ops.push(Op::PutPackage(package.clone()));
        let name = package.name.clone();
        self.packages.insert((name.clone(), package.version), package);
        self.package(&name).map(|mut v| v.remove(0))
    }

    /// The latest version of every package.
    pub fn packages_list(&self) -> Vec<PackageView> {
        let mut out: Vec<PackageView> = Vec::new();
        for ((name, _), p) in self.packages.iter().rev() {
            if out.last().is_none_or(|v| &v.name != name) {
                let versions = self.packages.keys().filter(|(n, _)| n == name).count();
                out.push(view(p, versions));
            }
        }
        out.reverse();
        out
    }

    /// Every version of a package, newest first.
    pub fn package(&self, name: &str) -> Result<Vec<PackageView>> {
        let versions: Vec<&Package> = self.packages.iter().filter(|((n, _), _)| n == name).map(|(_, p)| p).collect();
        if versions.is_empty() {
            return Err(Error::not_found(format!("package \"{name}\" does not exist (see thunderhead package list)")));
        }
        Ok(versions.iter().rev().map(|p| view(p, versions.len())).collect())
    }

    /// One version of a package (the latest if `version` is `None`).
    pub fn package_file(&self, name: &str, version: Option<u32>) -> Result<Package> {
        let found = match version {
            Some(v) => self.packages.get(&(name.to_string(), v)),
            None => self.packages.iter().filter(|((n, _), _)| n == name).map(|(_, p)| p).next_back(),
        };
        found.cloned().ok_or_else(|| match version {
            Some(v) => {
                Error::not_found(format!("package \"{name}\" has no version {v} (see thunderhead package view {name})"))
            }
            None => Error::not_found(format!("package \"{name}\" does not exist (see thunderhead package list)")),
        })
    }

    /// Removes one version, or every version, of a package; returns what to delete from the
    /// blob store.
    pub fn remove_package(&mut self, fx: &mut Effects, name: &str, version: Option<u32>) -> Result<Vec<Package>> {
        let gone: Vec<Package> = match version {
            Some(_) => vec![self.package_file(name, version)?],
            None => {
                self.package(name)?;
                self.packages.iter().filter(|((n, _), _)| n == name).map(|(_, p)| p.clone()).collect()
            }
        };
        for p in &gone {
            self.packages.remove(&(p.name.clone(), p.version));
            fx.ops.push(Op::DeletePackage { name: p.name.clone(), version: p.version });
        }
        Ok(gone)
    }

    /// What a node of `template` installs: per name, the pinned or latest version of the
    /// packages for every template and for this one.
    pub fn packages_for(&self, template: &str) -> Vec<Package> {
        let pins = self.templates.get(template).map(|t| t.pins.clone()).unwrap_or_default();
        let mut chosen: std::collections::BTreeMap<&str, &Package> = std::collections::BTreeMap::new();
        for p in self.packages.values() {
            if p.template.as_deref().is_some_and(|t| t != template) {
                continue;
            }
            match pins.get(&p.name) {
                Some(v) if *v != p.version => continue,
                _ => {}
            }
            chosen.insert(&p.name, p);
        }
        chosen.into_values().cloned().collect()
    }

    /// Starts installing the set's packages on its nodes whose agents are connected; each
    /// node's log and its package list say how it went.
    pub fn install_packages(&mut self, fx: &mut Effects, template: &str, now: Millis) -> Result<Vec<NodeActionResult>> {
        self.template_named(template)?;
        let packages = self.packages_for(template);
        let mut results = Vec::new();
        let names: Vec<String> =
            self.nodes.values().filter(|n| n.template.as_deref() == Some(template)).map(|n| n.name.clone()).collect();
        for name in names {
            let node = &self.nodes[&name];
            let (ok, message) = match (node.session(), node.state.expects_agent()) {
                (Some(session), true) => {
                    fx.commands.push(Command::Install { session, packages: packages.clone() });
                    log(fx, &name, now, format!("installing {} package(s) on request", packages.len()));
                    (true, format!("installing {} package(s)", packages.len()))
                }
                _ => {
                    (false, format!("not running ({}); it installs its packages when it is started", node.state.name()))
                }
            };
            results.push(NodeActionResult { node: name, ok, message });
        }
        Ok(results)
    }

    /// Asks a freshly connected burst node to install its packages before it is `Offline`.
    /// Returns whether it must wait for them.
    pub(super) fn install_on_join(&mut self, fx: &mut Effects, name: &str, session: SessionId, now: Millis) -> bool {
        let Some(template) = self.nodes.get(name).and_then(|n| n.template.clone()) else { return false };
        let packages = self.packages_for(&template);
        if packages.is_empty() {
            return false;
        }
        let list: Vec<String> = packages.iter().map(|p| format!("{}@{}", p.name, p.version)).collect();
        log(fx, name, now, format!("installing packages {}", list.join(", ")));
        fx.commands.push(Command::Install { session, packages });
        if let AgentLink::Connected { installing, .. } = &mut self.nodes.get_mut(name).expect("exists").agent {
            *installing = true;
        }
        true
    }
}
