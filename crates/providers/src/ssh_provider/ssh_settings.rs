//! An ssh template's settings, read and checked: its hosts, how to log into them and where
//! Thunderhead keeps its files there.

use super::remote::Host;
use crate::settings;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// A template's settings, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SshSettings {
    pub(super) hosts: Vec<Host>,
    pub(super) known_hosts: PathBuf,
    pub(super) nodes_per_host: usize,
    pub(super) remote_dir: String,
    pub(super) connect_timeout: Duration,
}

impl SshSettings {
    pub(super) fn read(settings: &Map<String, Value>) -> thunderhead_core::Result<SshSettings> {
        let invalid = thunderhead_core::Error::invalid;
        let port = match settings.get("port") {
            Some(v) => settings::whole(v).filter(|p| (1..=65535).contains(p)).ok_or_else(|| {
                invalid(format!("port {v} is not a TCP port (give a whole number from 1 to 65535, e.g. 22)"))
            })? as u16,
            None => 22,
        };
        let user = settings::text(settings, "user").map(str::trim).filter(|u| !u.is_empty()).map(String::from);
        if let Some(u) = &user
            && !u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(invalid(format!(
                "user \"{}\" is not a login name (use letters, digits, '.', '_' and '-')",
                thunderhead_core::text::escape(u)
            )));
        }
        let mut listed: Vec<String> = settings::text(settings, "hosts")
            .map(|h| h.split(',').map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        if let Some(file) = settings::text(settings, "host_file") {
            let text = std::fs::read_to_string(file).map_err(|e| {
                invalid(format!("host_file {file} cannot be read on the head node ({e}); give a readable file"))
            })?;
            listed.extend(
                text.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_string()).filter(|l| !l.is_empty()),
            );
        }
        if listed.is_empty() {
            return Err(invalid(
                "an ssh template needs its hosts (give --set hosts=HOST,HOST:PORT or --set host_file=FILE)".to_string(),
            ));
        }
        let mut hosts = Vec::new();
        for entry in listed {
            let host = parse_host(&entry, port, user.clone())?;
            if hosts.contains(&host) {
                return Err(invalid(format!("host {entry} is listed twice (list each host once; see nodes_per_host)")));
            }
            hosts.push(host);
        }
        let nodes_per_host = match settings.get("nodes_per_host") {
            Some(v) => settings::whole(v).filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                invalid(format!("nodes_per_host {v} is out of range (give a whole number from 1 to 1000)"))
            })? as usize,
            None => 1,
        };
        let remote_dir = crate::shell::checked_dir("remote_dir", settings::text(settings, "remote_dir"))?;
        let known_hosts = match settings::text(settings, "known_hosts") {
            Some(path) => PathBuf::from(path),
            None => home().join(".ssh/known_hosts"),
        };
        let connect_timeout = match settings::text(settings, "connect_timeout") {
            Some(t) => Duration::from_millis(thunderhead_core::duration::parse_duration(t)?),
            None => Duration::from_secs(10),
        };
        Ok(SshSettings { hosts, known_hosts, nodes_per_host, remote_dir, connect_timeout })
    }
}

fn parse_host(entry: &str, port: u16, user: Option<String>) -> thunderhead_core::Result<Host> {
    let bad = || {
        thunderhead_core::Error::invalid(format!(
            "host \"{}\" is not HOST or HOST:PORT (e.g. node7.lab.example.org or 10.0.0.7:2222)",
            thunderhead_core::text::escape(entry)
        ))
    };
    let (name, port) = match entry.rsplit_once(':') {
        Some((name, p)) => (name, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
        None => (entry, port),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let ok = !name.is_empty()
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    if !ok {
        return Err(bad());
    }
    Ok(Host { host: name.to_string(), port, user })
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}
