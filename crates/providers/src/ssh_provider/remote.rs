//! Running commands on hosts through the system's OpenSSH client.
//!
//! Every call is one `ssh` process with the options below; connections to a host are shared
//! through an OpenSSH control master (`ControlMaster=auto`, a socket per host in a private
//! directory), so after the first call a command costs a round trip, not a handshake. Host keys
//! are checked against the template's known-hosts file only (`StrictHostKeyChecking=yes`): an
//! unknown or changed key is refused, never learned. A template's private key is never written
//! to disk: it is added to an `ssh-agent` that this process owns, and `ssh` is pointed at that
//! agent and at the key's public half.

use crate::{ProviderError, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How to reach one host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Host {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            Some(user) => write!(f, "{user}@{}:{}", self.host, self.port),
            None => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// The OpenSSH options every call of a set uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub known_hosts: PathBuf,
    /// The public half of the set's key, held by [`KeyAgent`]; `None` for the head node user's
    /// own keys and agent.
    pub identity: Option<(PathBuf, PathBuf)>,
    pub connect_timeout: Duration,
    /// The directory of the control sockets (0700).
    pub control_dir: PathBuf,
}

/// What a remote command reads on its standard input.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Bytes(&'a [u8]),
    /// A file, streamed (a program being copied).
    File(&'a Path),
}

/// The output of a remote command that ran.
#[derive(Debug)]
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` on `host` with `input` on its standard input, within `limit`. An SSH failure
/// (the connection, the host key, the login: exit 255) is an error in OpenSSH's own words; the
/// command's own exit status is the caller's to judge.
pub async fn run(host: &Host, options: &Options, command: &str, input: Input<'_>, limit: Duration) -> Result<Ran> {
    let mut ssh = tokio::process::Command::new("ssh");
    ssh.args(args(host, options)).arg("--").arg(command);
    ssh.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    // The control master outlives this call: it must not hold this call's pipes open.
    let mut child =
        ssh.spawn().map_err(|e| ProviderError::fatal(format!("cannot run ssh (install OpenSSH's client): {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = match input {
        Input::Bytes(bytes) => Ok(bytes.to_vec()),
        Input::File(path) => Err(path.to_path_buf()),
    };
    let writer = tokio::spawn(async move {
        match input {
            Ok(bytes) => {
                let _ = stdin.write_all(&bytes).await;
            }
            Err(path) => {
                if let Ok(mut file) = tokio::fs::File::open(&path).await {
                    let _ = tokio::io::copy(&mut file, &mut stdin).await;
                }
            }
        }
        let _ = stdin.shutdown().await;
    });
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| ProviderError::transient(format!("ssh to {host} failed: {e}")))?,
        Err(_) => {
            return Err(ProviderError::transient(format!(
                "{host} did not answer within {} s over SSH",
                limit.as_secs()
            )));
        }
    };
    writer.abort();
    let ran = Ran {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if ran.status == 255 {
        return Err(ssh_failure(host, &ran.stderr));
    }
    Ok(ran)
}

/// Like [`run`], but a failure to connect is tried again, up to three times with 1 s and 2 s
/// between: a host that refuses a connection for a moment (sshd's `MaxStartups`) is not a failed
/// deployment. A refused key or host key is not tried again.
pub async fn run_retrying(
    host: &Host,
    options: &Options,
    command: &str,
    input: Input<'_>,
    limit: Duration,
) -> Result<Ran> {
    crate::shell::retrying(&format!("ssh to {host}"), || run(host, options, command, input, limit)).await
}

fn args(host: &Host, options: &Options) -> Vec<String> {
    let mut args: Vec<String> = [
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ControlMaster=auto",
        "-o",
        "ControlPersist=30",
        "-o",
        "ServerAliveInterval=15",
    ]
    .map(String::from)
    .to_vec();
    args.push("-o".into());
    args.push(format!("UserKnownHostsFile={}", options.known_hosts.display()));
    args.push("-o".into());
    args.push(format!("ConnectTimeout={}", options.connect_timeout.as_secs().max(1)));
    args.push("-o".into());
    args.push(format!("ControlPath={}/%C", options.control_dir.display()));
    if let Some((socket, public)) = &options.identity {
        args.push("-o".into());
        args.push(format!("IdentityAgent={}", socket.display()));
        args.push("-o".into());
        args.push("IdentitiesOnly=yes".into());
        args.push("-i".into());
        args.push(public.display().to_string());
    }
    args.push("-p".into());
    args.push(host.port.to_string());
    if let Some(user) = &host.user {
        args.push("-l".into());
        args.push(user.clone());
    }
    args.push(host.host.clone());
    args
}

/// An SSH failure in OpenSSH's words, and whether trying again may help: a refused key or host
/// key will be refused again; a host that is down or slow may come back.
fn ssh_failure(host: &Host, stderr: &str) -> ProviderError {
    let said: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@") && !l.starts_with("Warning: Permanently added"))
        .collect();
    let said = if said.is_empty() { "ssh exited with status 255".to_string() } else { said.join(" ") };
    let lasting = [
        "Host key verification failed",
        "Permission denied",
        "No ED25519 host key",
        "REMOTE HOST IDENTIFICATION",
        "Could not resolve hostname",
    ];
    let message = format!("ssh to {host} failed: {said}");
    if lasting.iter().any(|l| said.contains(l)) {
        ProviderError::fatal(format!("{message} (check the template's user, identity and known_hosts settings)"))
    } else {
        ProviderError::transient(message)
    }
}

/// Closes the control masters of `dir` (when the provider goes away), so no `ssh` process
/// outlives the head node by more than a moment.
pub fn close_masters(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = std::process::Command::new("ssh")
            .args(["-o", &format!("ControlPath={}", path.display()), "-O", "exit", "unused"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// An `ssh-agent` of this process holding the sets' private keys, so that no key is written to
/// disk. Started when the first set with a key needs it; ended with the provider.
pub struct KeyAgent {
    dir: PathBuf,
    running: Mutex<Option<std::process::Child>>,
    /// Public keys added, by their text, with the file each is written to.
    added: Mutex<Vec<(String, PathBuf)>>,
}

impl KeyAgent {
    pub fn new(dir: PathBuf) -> KeyAgent {
        KeyAgent { dir, running: Mutex::new(None), added: Mutex::new(Vec::new()) }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    /// The agent's socket and the public key file of `private` (an OpenSSH private key without
    /// a passphrase), adding the key to the agent if it does not hold it yet.
    pub async fn hold(&self, private: &str) -> Result<(PathBuf, PathBuf)> {
        // OpenSSH reads a key only with its final line break, which a secret file may lose.
        let private = &format!("{}\n", private.trim_end());
        let public = public_key(private).await?;
        let started = self.ensure_running()?;
        if started {
            self.added.lock().expect("keys").clear();
        }
        if let Some((_, path)) = self.added.lock().expect("keys").iter().find(|(k, _)| *k == public) {
            return Ok((self.socket(), path.clone()));
        }
        let mut add = tokio::process::Command::new("ssh-add");
        add.arg("-q").arg("-").env("SSH_AUTH_SOCK", self.socket());
        add.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = add.spawn().map_err(|e| ProviderError::fatal(format!("cannot run ssh-add: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(private.as_bytes()).await.ok();
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|e| ProviderError::fatal(format!("ssh-add failed: {e}")))?;
        if !out.status.success() {
            return Err(ProviderError::fatal(format!(
                "the template's identity could not be loaded: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let mut added = self.added.lock().expect("keys");
        let path = self.dir.join(format!("key-{}.pub", added.len() + 1));
        std::fs::write(&path, format!("{public}\n"))
            .map_err(|e| ProviderError::fatal(format!("cannot write {}: {e}", path.display())))?;
        added.push((public, path.clone()));
        Ok((self.socket(), path))
    }

    /// Starts the agent unless it runs; returns whether it was started now.
    fn ensure_running(&self) -> Result<bool> {
        let mut running = self.running.lock().expect("agent");
        if let Some(child) = running.as_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            return Ok(false);
        }
        let socket = self.socket();
        let _ = std::fs::remove_file(&socket);
        // The agent ends with this process, even one killed outright: its keeper ends it when
        // the pipe from this process closes.
        let keeper = "ssh-agent -D -a \"$1\" >/dev/null 2>&1 & a=$!; cat >/dev/null; kill $a";
        let mut agent = std::process::Command::new("sh");
        agent.args(["-c", keeper, "ssh-agent-keeper"]).arg(&socket);
        agent.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = agent.spawn().map_err(|e| ProviderError::fatal(format!("cannot start ssh-agent: {e}")))?;
        *running = Some(child);
        for _ in 0..100 {
            if socket.exists() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(ProviderError::fatal("ssh-agent did not create its socket within 1 s"))
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.running.lock().expect("agent").take() {
            // Closing the keeper's pipe ends the agent.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Checks that `private` is an OpenSSH private key without a passphrase, as `ssh-keygen -y`
/// reads it (for a template being created or edited: off the async runtime).
pub fn check_private_key(private: &str) -> std::result::Result<(), String> {
    use std::io::Write;
    let mut keygen = std::process::Command::new("ssh-keygen")
        .args(["-y", "-P", "", "-f", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run ssh-keygen to check the identity (install OpenSSH's client): {e}"))?;
    let mut stdin = keygen.stdin.take().expect("piped");
    let _ = stdin.write_all(format!("{}\n", private.trim_end()).as_bytes());
    drop(stdin);
    match keygen.wait() {
        Ok(status) if status.success() => Ok(()),
        _ => Err("the identity is not an OpenSSH private key without a passphrase (give the private key file, e.g. \
                  --secret identity=~/.ssh/id_ed25519; remove a passphrase with ssh-keygen -p)"
            .into()),
    }
}

/// The public half of an OpenSSH private key, from `ssh-keygen -y` reading it on standard input.
async fn public_key(private: &str) -> Result<String> {
    let mut keygen = tokio::process::Command::new("ssh-keygen");
    keygen.args(["-y", "-P", "", "-f", "/dev/stdin"]);
    keygen.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = keygen.spawn().map_err(|e| ProviderError::fatal(format!("cannot run ssh-keygen: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(private.as_bytes()).await.ok();
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| ProviderError::fatal(format!("ssh-keygen failed: {e}")))?;
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || public.is_empty() {
        return Err(ProviderError::fatal(
            "the template's identity is not an OpenSSH private key without a passphrase (give one with --secret identity=FILE)",
        ));
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_keys_and_host_keys_are_lasting_and_a_host_that_is_down_is_not() {
        let host = Host { host: "127.0.0.1".into(), port: 2222, user: None };
        let key = ssh_failure(&host, "Host key verification failed.\n");
        assert!(!key.transient && key.message.contains("Host key verification failed"), "{key:?}");
        let denied = ssh_failure(&host, "user@127.0.0.1: Permission denied (publickey).\n");
        assert!(!denied.transient, "{denied:?}");
        let down = ssh_failure(&host, "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n");
        assert!(down.transient && down.message.contains("Connection refused"), "{down:?}");
    }

    #[test]
    fn options_check_host_keys_strictly_and_name_the_agent_key() {
        let options = Options {
            known_hosts: "/k".into(),
            identity: Some(("/a.sock".into(), "/key.pub".into())),
            connect_timeout: Duration::from_secs(5),
            control_dir: "/c".into(),
        };
        let host = Host { host: "h".into(), port: 22, user: Some("u".into()) };
        let args = args(&host, &options).join(" ");
        for part in [
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/k",
            "IdentityAgent=/a.sock",
            "IdentitiesOnly=yes",
            "-i /key.pub",
            "-l u h",
        ] {
            assert!(args.contains(part), "{part} in {args}");
        }
    }
}
