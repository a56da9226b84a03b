//! Tasks are other people's programs: what a task can see and reach on each kind of node.
//!
//! A task's environment is exactly the documented set, whatever the head node or the agent was
//! started with; no join token, cluster certificate or head node variable reaches it. Where the
//! head node runs as root, tasks of local nodes run as `nobody` and cannot read the head node's
//! state (access file, database, secret key) nor any node's key. A task that wrote much leaves
//! nothing behind once its result is in.

mod common;

use common::{Cluster, eventually};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use thunderhead_agent::task_env::TASK_ENV;

/// Variables the head node is started with that look like secrets: none may reach a task.
const HEAD_SECRET: &str = "head-secret-5b8e1d0c";
const HEAD_TOKEN: &str = "th1_headnode_notforTasks42";
const HEAD_ENV: [(&str, &str); 3] =
    [("HEAD_SECRET", HEAD_SECRET), ("THUNDERHEAD_TOKEN", HEAD_TOKEN), ("THUNDERHEAD_ACCESS", "/head/only/access.json")];

/// The documented variables of the head node that an agent it starts gets (docs: security).
const AGENT_ENV: [&str; 5] = ["PATH", "LANG", "LC_ALL", "TZ", "THUNDERHEAD_LOG"];

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The documented variables of a sweep's task, given that the locale and time zone variables
/// are passed on only when set (the head node and the agents inherit them from this test).
fn expected_names() -> BTreeSet<String> {
    TASK_ENV
        .iter()
        .filter(|name| !["LANG", "LC_ALL", "TZ"].contains(name) || std::env::var_os(name).is_some())
        .map(|name| name.to_string())
        .collect()
}

/// Runs a one-task sweep of `command` and returns its standard output (and error).
fn run(c: &Cluster, command: &[&str]) -> (String, String) {
    let mut args = vec!["--sweep", "1-1", "--"];
    args.extend_from_slice(command);
    let id = c.submit(&args);
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    let task = format!("{id}.1");
    let (out, err) = (c.th(&["task", "output", &task]), c.th(&["task", "output", &task, "--stderr"]));
    assert!(wait.status.success(), "task {task} failed:\n{out}\n{err}");
    (out, err)
}

/// Checks the output of `env` in a task: exactly the documented names, and no secret in any
/// value.
fn assert_documented_env(env: &str, join_token: Option<&str>) {
    let names: BTreeSet<String> = env.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k.to_string()).collect();
    assert_eq!(names, expected_names(), "a task's environment:\n{env}");
    for secret in ["thj1_", "th1_", "CERTIFICATE", HEAD_SECRET, "/head/only"].into_iter().chain(join_token) {
        assert!(!env.contains(secret), "a task sees {secret}:\n{env}");
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn agent_pid(c: &Cluster, node: &str) -> u32 {
    let pid = std::fs::read_to_string(c.state_dir().join(format!("nodes/{node}/agent.pid"))).unwrap();
    pid.trim().parse().unwrap()
}

#[test]
fn tasks_of_local_nodes_see_only_their_documented_environment_and_none_of_the_head_node_s_secrets() {
    let c = Cluster::start_with_env(&[], &HEAD_ENV);
    c.burst("iso", 2, "Small");
    let state = c.state_dir();

    // The head node's state is its own.
    assert_eq!(mode(&state), 0o700);
    for file in
        ["access.json", "secret.key", "ca.key.sealed", "thunderhead.db", "thunderhead.db-wal", "thunderhead.db-shm"]
    {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    for node in ["LocalCN-0001", "LocalCN-0002"] {
        let dir = state.join("nodes").join(node);
        assert_eq!((mode(&dir), mode(&dir.join("node.key")), mode(&dir.join("agent.log"))), (0o700, 0o600, 0o600));
        // The agent got its grant on its standard input: its environment holds only the
        // documented variables, and neither it nor its command line a token.
        let pid = agent_pid(&c, node);
        let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned();
        for var in environ.split('\0').filter(|v| !v.is_empty()) {
            let name = var.split('=').next().unwrap();
            assert!(AGENT_ENV.contains(&name), "the agent of {node} got {name} from the head node");
        }
        assert!(!environ.contains("thj1_") && !environ.contains("CERTIFICATE"), "{environ}");
        let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).into_owned();
        assert!(!cmdline.contains("thj1_"), "{cmdline}");
    }

    let (env, _) = run(&c, &["env"]);
    assert_documented_env(&env, None);

    // What the task can reach of the head node's files.
    let secrets: Vec<PathBuf> = vec![
        state.join("access.json"),
        state.join("thunderhead.db"),
        state.join("secret.key"),
        state.join("ca.key.sealed"),
        state.join("nodes/LocalCN-0001/node.key"),
        state.join("nodes/LocalCN-0002/node.key"),
        PathBuf::from(format!("/proc/{}/environ", agent_pid(&c, "LocalCN-0001"))),
        PathBuf::from(format!("/proc/{}/environ", agent_pid(&c, "LocalCN-0002"))),
    ];
    let probe = secrets
        .iter()
        .map(|f| {
            format!(
                "if head -c 1 '{0}' >/dev/null 2>&1; then echo 'read {0}'; else echo 'denied {0}'; fi; ",
                f.display()
            )
        })
        .collect::<String>();
    let (out, _) = run(&c, &["sh", "-c", &format!("id -u; grep '^Groups:' /proc/self/status; {probe}")]);
    let mut lines = out.lines();
    let uid: u32 = lines.next().unwrap().parse().unwrap();
    let groups = lines.next().unwrap().trim_start_matches("Groups:").trim().to_string();
    if running_as_root() {
        // The task runs as nobody, without root's groups, and reads none of it.
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a user nobody");
        assert_eq!(uid, nobody.uid.as_raw(), "{out}");
        assert_eq!(groups, "", "no supplementary groups: {out}");
        for f in &secrets {
            assert!(
                out.contains(&format!("denied {}", f.display())),
                "a task of a local node reads {}:\n{out}",
                f.display()
            );
        }
    } else {
        // The task runs as the head node's user and reads what that user may (docs: security).
        assert_eq!(uid, nix::unistd::geteuid().as_raw(), "{out}");
        assert!(out.contains(&format!("read {}", state.join("access.json").display())), "{out}");
    }

    // A task that writes much leaves nothing in its directory once it has ended.
    let (out, err) = run(&c, &["sh", "-c", "pwd >&2; head -c 3000000 /dev/zero | tr '\\0' x"]);
    assert_eq!(out.trim_end().len(), 64 * 1024, "the result holds the last 64 KiB");
    let dir = PathBuf::from(err.trim());
    let left: Vec<_> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the task left {left:?} in {}", dir.display());
    if running_as_root() {
        assert!(!dir.starts_with(&state), "tasks of nobody work outside the private state directory");
    }

    // Stopping the nodes removes their directories, task roots too.
    c.th(&["node", "stop", "--template", "iso"]);
    c.await_nodes("iso", "NotDeployed");
    let task_root = dir.parent().and_then(Path::parent).unwrap().to_path_buf();
    eventually(20, "the task root to be removed", || (!task_root.exists()).then_some(()));
}

#[test]
fn tasks_of_sim_nodes_and_of_an_agent_started_by_hand_see_no_join_token() {
    let mut c = Cluster::start_with_env(&[], &HEAD_ENV);
    // A sim node that deploys runs a real agent, started as the local provider starts one.
    c.th(&["template", "create", "rehearsal", "--provider", "sim", "--sim-deploy-time", "0ms"]);
    c.th(&["node", "add", "--template", "rehearsal", "--count", "1", "--size", "Small"]);
    c.th(&["node", "start", "--template", "rehearsal"]);
    c.await_nodes("rehearsal", "Offline");
    c.th(&["node", "online", "--template", "rehearsal"]);
    c.await_nodes("rehearsal", "Online");
    let (env, _) = run(&c, &["env"]);
    assert_documented_env(&env, None);
    c.th(&["node", "stop", "--template", "rehearsal"]);
    c.await_nodes("rehearsal", "NotDeployed");

    // An on-premises agent started with its join token in its environment keeps it from its
    // tasks.
    let token = c.join_token();
    c.start_agent("onprem", 1);
    eventually(20, "the on-premises node to join", || {
        c.json(&["node", "list"]).as_array().unwrap().iter().any(|n| n["name"] == "onprem").then_some(())
    });
    c.th(&["node", "online", "onprem"]);
    let (env, _) = run(&c, &["env"]);
    assert_documented_env(&env, Some(token.rsplit('_').next().unwrap()));
}
