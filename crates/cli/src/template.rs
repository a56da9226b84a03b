//! `thunderhead template`: node templates, which say how burst nodes are deployed.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::show;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use thunderhead_core::size::NodeSize;
use thunderhead_core::view::TemplateView;

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Create a node template
    Create {
        name: String,
        /// Provider that deploys the nodes (see thunderhead provider list)
        #[arg(long)]
        provider: String,
        #[command(flatten)]
        fields: TemplateFields,
    },
    /// Change a template; a deployed set picks the changes up at its next start
    Edit {
        name: String,
        #[command(flatten)]
        fields: TemplateFields,
    },
    /// List templates
    List,
    /// Show one template
    Show { name: String },
    /// Delete a template that has no nodes
    Delete { name: String },
    /// Check that the provider can deploy nodes from this template
    Validate { name: String },
    /// Let a template that paused itself after failed deployments deploy again
    Resume { name: String },
}

#[derive(Args)]
pub struct TemplateFields {
    #[arg(long)]
    description: Option<String>,
    /// A provider setting, KEY=VALUE (repeat for more; KEY= removes it on edit); see
    /// thunderhead provider show NAME for the settings a provider takes
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Provider settings from a TOML file of KEY = VALUE lines; --set and the provider's own
    /// options override it
    #[arg(long, value_name = "FILE.toml")]
    settings: Option<PathBuf>,
    /// A secret setting of the provider, KEY=FILE: its value is read from FILE (its final line
    /// break dropped), never given on the command line; the head node stores it only sealed
    /// (repeat for more)
    #[arg(long = "secret", value_name = "KEY=FILE")]
    secrets: Vec<String>,
    /// Cores the provider account may run at once, proxies included [default: 20]
    #[arg(long)]
    quota_cores: Option<u32>,
    /// Small proxy instances deployed with a started set [default: 2 for providers whose agents
    /// reach the head node through proxies, 0 for the others]
    #[arg(long)]
    proxies: Option<u32>,
    /// Prefix of the names of new nodes, e.g. Burst- [default: <Provider>CN-]
    #[arg(long)]
    series_prefix: Option<String>,
    /// Deployments started per minute, at most [default: 300]
    #[arg(long)]
    deploy_rate: Option<u32>,
    /// Times a failed deployment of a node is tried again [default: 2]
    #[arg(long)]
    deploy_retries: Option<u32>,
    /// Consecutive failed deployments after which the template pauses itself [default: 5]
    #[arg(long)]
    pause_after_failures: Option<u32>,
    /// How long a deployed node may take until its agent connects before it is removed and
    /// Unknown, e.g. 10m; empty for the head node's --provision-timeout
    #[arg(long)]
    boot_timeout: Option<String>,
    /// Hourly prices by size, e.g. Small=0.10,Medium=0.20; Small=list goes back to the list
    /// price [default: the 2011 list prices]
    #[arg(long)]
    rates: Option<String>,
    /// The currency of the prices [default: USD]
    #[arg(long)]
    currency: Option<String>,
    /// azure provider: the subscription's GUID
    #[arg(long)]
    subscription_id: Option<String>,
    /// azure provider: the cloud service name
    #[arg(long)]
    service_name: Option<String>,
    /// azure provider: the storage account name
    #[arg(long)]
    storage_account: Option<String>,
    /// azure provider: the management certificate, a PKCS#12 (PFX) file with a protected key
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// azure provider: a file holding the certificate's password
    #[arg(long)]
    certificate_password_file: Option<PathBuf>,
    /// azure provider: the certificate's SHA-1 thumbprint, to check it (spaces and any case allowed)
    #[arg(long)]
    thumbprint: Option<String>,
    /// When the set runs: manual, or schedule (weekly windows)
    #[arg(long)]
    availability: Option<String>,
    /// A weekly window of a schedule, e.g. 'Mon-Fri 08:00-18:00' (repeat for more)
    #[arg(long = "window")]
    windows: Vec<String>,
    /// The time zone of the windows, e.g. Europe/Prague [default: UTC]
    #[arg(long)]
    timezone: Option<String>,
    /// How long before a window the set is started, e.g. 10m [default: 10m]
    #[arg(long)]
    lead_time: Option<String>,
    /// How long before a window's end the set is drained, e.g. 15m [default: 0]
    #[arg(long)]
    drain_before_end: Option<String>,
    /// local and sim providers: where node directories are created [default: STATE/nodes]
    #[arg(long)]
    work_root: Option<PathBuf>,
    /// Where the template's packages are kept: file:///DIR, az://ACCOUNT/CONTAINER or s3://BUCKET
    /// [default: the head node's store; an azure template's storage account]
    #[arg(long)]
    blob_store: Option<String>,
    /// Install this version of a package on the template's nodes: NAME=VERSION, or NAME=latest
    /// (repeat for more)
    #[arg(long = "pin-package")]
    pins: Vec<String>,
    /// sim provider: how long a deployment takes, MIN..MAX [default: 1s..3s]
    #[arg(long)]
    sim_deploy_time: Option<String>,
    /// sim provider: probability that a deployment fails, 0 to 1 [default: 0]
    #[arg(long)]
    sim_failure_rate: Option<f64>,
    /// sim provider: the most nodes the simulated cloud holds at once [default: unlimited]
    #[arg(long)]
    sim_capacity: Option<u32>,
    /// sim provider: seed that makes the rehearsal repeatable [default: 0]
    #[arg(long)]
    sim_seed: Option<u64>,
    /// sim provider: run nodes as light agents inside the head node, which finish each task at
    /// once (for rehearsing thousands of nodes)
    #[arg(long)]
    sim_light: bool,
}

impl TemplateFields {
    /// The JSON body of a create or edit request.
    fn body(self) -> Result<serde_json::Map<String, Value>> {
        let mut settings = match &self.settings {
            Some(path) => settings_file(path)?,
            None => serde_json::Map::new(),
        };
        for pair in &self.set {
            let (key, value) = setting(pair)?;
            settings.insert(key, value);
        }
        if let Some(root) = self.work_root {
            let root = std::path::absolute(&root).unwrap_or(root);
            settings.insert("work_root".into(), Value::String(root.display().to_string()));
        }
        let sim = [
            ("deploy_time", self.sim_deploy_time.map(Value::from)),
            ("failure_rate", self.sim_failure_rate.map(Value::from)),
            ("capacity", self.sim_capacity.map(Value::from)),
            ("seed", self.sim_seed.map(Value::from)),
            ("light", self.sim_light.then_some(Value::Bool(true))),
            ("subscription_id", self.subscription_id.map(Value::from)),
            ("service_name", self.service_name.map(Value::from)),
            ("storage_account", self.storage_account.map(Value::from)),
            ("thumbprint", self.thumbprint.map(Value::from)),
        ];
        for (key, value) in sim {
            if let Some(v) = value {
                settings.insert(key.into(), v);
            }
        }
        let mut body = serde_json::Map::new();
        body.insert("settings".into(), Value::Object(settings));
        let fields = [
            ("description", self.description.map(Value::from)),
            ("quota_cores", self.quota_cores.map(Value::from)),
            ("proxies", self.proxies.map(Value::from)),
            ("series_prefix", self.series_prefix.map(Value::from)),
            ("deploy_rate", self.deploy_rate.map(Value::from)),
            ("deploy_retries", self.deploy_retries.map(Value::from)),
            ("pause_after_failures", self.pause_after_failures.map(Value::from)),
            ("boot_timeout", self.boot_timeout.map(Value::from)),
            ("rates", self.rates.map(Value::from)),
            ("currency", self.currency.map(Value::from)),
            ("availability", self.availability.map(Value::from)),
            ("windows", (!self.windows.is_empty()).then(|| Value::from(self.windows))),
            ("timezone", self.timezone.map(Value::from)),
            ("lead_time", self.lead_time.map(Value::from)),
            ("drain_before_end", self.drain_before_end.map(Value::from)),
            ("pin", (!self.pins.is_empty()).then(|| Value::from(self.pins))),
            ("blob_store", self.blob_store.map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                body.insert(key.into(), v);
            }
        }
        let mut secrets = serde_json::Map::new();
        for pair in &self.secrets {
            let (key, path) =
                pair.split_once('=').filter(|(k, p)| !k.trim().is_empty() && !p.is_empty()).ok_or_else(|| {
                    anyhow::anyhow!("--secret {pair:?} is not KEY=FILE (e.g. --secret certificate_password=pw.txt)")
                })?;
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read the secret {key} from {path}"))?;
            secrets.insert(key.trim().to_string(), Value::from(text.trim_end_matches(['\n', '\r'])));
        }
        if !secrets.is_empty() {
            body.insert("secrets".into(), Value::Object(secrets));
        }
        if let Some(path) = &self.certificate {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read the certificate {}", path.display()))?;
            body.insert(
                "certificate".into(),
                Value::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            );
        }
        if let Some(path) = &self.certificate_password_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the certificate password file {}", path.display()))?;
            // The file's final line break is not part of the password.
            let password = text.trim_end_matches(['\n', '\r']);
            body.insert("certificate_password".into(), Value::from(password));
        }
        Ok(body)
    }
}

/// `KEY=VALUE` of `--set`: the value as text (the provider reads numbers and truth values from
/// text); an empty value is `null`, which removes the setting on edit.
fn setting(pair: &str) -> Result<(String, Value)> {
    let (key, value) = pair.split_once('=').filter(|(k, _)| !k.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!("--set {pair:?} is not KEY=VALUE (e.g. --set work_root=/scratch/nodes; KEY= removes a setting)")
    })?;
    let value = if value.is_empty() { Value::Null } else { Value::from(value) };
    Ok((key.trim().to_string(), value))
}

/// The settings of a TOML file: one flat table of text, numbers and truth values.
fn settings_file(path: &std::path::Path) -> Result<serde_json::Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the settings file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("the settings file {} is not TOML", path.display()))?;
    let mut settings = serde_json::Map::new();
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => Value::from(s),
            toml::Value::Integer(i) => Value::from(i),
            toml::Value::Float(f) => Value::from(f),
            toml::Value::Boolean(b) => Value::from(b),
            other => anyhow::bail!(
                "setting {key} in {} is a {}, not text, a number or true/false (write {key} = \"...\")",
                path.display(),
                other.type_str()
            ),
        };
        settings.insert(key, value);
    }
    Ok(settings)
}

pub fn run(c: &Client, command: TemplateCommand, out: Output) -> Result<i32> {
    match command {
        TemplateCommand::Create { name, provider, fields } => {
            let mut body = fields.body()?;
            body.insert("name".into(), Value::from(name));
            body.insert("provider".into(), Value::from(provider));
            let t: TemplateView = c.post(&ApiPath::new("templates"), &body)?;
            out.one(&t, |t| println!("created template {} (provider {})", t.name, t.provider));
        }
        TemplateCommand::Edit { name, fields } => {
            let t: TemplateView = c.patch(&ApiPath::new("templates").segment(&name), &fields.body()?)?;
            out.one(&t, |t| {
                println!(
                    "changed template {}: deployments from now on use it; an availability policy applies at once",
                    t.name
                );
            });
        }
        TemplateCommand::Resume { name } => {
            let t: TemplateView = c.post(&ApiPath::new("templates").segment(&name).segment("resume"), &json!({}))?;
            out.one(&t, |t| println!("template {} deploys again", t.name));
        }
        TemplateCommand::List => {
            let list: Vec<TemplateView> = c.get(&ApiPath::new("templates"))?;
            out.list(&list, &["name", "provider", "nodes", "description"], |t| {
                vec![t.name.clone(), t.provider.clone(), t.nodes.to_string(), t.description.clone()]
            });
        }
        TemplateCommand::Show { name } => {
            let t: TemplateView = c.get(&ApiPath::new("templates").segment(&name))?;
            out.one(&t, print_template);
        }
        TemplateCommand::Delete { name } => {
            c.delete(&ApiPath::new("templates").segment(&name))?;
            out.note(format_args!("deleted template {name}"));
        }
        TemplateCommand::Validate { name } => {
            let checks: Vec<Value> =
                c.post(&ApiPath::new("templates").segment(&name).segment("validate"), &json!({}))?;
            out.list(&checks, &["check", "result", "detail"], |c| {
                vec![
                    c["name"].as_str().unwrap_or("").to_string(),
                    if c["ok"] == Value::Bool(true) { "OK" } else { "FAILED" }.to_string(),
                    c["detail"].as_str().unwrap_or("").to_string(),
                ]
            });
            let ok = checks.iter().all(|c| c["ok"] == Value::Bool(true));
            return Ok(if ok { 0 } else { 1 });
        }
    }
    Ok(0)
}

/// A template as `template show` prints it for people.
fn print_template(t: &TemplateView) {
    println!("name:        {}", t.name);
    println!("provider:    {}", t.provider);
    println!("description: {}", t.description);
    println!("nodes:       {} ({} cores)", t.nodes, t.node_cores);
    println!("quota:       {} cores (nodes and proxies)", t.quota_cores);
    println!("proxies:     {}", t.proxies);
    println!("names:       {}0001, …", t.series_prefix);
    println!(
        "deploying:   {} per minute, {} retries, pauses after {} failures in a row",
        t.deploy_rate, t.deploy_retries, t.pause_after_failures
    );
    match t.boot_timeout {
        Some(ms) => println!("boot:        agents connect within {} s of deployment", ms / 1000),
        None => println!("boot:        agents connect within the head node's --provision-timeout"),
    }
    let rates: Vec<String> = ["Small", "Medium", "Large", "ExtraLarge"]
        .iter()
        .map(|s| {
            let size = NodeSize::parse(s).expect("known size");
            let micros = t.rates.get(*s).copied().unwrap_or_else(|| thunderhead_core::cost::default_rate_micros(size));
            format!("{s} {}", thunderhead_core::cost::format_money(micros))
        })
        .collect();
    println!("prices:      {} {} per hour", rates.join(", "), t.currency);
    if !t.pins.is_empty() {
        let pins: Vec<String> = t.pins.iter().map(|(name, version)| format!("{name}={version}")).collect();
        println!("pinned:      {}", pins.join(", "));
    }
    match &t.availability {
        thunderhead_core::availability::Availability::Manual => println!("availability: manual"),
        thunderhead_core::availability::Availability::Schedule { windows, timezone, lead_time, drain_before_end } => {
            let windows: Vec<String> = windows.iter().map(ToString::to_string).collect();
            println!(
                "availability: schedule {} ({timezone}), started {} before, drained {} before the end",
                windows.join("; "),
                show::duration(*lead_time),
                show::duration(*drain_before_end)
            );
        }
    }
    for p in &t.proxy_list {
        let detail = p.url.clone().or_else(|| p.cause.clone()).unwrap_or_default();
        println!("proxy:       {} {} {detail}", p.name, p.state);
    }
    if let Some(why) = &t.paused {
        println!("PAUSED:      {why} (thunderhead template resume {})", t.name);
    }
    println!("created:     {}", show::time(Some(t.created_at)));
    for (k, v) in &t.settings {
        println!("{k}: {}", v.as_str().map_or_else(|| v.to_string(), str::to_string));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_takes_key_equals_value_and_an_empty_value_removes() {
        assert_eq!(setting("capacity=10").unwrap(), ("capacity".to_string(), Value::from("10")));
        assert_eq!(setting("deploy_time=1s..2s").unwrap().1, Value::from("1s..2s"));
        assert_eq!(setting("seed=").unwrap().1, Value::Null);
        for bad in ["capacity", "=10", ""] {
            assert!(setting(bad).unwrap_err().to_string().contains("KEY=VALUE"), "{bad:?}");
        }
    }

    #[test]
    fn a_settings_file_is_one_flat_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sim.toml");
        std::fs::write(&file, "deploy_time = \"0ms\"\nfailure_rate = 0.5\ncapacity = 3\nlight = true\n").unwrap();
        let s = settings_file(&file).unwrap();
        assert_eq!(Value::Object(s), json!({"deploy_time": "0ms", "failure_rate": 0.5, "capacity": 3, "light": true}));
        std::fs::write(&file, "[nested]\nx = 1\n").unwrap();
        assert!(settings_file(&file).unwrap_err().to_string().contains("setting nested"));
    }
}
