//! The `ssh` provider end to end, against the real OpenSSH servers that `scripts/peers/sshd.sh`
//! starts on loopback (as their own unprivileged user): real agents on the "hosts" join the head
//! node with the set's join token and run a real sweep.

mod common;

use common::{Cluster, eventually};
use serde_json::Value;
use std::path::PathBuf;

/// The peer's servers and files (see `scripts/peers/sshd.sh`).
struct Peer {
    dir: PathBuf,
    user: String,
    ports: Vec<String>,
    refusing: String,
    wrong_key: String,
    down: String,
    remote: PathBuf,
}

fn peer() -> Peer {
    let dir = PathBuf::from(
        std::env::var("THUNDERHEAD_TEST_SSH").expect("THUNDERHEAD_TEST_SSH: run the tests with scripts/test.sh"),
    );
    let env = std::fs::read_to_string(dir.join("hosts.env")).unwrap();
    let get = |key: &str| {
        env.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("{key}")).to_string()
    };
    Peer {
        user: get("SSH_USER"),
        ports: get("SSH_PORTS").split(',').map(String::from).collect(),
        refusing: get("SSH_REFUSING_PORT"),
        wrong_key: get("SSH_WRONG_KEY_PORT"),
        down: get("SSH_DOWN_PORT"),
        remote: PathBuf::from(get("SSH_REMOTE_DIR")),
        dir,
    }
}

/// A directory of this test's own on the hosts; whatever still runs from it when the test ends,
/// pass or fail, is killed (the hosts are this machine).
struct RemoteDir(PathBuf);

impl RemoteDir {
    fn new(peer: &Peer, test: &str) -> RemoteDir {
        RemoteDir(peer.remote.join(test))
    }
    fn text(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for RemoteDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill").args(["-KILL", "-f", &self.text()]).status();
    }
}

/// `template create NAME --provider ssh` on `hosts` with the peer's key, known hosts and user.
fn create(c: &Cluster, peer: &Peer, name: &str, hosts: &[String], known: &str, remote: &RemoteDir, extra: &[&str]) {
    let hosts: Vec<String> = hosts.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let settings = [
        format!("hosts={}", hosts.join(",")),
        format!("user={}", peer.user),
        format!("known_hosts={}", peer.dir.join(known).display()),
        format!("remote_dir={}", remote.text()),
    ];
    let identity = format!("identity={}", peer.dir.join("id_ed25519").display());
    let mut args = vec!["template", "create", name, "--provider", "ssh", "--secret", &identity];
    for s in &settings {
        args.extend(["--set", s.as_str()]);
    }
    args.extend_from_slice(extra);
    c.th(&args);
}

fn node_log(c: &Cluster, node: &str) -> String {
    c.th(&["node", "log", node])
}

#[test]
fn a_sweep_runs_on_ssh_nodes_that_survive_a_restart_and_the_key_never_leaks() {
    let peer = peer();
    let remote = RemoteDir::new(&peer, "sweep");
    let mut c = Cluster::start();
    create(&c, &peer, "rack", &peer.ports, "known_hosts", &remote, &[]);
    let shown = c.json(&["template", "show", "rack"]);
    assert_eq!(shown["proxies"], 0, "ssh nodes reach the head node directly: {shown}");
    c.th(&["node", "add", "--template", "rack", "--count", "3", "--size", "Medium"]);
    c.th(&["node", "start", "--template", "rack", "--wait"]);
    c.th(&["node", "online", "--template", "rack"]);
    c.await_nodes("rack", "Online");
    let nodes = c.json(&["node", "list", "--template", "rack"]);
    assert!(nodes.as_array().unwrap().iter().all(|n| n["cores"] == 2), "Medium gives 2 cores: {nodes}");

    let id = c.submit(&["--sweep", "1-60", "--", "sh", "-c", "echo \"$(id -un) on $THUNDERHEAD_NODE_NAME: *\""]);
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    let tasks = c.json(&["task", "list", &id.to_string()]);
    let used: std::collections::BTreeSet<&str> =
        tasks.as_array().unwrap().iter().map(|t| t["node"].as_str().unwrap()).collect();
    assert!(used.len() >= 2, "the sweep spread over the hosts: {used:?}");
    let out = c.th(&["task", "output", &format!("{id}.42")]);
    assert!(out.contains(&format!("{} on SshCN-", peer.user)) && out.contains(": 42"), "{out}");

    // The key: sealed at rest, held in an ssh-agent, never on a command line or in an answer.
    let key = std::fs::read_to_string(peer.dir.join("id_ed25519")).unwrap();
    let body = key.lines().nth(1).expect("a key body line");
    let ps = String::from_utf8_lossy(&std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap().stdout)
        .to_string();
    let mut stored = Vec::new();
    for f in ["thunderhead.db", "thunderhead.db-wal"] {
        stored.extend(std::fs::read(c.state_dir().join(f)).unwrap_or_default());
    }
    let answers = c.th(&["template", "show", "rack", "--json"]) + &c.th(&["node", "list", "--json"]);
    for (place, text) in [
        ("ps", ps),
        ("the database", String::from_utf8_lossy(&stored).to_string()),
        ("answers", answers),
        ("the log", c.server_log()),
    ] {
        assert!(!text.contains(body), "the identity leaked into {place}");
    }

    // A restarted head node finds its nodes through their handles; their agents come back.
    c.kill_server();
    c.start_server();
    c.await_nodes("rack", "Online");
    let id = c.submit(&["--sweep", "1-12", "--", "true"]);
    assert!(c.try_th(&["job", "wait", &id.to_string()]).status.success());

    c.th(&["node", "stop", "--template", "rack"]);
    c.await_nodes("rack", "NotDeployed");
    let left: Vec<_> = std::fs::read_dir(remote.0.join(".")).unwrap().flatten().collect();
    let node_dirs = walk_node_dirs(&remote.0);
    assert!(node_dirs.is_empty(), "stopped nodes leave no directory: {node_dirs:?} (in {left:?})");
}

/// Node directories (those with an `agent.pid`) under `root`.
fn walk_node_dirs(root: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.join("agent.pid").exists() {
                found.push(path);
            } else if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn a_refused_key_a_wrong_host_key_and_a_host_that_is_down_end_unknown_in_openssh_s_words() {
    let peer = peer();
    let remote = RemoteDir::new(&peer, "refusals");
    let c = Cluster::start();
    let cases = [
        ("refusing", peer.refusing.clone(), "known_hosts", "Permission denied"),
        ("impostor", peer.wrong_key.clone(), "known_hosts.wrong", "Host key verification failed"),
        ("down", peer.down.clone(), "known_hosts", "Connection refused"),
    ];
    for (name, port, known, _) in &cases {
        create(&c, &peer, name, std::slice::from_ref(port), known, &remote, &["--deploy-retries", "0"]);
        c.th(&["node", "add", "--template", name, "--count", "1", "--size", "Small"]);
        c.th(&["node", "start", "--template", name]);
    }
    for (name, _, _, says) in &cases {
        c.await_nodes(name, "Unknown");
        let node = c.json(&["node", "list", "--template", name]).as_array().unwrap()[0].clone();
        let node_name = node["name"].as_str().unwrap();
        let log = node_log(&c, node_name);
        assert!(log.contains(says), "{name}: the node's log gives OpenSSH's words:\n{log}");
        let cause = node["cause"].as_str().unwrap_or_default();
        assert!(cause.contains(says), "{name}: {node}");
    }
}

#[test]
fn an_agent_killed_on_its_host_requeues_its_tasks_and_leftovers_are_listed_and_removed() {
    let peer = peer();
    let remote = RemoteDir::new(&peer, "killed");
    let c = Cluster::start();
    create(&c, &peer, "rack", &peer.ports[..2], "known_hosts", &remote, &[]);
    c.th(&["node", "add", "--template", "rack", "--count", "2", "--size", "Small"]);
    c.th(&["node", "start", "--template", "rack", "--wait"]);
    c.th(&["node", "online", "--template", "rack"]);
    c.await_nodes("rack", "Online");

    let id = c.submit(&["--sweep", "1-20", "--", "sleep", "0.5"]);
    let victim = eventually(30, "a task to run", || {
        let tasks = c.json(&["task", "list", &id.to_string()]);
        tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["state"] == "Running")
            .map(|t| t["node"].as_str().unwrap().to_string())
    });
    // Someone kills the agent on its host, and its task with it.
    let dir_of_victim = walk_node_dirs(&remote.0).into_iter().find(|d| d.ends_with(&victim)).expect("its directory");
    let pid = std::fs::read_to_string(dir_of_victim.join("agent.pid")).unwrap().trim().to_string();
    let pid: i32 = pid.parse().unwrap();
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "every task finished on the other node: {}", String::from_utf8_lossy(&wait.stderr));
    let job = c.job(id);
    assert_eq!(job["tasks"]["Finished"], 20, "{job}");
    let states = c.node_states("rack");
    let lost = states.iter().find(|(n, _, _)| *n == victim).unwrap();
    assert_eq!(lost.1, "Unknown", "{states:?}");
    let log = node_log(&c, &victim);
    assert!(log.contains("reports the deployment gone") && log.contains("was killed"), "{log}");

    // A node directory no node owns (a head node that died mid-deployment leaves such a thing).
    let stray = dir_of_victim.with_file_name("SshCN-0099");
    std::fs::create_dir_all(&stray).unwrap();
    let label = std::fs::read_to_string(dir_of_victim.join("host")).unwrap();
    std::fs::write(stray.join("host"), label).unwrap();
    std::fs::write(stray.join("agent.pid"), "0").unwrap();
    let chown = std::process::Command::new("chown").args(["-R", &format!("{}:", peer.user)]).arg(&stray).status();
    assert!(chown.unwrap().success());
    // A failed check makes `template validate` exit 1; its answer lists them all.
    let out = c.try_th(&["--json", "template", "validate", "rack"]);
    assert!(!out.status.success());
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let leftovers = checks.as_array().unwrap().iter().find(|c| c["name"] == "leftovers").unwrap().clone();
    assert_eq!(leftovers["ok"], false, "{checks}");
    assert!(leftovers["detail"].as_str().unwrap().contains("SshCN-0099"), "{leftovers}");
    let removed = c.json(&["node", "stop", "--template", "rack", "--orphans"]);
    assert_eq!(removed.as_array().unwrap().len(), 1, "only the stray one: {removed}");
    assert!(!stray.exists());
    let checks: Value = c.json(&["template", "validate", "rack"]);
    let leftovers = checks.as_array().unwrap().iter().find(|c| c["name"] == "leftovers").unwrap().clone();
    assert_eq!(leftovers["ok"], true, "{checks}");
    c.th(&["node", "stop", "--template", "rack"]);
}
