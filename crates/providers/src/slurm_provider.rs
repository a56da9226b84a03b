//! The `slurm` provider: burst nodes as allocations in an existing Slurm cluster, each running
//! one agent (as HyperQueue's automatic allocation does).
//!
//! Deploying a node writes its directory on the cluster's file system (the join grant in a file
//! only the user can read, opened and unlinked by the batch script when the allocation starts)
//! and submits one batch job with `sbatch`. The batch script starts `thunderhead agent`, which
//! joins with the grant and says when the allocation's time limit, less the template's drain
//! margin, comes: the head node drains the node then. Status is one `squeue --me --json` for the
//! whole set: a pending job is `Waiting` with Slurm's reason, which the boot timeout repeats; a
//! job no longer pending or running is gone. Removing is `scancel` and the directory's removal.
//! Every command runs through the template's command prefix (nothing: on this machine; `ssh
//! login-node`: on a login node).

use crate::shell::{cluster_tag, last_line, quote, retrying};
use crate::{
    BoxFuture, Check, DeployRequest, ExternalStatus, Found, Provider, ProviderError, ProxyRequest, Result, Set,
};
use crate::{SettingKind, SettingSpec, settings};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use thunderhead_core::provider_rules::Derived;
use tokio::io::AsyncWriteExt;

/// What the `slurm` provider declares.
pub static INFO: crate::ProviderInfo = crate::ProviderInfo {
    name: "slurm",
    summary: "allocations in an existing Slurm cluster (sbatch), one agent each",
    settings: &[
        SettingSpec::new("partition", SettingKind::Text, "the partition to submit to").or("the cluster's default"),
        SettingSpec::new("account", SettingKind::Text, "the account to charge").or("the user's default"),
        SettingSpec::new("qos", SettingKind::Text, "the quality of service").or("the account's default"),
        SettingSpec::new("time_limit", SettingKind::Duration, "each allocation's time limit, 1m or more").or("1h"),
        SettingSpec::new(
            "drain_margin",
            SettingKind::Duration,
            "how long before the time limit a node stops taking tasks (its running tasks finish or are requeued)",
        )
        .or("5m"),
        SettingSpec::new(
            "sbatch_args",
            SettingKind::Text,
            "more sbatch options, separated by spaces, e.g. --mem=4G --constraint=avx2",
        ),
        SettingSpec::new(
            "command_prefix",
            SettingKind::Text,
            "what runs sbatch, squeue and scancel: nothing for this machine, or e.g. ssh login-node",
        )
        .or("nothing: this machine"),
        SettingSpec::new(
            "work_dir",
            SettingKind::Text,
            "where node directories go on the cluster's shared file system, absolute or from the login directory",
        )
        .or(".thunderhead"),
        SettingSpec::new("program", SettingKind::Text, "the path of this thunderhead build on the cluster's nodes")
            .or("the head node's own program (a file system the cluster shares)"),
    ],
    deployable: true,
    proxies: false,
    sizes: None,
    handle_version: SLURM_HANDLE_VERSION,
    gone: "the Slurm allocation ended: its time limit, scancel, or a failure (see slurm-JOBID.log in the node directory)",
};

const SLURM_HANDLE_VERSION: u64 = 1;
/// The longest one Slurm command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A template's settings, read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlurmSettings {
    prefix: Vec<String>,
    options: Vec<String>,
    time_limit: Duration,
    drain_margin: Duration,
    work_dir: String,
    program: Option<String>,
}

impl SlurmSettings {
    fn read(settings: &Map<String, Value>) -> thunderhead_core::Result<SlurmSettings> {
        let invalid = thunderhead_core::Error::invalid;
        let word = |key: &str| -> thunderhead_core::Result<Option<String>> {
            match settings::text(settings, key).map(str::trim).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) if t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) => Ok(Some(t.to_string())),
                Some(t) => Err(invalid(format!(
                    "{key} \"{}\" is not a Slurm name (use letters, digits, '.', '_' and '-')",
                    thunderhead_core::text::escape(t)
                ))),
            }
        };
        let duration = |key: &str, default: Duration| -> thunderhead_core::Result<Duration> {
            match settings::text(settings, key) {
                Some(t) => Ok(Duration::from_millis(thunderhead_core::duration::parse_duration(t)?)),
                None => Ok(default),
            }
        };
        let mut options = Vec::new();
        for (key, flag) in [("partition", "--partition"), ("account", "--account"), ("qos", "--qos")] {
            if let Some(value) = word(key)? {
                options.push(format!("{flag}={value}"));
            }
        }
        let time_limit = duration("time_limit", Duration::from_secs(3600))?;
        if time_limit < Duration::from_secs(60) {
            return Err(invalid(format!(
                "time_limit of {} s is shorter than Slurm's smallest, a minute (give 1m or more, e.g. 4h)",
                time_limit.as_secs()
            )));
        }
        let drain_margin = duration("drain_margin", Duration::from_secs(300))?;
        if drain_margin >= time_limit {
            return Err(invalid(format!(
                "drain_margin of {} s leaves nothing of the {} s time limit (give a margin shorter than time_limit)",
                drain_margin.as_secs(),
                time_limit.as_secs()
            )));
        }
        if let Some(extra) = settings::text(settings, "sbatch_args") {
            for arg in extra.split_whitespace() {
                if !arg.starts_with('-') {
                    return Err(invalid(format!(
                        "sbatch_args \"{}\" has \"{arg}\", which is not an option (give options only, e.g. --mem=4G --exclusive)",
                        thunderhead_core::text::escape(extra)
                    )));
                }
                let reserved = [
                    "--parsable",
                    "--job-name",
                    "-J",
                    "--comment",
                    "--output",
                    "-o",
                    "--chdir",
                    "-D",
                    "--wrap",
                    "--array",
                    "-a",
                ];
                if reserved.iter().any(|r| arg == *r || arg.starts_with(&format!("{r}="))) {
                    return Err(invalid(format!(
                        "sbatch_args may not give {arg}: Thunderhead sets it for each node (leave it out)"
                    )));
                }
                options.push(arg.to_string());
            }
        }
        let prefix: Vec<String> = settings::text(settings, "command_prefix")
            .map(|p| p.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let work_dir = crate::shell::checked_dir("work_dir", settings::text(settings, "work_dir"))?;
        let program = settings::text(settings, "program").map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
        Ok(SlurmSettings { prefix, options, time_limit, drain_margin, work_dir, program })
    }
}

/// What the head node keeps of a Slurm node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SlurmHandle {
    v: u64,
    /// The Slurm job id of its allocation.
    job: u64,
    node: String,
    /// Its node directory, as given to the shell (from the login directory).
    dir: String,
}

fn parse(handle: &Value) -> Result<SlurmHandle> {
    crate::read_handle(handle, "slurm", SLURM_HANDLE_VERSION, "run the newer head node")
}

/// A job as `squeue --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct QueuedJob {
    job_id: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    job_state: String,
    #[serde(default)]
    state_reason: String,
    #[serde(default)]
    comment: String,
}

impl QueuedJob {
    /// Its state as the head node sees a deployment.
    fn status(&self) -> ExternalStatus {
        match self.job_state.as_str() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" => {
                ExternalStatus::Waiting(format!("Slurm job {} is pending: {}", self.job_id, self.state_reason))
            }
            "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "RESIZING" => {
                ExternalStatus::Running
            }
            _ => ExternalStatus::Gone,
        }
    }
}

/// The `slurm` provider.
pub struct SlurmProvider {
    agent_program: PathBuf,
    cluster: String,
}

impl SlurmProvider {
    pub fn new(agent_program: PathBuf, state_dir: &Path) -> SlurmProvider {
        SlurmProvider { agent_program, cluster: cluster_tag(state_dir) }
    }

    fn settings(set: &Set) -> Result<SlurmSettings> {
        SlurmSettings::read(&set.template.settings).map_err(|e| ProviderError::fatal(e.message))
    }

    /// What tells the set's jobs from others in `squeue`.
    fn comment(&self, template: &str) -> String {
        format!("thunderhead:{}:{template}", self.cluster)
    }

    fn set_dir(&self, settings: &SlurmSettings, template: &str) -> String {
        format!("{}/{}/{template}", settings.work_dir, self.cluster)
    }

    fn program(&self, settings: &SlurmSettings) -> String {
        settings.program.clone().unwrap_or_else(|| self.agent_program.display().to_string())
    }

    /// Every job of the user that `squeue --me --json` lists.
    async fn queue(&self, settings: &SlurmSettings) -> Result<Vec<QueuedJob>> {
        #[derive(serde::Deserialize)]
        struct Queue {
            jobs: Vec<QueuedJob>,
        }
        let ran = retrying("squeue", || async {
            let ran = run(settings, "squeue --me --json", b"").await?;
            if ran.status != 0 {
                return Err(slurm_failure("squeue", &ran.stderr));
            }
            Ok(ran)
        })
        .await?;
        let queue: Queue = serde_json::from_str(&ran.stdout).map_err(|e| {
            ProviderError::transient(format!(
                "squeue --json answered something else than its JSON ({e}): {}",
                last_line(&ran.stdout)
            ))
        })?;
        Ok(queue.jobs)
    }

    async fn submit(&self, request: &DeployRequest, settings: &SlurmSettings) -> Result<SlurmHandle> {
        let dir = format!("{}/{}", self.set_dir(settings, &request.template.name), request.node);
        let cores = request.size.cores();
        let limit = settings.time_limit.as_secs();
        let margin = settings.drain_margin.as_secs();
        let mut agent = vec![
            quote(&self.program(settings)),
            "agent".into(),
            "--server".into(),
            quote(&request.server_url),
            "--name".into(),
            quote(&request.node),
            "--cores".into(),
            format!("\"${{SLURM_CPUS_PER_TASK:-{cores}}}\""),
            "--work-dir".into(),
            "\"$PWD\"".into(),
            "--leaves-at".into(),
            "\"$leaves\"".into(),
        ];
        if request.join.is_some() {
            agent.push("--join-from-stdin".into());
        }
        // The batch script: the grant is opened and unlinked before the agent starts; the agent
        // is told when the allocation ends, less the margin. It says where programs are: the
        // submission passes little environment (see SBATCH_ENV).
        let batch = format!(
            "#!/bin/sh\nPATH=/usr/local/bin:/usr/bin:/bin; export PATH\nexec 3< join\nrm -f join\n\
             leaves=$(( $(date +%s) + {limit} - {margin} ))\nexec {} <&3\n",
            agent.join(" ")
        );
        let minutes = limit.div_ceil(60);
        let mut sbatch = vec![
            "sbatch".to_string(),
            "--parsable".into(),
            format!("--job-name={}", request.node),
            format!("--comment={}", self.comment(&request.template.name)),
            "--output=slurm-%j.log".into(),
            "--nodes=1".into(),
            "--ntasks=1".into(),
            format!("--cpus-per-task={cores}"),
            format!("--time={minutes}"),
        ];
        sbatch.extend(settings.options.iter().cloned());
        sbatch.push("run.sh".into());
        let script = format!(
            "set -e; cd; d={d}; rm -rf \"$d\"; mkdir -p \"$d\"; chmod 700 \"$d\"; cd \"$d\"; umask 077; cat > join; \
             cat > run.sh <<'THUNDERHEAD_BATCH'\n{batch}THUNDERHEAD_BATCH\n{SBATCH_ENV} {sbatch}",
            d = quote(&dir),
            sbatch = sbatch.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
        );
        let grant = request.join.as_ref().map(|g| g.to_document()).unwrap_or_default();
        // Not tried again here: sbatch may have submitted before it failed. The template's
        // deploy retries try again, and what a lost answer left is a leftover.
        let ran = run(settings, &script, &grant).await?;
        let job = ran.stdout.trim().split(';').next().and_then(|j| j.trim().parse::<u64>().ok());
        match job {
            Some(job) if ran.status == 0 => {
                Ok(SlurmHandle { v: SLURM_HANDLE_VERSION, job, node: request.node.clone(), dir })
            }
            _ => Err(slurm_failure("sbatch", &ran.stderr)),
        }
    }
}

/// How `sbatch` runs: with a cleared environment, for sbatch copies its environment into the
/// job and into the controller's state, and the head node's may hold secrets. Only what finds
/// programs and Slurm passes. (`--export=NONE` keeps it out too, but has Slurm load the user's
/// login environment on the node first: a minute per allocation on the test cluster.)
const SBATCH_ENV: &str = "env -i PATH=\"$PATH\" HOME=\"$HOME\" USER=\"${USER:-}\" LOGNAME=\"${LOGNAME:-}\" \
                          ${SLURM_CONF:+SLURM_CONF=\"$SLURM_CONF\"}";

/// The output of a command that ran.
struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `script` through the template's command prefix, with `input` on its standard input,
/// within [`COMMAND_TIMEOUT`]. A prefix that starts with `ssh` gets the script as one remote
/// command line; any other prefix (or none) runs `sh -c SCRIPT`.
async fn run(settings: &SlurmSettings, script: &str, input: &[u8]) -> Result<Ran> {
    let mut words: Vec<String> = settings.prefix.clone();
    if words.first().map(String::as_str) == Some("ssh") {
        words.push(script.to_string());
    } else {
        words.extend(["sh".to_string(), "-c".into(), script.to_string()]);
    }
    let mut command = tokio::process::Command::new(&words[0]);
    command.args(&words[1..]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        ProviderError::fatal(format!("cannot run {} (check the template's command_prefix): {e}", words[0]))
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    });
    let out = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| ProviderError::transient(format!("running {} failed: {e}", words[0])))?,
        Err(_) => {
            return Err(ProviderError::transient(format!(
                "Slurm did not answer within {} s",
                COMMAND_TIMEOUT.as_secs()
            )));
        }
    };
    writer.abort();
    Ok(Ran {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A Slurm command's refusal in Slurm's words, and whether trying again may help: a bad
/// partition, account or option is refused again; a busy or unreachable controller may answer.
fn slurm_failure(command: &str, stderr: &str) -> ProviderError {
    let said: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let said = if said.is_empty() { format!("{command} failed without a word") } else { said.join(" ") };
    let message = format!("{command}: {said}");
    let passing = [
        "Unable to contact slurm controller",
        "Socket timed out",
        "Connection refused",
        "temporarily unavailable",
        "Resource temporarily",
        "try again",
    ];
    if passing.iter().any(|p| said.contains(p)) {
        ProviderError::transient(message)
    } else {
        ProviderError::fatal(format!("{message} (check the template's partition, account, qos and sbatch_args)"))
    }
}

impl Provider for SlurmProvider {
    fn info(&self) -> &'static crate::ProviderInfo {
        &INFO
    }

    fn check_settings(&self, settings: &mut Map<String, Value>, _sealed: bool) -> thunderhead_core::Result<Derived> {
        SlurmSettings::read(settings)?;
        Ok(Derived::default())
    }

    fn validate<'a>(&'a self, set: &'a Set) -> BoxFuture<'a, Vec<Check>> {
        Box::pin(async move {
            let settings = match Self::settings(set) {
                Ok(s) => s,
                Err(e) => return vec![Check { name: "settings".into(), ok: false, detail: e.message }],
            };
            let mut checks = Vec::new();
            let program = self.program(&settings);
            let probe = format!("test -x {} && echo present", quote(&program));
            checks.push(match run(&settings, &probe, b"").await {
                Ok(r) if r.stdout.contains("present") => Check { name: "program".into(), ok: true, detail: program },
                Ok(_) => Check {
                    name: "program".into(),
                    ok: false,
                    detail: format!("{program} is not an executable file where Slurm commands run (give program=PATH)"),
                },
                Err(e) => Check { name: "program".into(), ok: false, detail: e.message },
            });
            // sbatch --test-only checks the partition, account, QoS and options without submitting.
            let mut test = vec!["sbatch".to_string(), "--test-only".into(), "--nodes=1".into(), "--ntasks=1".into()];
            test.push(format!("--time={}", settings.time_limit.as_secs().div_ceil(60)));
            test.extend(settings.options.iter().cloned());
            test.push("--wrap=true".into());
            let test = test.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
            checks.push(match run(&settings, &test, b"").await {
                Ok(r) if r.status == 0 => {
                    Check { name: "sbatch --test-only".into(), ok: true, detail: last_line(&r.stderr) }
                }
                Ok(r) => Check {
                    name: "sbatch --test-only".into(),
                    ok: false,
                    detail: slurm_failure("sbatch", &r.stderr).message,
                },
                Err(e) => Check { name: "sbatch --test-only".into(), ok: false, detail: e.message },
            });
            checks
        })
    }

    fn deploy<'a>(&'a self, request: &'a DeployRequest) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            let set = Set { template: request.template.clone(), secrets: request.secrets.clone() };
            let settings = Self::settings(&set)?;
            let handle = self.submit(request, &settings).await?;
            Ok(serde_json::to_value(handle).expect("handles serialise"))
        })
    }

    fn deploy_proxy<'a>(&'a self, _request: &'a ProxyRequest) -> BoxFuture<'a, Result<(Value, String)>> {
        Box::pin(async {
            Err(ProviderError::fatal(
                "slurm nodes reach the head node directly: their sets run no proxies (give --proxies 0)",
            ))
        })
    }

    fn status<'a>(&'a self, set: &'a Set, handles: &'a [Value]) -> BoxFuture<'a, Vec<Result<ExternalStatus>>> {
        Box::pin(async move {
            let parsed: Vec<Result<SlurmHandle>> = handles.iter().map(parse).collect();
            let queue = match Self::settings(set) {
                Ok(settings) => self.queue(&settings).await,
                Err(e) => Err(e),
            };
            parsed
                .into_iter()
                .map(|handle| {
                    let handle = handle?;
                    let queue = queue.as_ref().map_err(Clone::clone)?;
                    Ok(queue.iter().find(|j| j.job_id == handle.job).map_or(ExternalStatus::Gone, QueuedJob::status))
                })
                .collect()
        })
    }

    fn remove<'a>(&'a self, set: &'a Set, handle: &'a Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let handle = parse(handle)?;
            let settings = Self::settings(set)?;
            retrying("scancel", || async {
                let ran = run(&settings, &format!("scancel {}", handle.job), b"").await?;
                // A job that already ended is what removing it wants.
                let ended = ["Invalid job id", "already completing or completed", "Job/step already"];
                if ran.status != 0 && !ended.iter().any(|e| ran.stderr.contains(e)) {
                    return Err(slurm_failure("scancel", &ran.stderr));
                }
                Ok(())
            })
            .await?;
            let ran = run(&settings, &format!("cd; rm -rf {}", quote(&handle.dir)), b"").await?;
            if ran.status != 0 {
                return Err(ProviderError::transient(format!(
                    "removing {} failed: {}",
                    handle.dir,
                    last_line(&ran.stderr)
                )));
            }
            Ok(())
        })
    }

    fn inventory<'a>(&'a self, set: &'a Set) -> BoxFuture<'a, Result<Vec<Found>>> {
        Box::pin(async move {
            let settings = Self::settings(set)?;
            let comment = self.comment(&set.template.name);
            let set_dir = self.set_dir(&settings, &set.template.name);
            Ok(self
                .queue(&settings)
                .await?
                .into_iter()
                .filter(|j| j.comment == comment && j.status() != ExternalStatus::Gone)
                .map(|j| {
                    let handle = SlurmHandle {
                        v: SLURM_HANDLE_VERSION,
                        job: j.job_id,
                        node: j.name.clone(),
                        dir: format!("{set_dir}/{}", j.name),
                    };
                    Found {
                        what: format!("Slurm job {} ({}, {}) named {}", j.job_id, j.job_state, j.state_reason, j.name),
                        node: Some(j.name),
                        handle: serde_json::to_value(handle).expect("handles serialise"),
                    }
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests;
