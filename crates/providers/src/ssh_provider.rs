//! The `ssh` provider: burst nodes on machines the user can log into (a rack of workstations,
//! a lab's servers).
//!
//! Each node is an agent process on one of the template's hosts, started over SSH with the
//! system's OpenSSH client (see [`remote`]). Deploying copies this program to the host when it
//! lacks this exact build (checked by SHA-256), then starts `thunderhead agent` detached, in a
//! session of its own that outlives the SSH connection, in a node directory under the
//! template's `remote_dir`. The join grant reaches the agent on its standard input, never on a
//! command line. The handle names the host, the agent's pid and its directory; removing ends
//! the agent's process group and removes the directory, and removing what is gone succeeds.

mod remote;
mod ssh_settings;

use crate::shell::{last_line, quote};
use crate::{
    BoxFuture, Check, DeployRequest, ExternalStatus, Found, Provider, ProviderError, ProxyRequest, Result, Set,
};
use crate::{SettingKind, SettingSpec};
use remote::{Host, Input, KeyAgent, Options};
use serde_json::{Map, Value};
use ssh_settings::SshSettings;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thunderhead_core::provider_rules::Derived;

/// What the `ssh` provider declares.
pub static INFO: crate::ProviderInfo = crate::ProviderInfo {
    name: "ssh",
    summary: "agents on hosts you can log into over SSH, started detached; this program is copied to them",
    settings: &[
        SettingSpec::new("hosts", SettingKind::Text, "the hosts, comma-separated, each HOST or HOST:PORT"),
        SettingSpec::new("host_file", SettingKind::File, "a file of hosts on the head node, one HOST[:PORT] a line"),
        SettingSpec::new("user", SettingKind::Text, "the login user on the hosts").or("the head node's user"),
        SettingSpec::new("port", SettingKind::Number, "the SSH port of hosts that name none, 1 to 65535").or("22"),
        SettingSpec::new(
            "identity",
            SettingKind::Secret,
            "an OpenSSH private key without a passphrase (--secret identity=FILE); held in an ssh-agent, never on disk",
        )
        .or("the head node user's own keys and agent"),
        SettingSpec::new(
            "known_hosts",
            SettingKind::File,
            "a known_hosts file with every host's key; an unknown or changed host key is refused",
        )
        .or("~/.ssh/known_hosts of the head node's user"),
        SettingSpec::new("nodes_per_host", SettingKind::Number, "how many of the set's nodes may share one host, 1 to 1000")
            .or("1"),
        SettingSpec::new(
            "remote_dir",
            SettingKind::Text,
            "where Thunderhead keeps its program and node directories on the hosts, absolute or from the login directory",
        )
        .or(".thunderhead"),
        SettingSpec::new("connect_timeout", SettingKind::Duration, "how long one SSH connection may take").or("10s"),
    ],
    deployable: true,
    proxies: false,
    sizes: None,
    handle_version: SSH_HANDLE_VERSION,
    gone: "the agent process on its host exited or was killed (see agent.log in its node directory there)",
};

/// The version of the handles this provider writes.
const SSH_HANDLE_VERSION: u64 = 1;
/// The longest one command on a host may take (copying this program included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a host that could not be reached is passed over when nodes are placed.
const DOWN_FOR: Duration = Duration::from_secs(60);

/// What the head node keeps of an ssh node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SshHandle {
    v: u64,
    host: Host,
    /// The agent's pid on the host, and its start time (clock ticks after boot, from
    /// `/proc/PID/stat`), which tells it from a later process with the same pid.
    pid: u32,
    start: u64,
    /// Its node directory on the host, as given to the shell there (from the login directory).
    dir: String,
    node: String,
}

fn parse(handle: &Value) -> Result<SshHandle> {
    crate::read_handle(handle, "ssh", SSH_HANDLE_VERSION, "run the newer head node")
}

/// The `ssh` provider.
pub struct SshProvider {
    agent_program: PathBuf,
    /// Tells this head node's node directories on a host from another's.
    cluster: String,
    /// Control sockets and the key agent's socket (0700).
    runtime_dir: PathBuf,
    keys: KeyAgent,
    /// The checksum of `agent_program`, once computed.
    checksum: tokio::sync::OnceCell<String>,
    /// Hosts known to hold this build, and one lock per host so it is copied once.
    copied: Mutex<HashMap<Host, Arc<tokio::sync::Mutex<bool>>>>,
    /// Which host each node of each set is placed on, by template; loaded from the hosts when a
    /// set is first deployed after a restart.
    placed: tokio::sync::Mutex<HashMap<String, HashMap<String, Host>>>,
    /// Hosts that could not be reached lately.
    down: Mutex<HashMap<Host, Instant>>,
}

impl SshProvider {
    /// A provider whose nodes run `agent_program` (copied to the hosts), keeping its sockets
    /// in a private directory named for `state_dir`.
    pub fn new(agent_program: PathBuf, state_dir: &Path) -> SshProvider {
        let cluster = crate::shell::cluster_tag(state_dir);
        let uid = nix::unistd::getuid();
        // OpenSSH's control sockets live here: their paths must stay short (about 49 characters
        // for the directory), so a long TMPDIR gives way to /tmp.
        let name = format!("thunderhead-ssh-{uid}-{}", &cluster[3..]);
        let mut runtime_dir = std::env::temp_dir().join(&name);
        if runtime_dir.as_os_str().len() > 49 {
            runtime_dir = PathBuf::from("/tmp").join(&name);
        }
        SshProvider {
            agent_program,
            cluster,
            keys: KeyAgent::new(runtime_dir.clone()),
            runtime_dir,
            checksum: tokio::sync::OnceCell::new(),
            copied: Mutex::new(HashMap::new()),
            placed: tokio::sync::Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
        }
    }

    fn settings(set: &Set) -> Result<SshSettings> {
        SshSettings::read(&set.template.settings).map_err(|e| ProviderError::fatal(e.message))
    }

    /// The private directory of sockets, made if missing; refused if someone else could use it.
    fn runtime_dir(&self) -> Result<&Path> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let dir = &self.runtime_dir;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| ProviderError::fatal(format!("cannot create {}: {e}", dir.display())))?;
        if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() || meta.permissions().mode() & 0o077 != 0 {
            return Err(ProviderError::fatal(format!(
                "{} is not a private directory of this user (remove it and try again)",
                dir.display()
            )));
        }
        Ok(dir)
    }

    async fn options(&self, set: &Set, settings: &SshSettings) -> Result<Options> {
        let control_dir = self.runtime_dir()?.to_path_buf();
        let identity = match set.secret("identity") {
            Some(key) => Some(self.keys.hold(key).await?),
            None => None,
        };
        Ok(Options {
            known_hosts: settings.known_hosts.clone(),
            identity,
            connect_timeout: settings.connect_timeout,
            control_dir,
        })
    }

    fn set_dir(&self, settings: &SshSettings, template: &str) -> String {
        format!("{}/{}/{template}", settings.remote_dir, self.cluster)
    }

    async fn checksum(&self) -> Result<&String> {
        self.checksum
            .get_or_try_init(|| async {
                let path = self.agent_program.clone();
                tokio::task::spawn_blocking(move || -> Result<String> {
                    use sha2::Digest;
                    let mut file = std::fs::File::open(&path)
                        .map_err(|e| ProviderError::fatal(format!("cannot read {}: {e}", path.display())))?;
                    let mut hasher = sha2::Sha256::new();
                    std::io::copy(&mut file, &mut hasher)
                        .map_err(|e| ProviderError::fatal(format!("cannot read {}: {e}", path.display())))?;
                    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
                })
                .await
                .map_err(|e| ProviderError::transient(format!("checksumming the program was interrupted: {e}")))?
            })
            .await
    }

    /// The path of this build's program on `host`, copied there first if the host lacks it.
    async fn ensure_program(&self, host: &Host, options: &Options, settings: &SshSettings) -> Result<String> {
        let sum = self.checksum().await?.clone();
        let bin = format!("{}/bin/thunderhead-{}", settings.remote_dir, &sum[..16]);
        let lock = self.copied.lock().expect("copied").entry(host.clone()).or_default().clone();
        let mut present = lock.lock().await;
        if *present {
            return Ok(bin);
        }
        let check = format!(
            "b={}; if [ -x \"$b\" ] && [ \"$(sha256sum < \"$b\" | cut -d' ' -f1)\" = {sum} ]; then echo present; else echo missing; fi",
            quote(&bin)
        );
        let ran = remote::run_retrying(host, options, &check, Input::Bytes(b""), COMMAND_TIMEOUT).await?;
        if ran.stdout.trim() != "present" {
            let copy = format!(
                "set -e; b={b}; mkdir -p \"$(dirname \"$b\")\"; t=\"$b.upload-$$\"; cat > \"$t\"; \
                 s=$(sha256sum < \"$t\" | cut -d' ' -f1); \
                 if [ \"$s\" != {sum} ]; then rm -f \"$t\"; echo \"the copy arrived with checksum $s\" >&2; exit 3; fi; \
                 chmod 755 \"$t\"; mv -f \"$t\" \"$b\"",
                b = quote(&bin)
            );
            let ran = remote::run(host, options, &copy, Input::File(&self.agent_program), COMMAND_TIMEOUT).await?;
            if ran.status != 0 {
                return Err(ProviderError::transient(format!(
                    "copying this program to {host} failed: {}",
                    last_line(&ran.stderr)
                )));
            }
            tracing::info!(%host, "copied this program to the host");
        }
        *present = true;
        Ok(bin)
    }

    /// Chooses the host of `node`: the host it had, else the one holding fewest of the set's
    /// nodes with room left, passing over hosts that could not be reached lately.
    async fn place(&self, set: &Set, settings: &SshSettings, options: &Options, node: &str) -> Result<Host> {
        let mut placed = self.placed.lock().await;
        if !placed.contains_key(&set.template.name) {
            // After a restart: what runs on the hosts (hosts that do not answer hold nothing).
            let found = self.look(set, settings, options).await;
            let nodes = found
                .into_iter()
                .flatten()
                .flatten()
                .filter(|(_, live)| *live)
                .map(|(h, _)| (h.node, h.host))
                .collect();
            placed.insert(set.template.name.clone(), nodes);
        }
        let nodes = placed.get_mut(&set.template.name).expect("loaded");
        if let Some(host) = nodes.get(node)
            && settings.hosts.contains(host)
        {
            return Ok(host.clone());
        }
        let down = self.down.lock().expect("down").clone();
        let count = |h: &Host| nodes.values().filter(|p| *p == h).count();
        let recently_down = |h: &Host| down.get(h).is_some_and(|at| at.elapsed() < DOWN_FOR);
        let choice = settings
            .hosts
            .iter()
            .filter(|h| count(h) < settings.nodes_per_host)
            .min_by_key(|h| (recently_down(h), count(h)))
            .cloned()
            .ok_or_else(|| {
                ProviderError::fatal(format!(
                    "every host of template {} holds {} node(s) of the set already ({} host(s)); add hosts or raise nodes_per_host",
                    set.template.name,
                    settings.nodes_per_host,
                    settings.hosts.len()
                ))
            })?;
        nodes.insert(node.to_string(), choice.clone());
        Ok(choice)
    }

    async fn unplace(&self, template: &str, node: &str) {
        if let Some(nodes) = self.placed.lock().await.get_mut(template) {
            nodes.remove(node);
        }
    }

    async fn deploy_node(&self, request: &DeployRequest) -> Result<SshHandle> {
        let set = Set { template: request.template.clone(), secrets: request.secrets.clone() };
        let settings = Self::settings(&set)?;
        let options = self.options(&set, &settings).await?;
        let host = self.place(&set, &settings, &options, &request.node).await?;
        let started = self.start_agent(request, &settings, &options, &host).await;
        if let Err(e) = &started {
            self.unplace(&set.template.name, &request.node).await;
            if e.transient {
                self.down.lock().expect("down").insert(host.clone(), Instant::now());
            }
        }
        started
    }

    async fn start_agent(
        &self,
        request: &DeployRequest,
        settings: &SshSettings,
        options: &Options,
        host: &Host,
    ) -> Result<SshHandle> {
        let bin = self.ensure_program(host, options, settings).await?;
        let dir = format!("{}/{}", self.set_dir(settings, &request.template.name), request.node);
        let mut agent = vec![
            "agent".to_string(),
            "--server".into(),
            request.server_url.clone(),
            "--name".into(),
            request.node.clone(),
            "--cores".into(),
            request.size.cores().to_string(),
            "--work-dir".into(),
        ];
        let mut command: Vec<String> = agent.drain(..).map(|a| quote(&a)).collect();
        command.push("\"$PWD\"".into());
        if request.join.is_some() {
            command.push("--join-from-stdin".into());
        }
        // The grant goes through a file only this user can read, opened and unlinked before
        // the agent starts, so it never sits on disk while the agent runs.
        let script = format!(
            "set -e; d={d}; {end_old} rm -rf \"$d\"; mkdir -p \"$d\"; chmod 700 \"$d\"; cd \"$d\"; umask 077; \
             echo {label} > host; cat > join; exec 3< join; rm -f join; \
             setsid {bin} {command} <&3 >agent.log 2>&1 & \
             p=$!; echo $p > agent.pid; exec 3<&-; t=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f20); echo $t > agent.start; \
             sleep 0.2; {alive} if alive $p $t; then echo \"started $p $t\"; else echo \"exited: $(tail -n 3 agent.log)\"; fi",
            d = quote(&dir),
            label = quote(&host.to_string()),
            alive = ALIVE,
            end_old = end_agent_script("\"$d\""),
            bin = if bin.starts_with('/') { quote(&bin) } else { format!("\"$HOME\"/{}", quote(&bin)) },
            command = command.join(" "),
        );
        let grant = request.join.as_ref().map(|g| g.to_document()).unwrap_or_default();
        let ran = remote::run_retrying(host, options, &script, Input::Bytes(&grant), COMMAND_TIMEOUT).await?;
        let said = ran.stdout.trim();
        let started = said.strip_prefix("started ").and_then(|rest| {
            let (pid, start) = rest.trim().split_once(' ')?;
            Some((pid.parse::<u32>().ok()?, start.parse::<u64>().ok()?))
        });
        match started {
            Some((pid, start)) if ran.status == 0 => {
                Ok(SshHandle { v: SSH_HANDLE_VERSION, host: host.clone(), pid, start, dir, node: request.node.clone() })
            }
            _ => Err(ProviderError::transient(format!(
                "the agent did not start on {host}: {}",
                if said.is_empty() { last_line(&ran.stderr) } else { said.to_string() }
            ))),
        }
    }

    /// The set's node directories on each host, with the pid each records and whether that
    /// agent still runs; `None` for a host that could not be asked.
    async fn look(&self, set: &Set, settings: &SshSettings, options: &Options) -> Vec<Option<Vec<(SshHandle, bool)>>> {
        let set_dir = self.set_dir(settings, &set.template.name);
        let script = format!(
            "{ALIVE} cd {s} 2>/dev/null || exit 0; for d in *; do [ -d \"$d\" ] || continue; \
             [ \"$(cat \"$d/host\" 2>/dev/null)\" = \"$1\" ] || continue; p=$(cat \"$d/agent.pid\" 2>/dev/null || echo 0); \
             t=$(cat \"$d/agent.start\" 2>/dev/null || echo 0); \
             if alive \"$p\" \"$t\"; then echo \"$d $p $t live\"; else echo \"$d $p $t dead\"; fi; done",
            s = quote(&set_dir)
        );
        let asks = settings.hosts.iter().map(|host| {
            let script = &script;
            let set_dir = &set_dir;
            async move {
                // A home directory shared between hosts (NFS) holds every host's node
                // directories: each says which host it belongs to.
                let script = format!("set -- {}; {script}", quote(&host.to_string()));
                let ran = remote::run(host, options, &script, Input::Bytes(b""), COMMAND_TIMEOUT).await.ok()?;
                let found = ran
                    .stdout
                    .lines()
                    .filter_map(|l| {
                        let mut words = l.split(' ');
                        let (node, pid, start) = (words.next()?, words.next()?, words.next()?);
                        let live = words.next()?;
                        let handle = SshHandle {
                            v: SSH_HANDLE_VERSION,
                            host: host.clone(),
                            pid: pid.trim().parse().ok()?,
                            start: start.trim().parse().ok()?,
                            dir: format!("{set_dir}/{node}"),
                            node: node.to_string(),
                        };
                        Some((handle, live == "live"))
                    })
                    .collect();
                Some(found)
            }
        });
        futures_util::future::join_all(asks).await
    }
}

impl Drop for SshProvider {
    fn drop(&mut self) {
        remote::close_masters(&self.runtime_dir);
    }
}

/// Shell that defines `alive PID START`: whether process PID runs (not a zombie) and started at
/// START, as `/proc/PID/stat` says.
const ALIVE: &str = "alive() { [ \"$1\" -gt 0 ] 2>/dev/null && awk -v want=\"$2\" \
    '{ sub(/.*\\) /, \"\"); split($0, f, \" \"); exit !(f[1] != \"Z\" && f[20] == want) }' /proc/$1/stat 2>/dev/null; };";

/// Shell that ends the agent recorded in directory `dir` (a shell word) if it still runs there:
/// its process group gets SIGTERM, then SIGKILL after 5 s.
fn end_agent_script(dir: &str) -> String {
    format!(
        "{ALIVE} p=$(cat {dir}/agent.pid 2>/dev/null || echo 0); t=$(cat {dir}/agent.start 2>/dev/null || echo 0); \
         if alive \"$p\" \"$t\"; then \
         kill -TERM -\"$p\" 2>/dev/null || true; i=0; \
         while [ $i -lt 50 ] && alive \"$p\" \"$t\"; do sleep 0.1; i=$((i+1)); done; \
         kill -KILL -\"$p\" 2>/dev/null || true; fi;"
    )
}

impl Provider for SshProvider {
    fn info(&self) -> &'static crate::ProviderInfo {
        &INFO
    }

    fn check_settings(&self, settings: &mut Map<String, Value>, _sealed: bool) -> thunderhead_core::Result<Derived> {
        SshSettings::read(settings)?;
        Ok(Derived::default())
    }

    fn take_secrets(
        &self,
        given: Option<&std::collections::BTreeMap<String, String>>,
        _settings: &mut Map<String, Value>,
        _creating: bool,
    ) -> thunderhead_core::Result<()> {
        match given.and_then(|g| g.get("identity")) {
            Some(key) => remote::check_private_key(key).map_err(thunderhead_core::Error::invalid),
            None => Ok(()),
        }
    }

    fn validate<'a>(&'a self, set: &'a Set) -> BoxFuture<'a, Vec<Check>> {
        Box::pin(async move {
            let fail = |name: &str, detail: String| vec![Check { name: name.into(), ok: false, detail }];
            let settings = match Self::settings(set) {
                Ok(s) => s,
                Err(e) => return fail("settings", e.message),
            };
            let options = match self.options(set, &settings).await {
                Ok(o) => o,
                Err(e) => return fail("identity", e.message),
            };
            let mut checks = vec![Check {
                name: "known hosts".into(),
                ok: settings.known_hosts.is_file(),
                detail: format!("{} (unknown or changed host keys are refused)", settings.known_hosts.display()),
            }];
            let ours = format!("Linux {}", std::env::consts::ARCH);
            let ours = &ours;
            let asks = settings.hosts.iter().map(|host| {
                let options = &options;
                async move {
                    let ran = remote::run(
                        host,
                        options,
                        "uname -sm; command -v setsid sha256sum >/dev/null && echo tools",
                        Input::Bytes(b""),
                        COMMAND_TIMEOUT,
                    )
                    .await;
                    let (ok, detail) = match ran {
                        Ok(r) if r.stdout.lines().next() == Some(ours.as_str()) && r.stdout.contains("tools") => {
                            (true, format!("reachable, {ours} like the head node"))
                        }
                        Ok(r) if !r.stdout.contains("tools") => {
                            (false, "reachable, but setsid or sha256sum is missing there".into())
                        }
                        Ok(r) => (
                            false,
                            format!(
                                "reachable, but it runs {} and this program is built for {ours}",
                                r.stdout.lines().next().unwrap_or("?")
                            ),
                        ),
                        Err(e) => (false, e.message),
                    };
                    Check { name: format!("host {host}"), ok, detail }
                }
            });
            checks.extend(futures_util::future::join_all(asks).await);
            checks
        })
    }

    fn deploy<'a>(&'a self, request: &'a DeployRequest) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            let handle = self.deploy_node(request).await?;
            Ok(serde_json::to_value(handle).expect("handles serialise"))
        })
    }

    fn deploy_proxy<'a>(&'a self, _request: &'a ProxyRequest) -> BoxFuture<'a, Result<(Value, String)>> {
        Box::pin(async {
            Err(ProviderError::fatal(
                "ssh nodes reach the head node directly: their sets run no proxies (give --proxies 0)",
            ))
        })
    }

    fn status<'a>(&'a self, set: &'a Set, handles: &'a [Value]) -> BoxFuture<'a, Vec<Result<ExternalStatus>>> {
        Box::pin(async move {
            let parsed: Vec<Result<SshHandle>> = handles.iter().map(parse).collect();
            let mut out: Vec<Result<ExternalStatus>> =
                parsed.iter().map(|p| p.clone().map(|_| ExternalStatus::Gone)).collect();
            let settings = match Self::settings(set) {
                Ok(s) => s,
                Err(e) => return handles.iter().map(|_| Err(e.clone())).collect(),
            };
            let options = match self.options(set, &settings).await {
                Ok(o) => o,
                Err(e) => return handles.iter().map(|_| Err(e.clone())).collect(),
            };
            // One command per host for all of its nodes.
            let mut by_host: HashMap<Host, Vec<usize>> = HashMap::new();
            for (i, p) in parsed.iter().enumerate() {
                if let Ok(h) = p {
                    by_host.entry(h.host.clone()).or_default().push(i);
                }
            }
            let asks = by_host.into_iter().map(|(host, indices)| {
                let script: String = indices
                    .iter()
                    .map(|&i| {
                        let h = parsed[i].as_ref().expect("parsed");
                        format!(
                            "if alive {p} {t}; then echo \"{i} running\"; else echo \"{i} gone\"; fi; ",
                            p = h.pid,
                            t = h.start,
                        )
                    })
                    .collect();
                let script = format!("{ALIVE} {script}");
                let options = &options;
                async move {
                    (indices, remote::run_retrying(&host, options, &script, Input::Bytes(b""), COMMAND_TIMEOUT).await)
                }
            });
            for (indices, ran) in futures_util::future::join_all(asks).await {
                match ran {
                    Ok(ran) => {
                        let running: HashSet<usize> = ran
                            .stdout
                            .lines()
                            .filter_map(|l| l.strip_suffix(" running"))
                            .filter_map(|i| i.parse().ok())
                            .collect();
                        for i in indices {
                            out[i] =
                                Ok(if running.contains(&i) { ExternalStatus::Running } else { ExternalStatus::Gone });
                        }
                    }
                    Err(e) => {
                        for i in indices {
                            out[i] = Err(e.clone());
                        }
                    }
                }
            }
            out
        })
    }

    fn remove<'a>(&'a self, set: &'a Set, handle: &'a Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let handle = parse(handle)?;
            let settings = Self::settings(set)?;
            let options = self.options(set, &settings).await?;
            let script = format!("d={}; {} rm -rf \"$d\"", quote(&handle.dir), end_agent_script("\"$d\""));
            let ran = remote::run_retrying(&handle.host, &options, &script, Input::Bytes(b""), COMMAND_TIMEOUT).await?;
            if ran.status != 0 {
                return Err(ProviderError::transient(format!(
                    "removing {} on {} failed: {}",
                    handle.dir,
                    handle.host,
                    last_line(&ran.stderr)
                )));
            }
            let mut placed = self.placed.lock().await;
            if let Some(nodes) = placed.get_mut(&set.template.name)
                && nodes.get(&handle.node) == Some(&handle.host)
            {
                nodes.remove(&handle.node);
            }
            Ok(())
        })
    }

    fn inventory<'a>(&'a self, set: &'a Set) -> BoxFuture<'a, Result<Vec<Found>>> {
        Box::pin(async move {
            let settings = Self::settings(set)?;
            let options = self.options(set, &settings).await?;
            let looked = self.look(set, &settings, &options).await;
            if looked.iter().all(Option::is_none) && !settings.hosts.is_empty() {
                return Err(ProviderError::transient("no host of the template could be reached"));
            }
            Ok(looked
                .into_iter()
                .flatten()
                .flatten()
                .map(|(h, live)| Found {
                    what: match live {
                        false => format!("node directory {} on {} (no agent runs there)", h.dir, h.host),
                        true => format!("agent pid {} of {} on {} in {}", h.pid, h.node, h.host, h.dir),
                    },
                    node: Some(h.node.clone()),
                    handle: serde_json::to_value(h).expect("handles serialise"),
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests;
