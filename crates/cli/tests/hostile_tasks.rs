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

/// The owner, group and mode of `path` itself (a link is not followed).
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[test]
fn a_task_cannot_make_the_agent_change_the_owner_of_anything_but_its_fresh_directory() {
    let c = Cluster::start();
    // One node of one core: the tasks run one after another in the same slot directory.
    c.burst("slot", 1, "Small");
    // What a task would like the agent, root, to give it: the test's files, behind links.
    let victim = c.dir.path().join("victim");
    std::fs::create_dir_all(victim.join("sub")).unwrap();
    std::fs::write(victim.join("shadow"), "root only").unwrap();
    std::fs::write(victim.join("sub/file"), "root only").unwrap();
    std::fs::set_permissions(victim.join("shadow"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let watched = ["", "shadow", "sub", "sub/file"].map(|p| victim.join(p));
    let before: Vec<_> = watched.iter().map(|p| owner_and_mode(p)).collect();

    // The first task leaves a directory full of files, one named as the file it wants, and
    // links to the test's files: at the top, in place of a directory, and deeper down.
    let v = victim.display();
    let plant = format!(
        "pwd; mkdir d e && for i in $(seq 300); do : > d/f$i; done; : > d/shadow; \
         ln -s {v} link; ln -s {v}/shadow shadow; ln -s {v} e/up; ln -s {v}/sub e/sub"
    );
    let (first, _) = run(&c, &["sh", "-c", &plant]);
    // The next task in that slot finds a directory made for it: empty but for its output
    // files, and its user's alone.
    let (second, _) = run(&c, &["sh", "-c", "pwd; ls -A; stat -c '%u %a' ."]);
    let mut lines = second.lines();
    assert_eq!(lines.next(), first.lines().next(), "both tasks ran in the same slot:\n{first}\n{second}");
    let listed: Vec<&str> = lines.by_ref().take_while(|l| !l.contains(' ')).collect();
    assert_eq!(listed, ["stderr", "stdout"], "what the next task found:\n{second}");
    let (uid, mode) = second.lines().last().unwrap().split_once(' ').unwrap();
    let user = if running_as_root() {
        nix::unistd::User::from_name("nobody").unwrap().expect("a user nobody").uid.as_raw()
    } else {
        nix::unistd::geteuid().as_raw()
    };
    assert_eq!((uid.parse::<u32>().unwrap(), mode), (user, "700"), "{second}");

    // Staged inputs are the agent's and readable: the task copies, renames or deletes them,
    // but cannot write into them, nor into a directory made for them.
    let input = c.dir.path().join("input.txt");
    std::fs::write(&input, "input\n").unwrap();
    let (top, deep) = (format!("{}:top.txt", input.display()), format!("{}:in/deep.txt", input.display()));
    let probe = "stat -c '%n %u %a' top.txt in in/deep.txt; \
                 if echo x >> top.txt; then echo 'wrote top.txt'; fi; \
                 if touch in/new 2>/dev/null; then echo 'wrote in/new'; fi; \
                 cp top.txt copy.txt && echo x >> copy.txt && cat copy.txt; \
                 mv top.txt moved.txt && rm moved.txt && echo 'removed top.txt'";
    let id = c.submit(&[
        "--sweep", "1-1", "--input", &top, "--input", &deep, "--output", "copy.txt", "--", "sh", "-c", probe,
    ]);
    c.try_th(&["job", "wait", &id.to_string()]);
    let out = c.th(&["task", "output", &format!("{id}.1")]);
    assert!(out.contains("input\nx\n") && out.contains("removed top.txt"), "{out}");
    // Its directory was taken back from the task user before the output went up.
    let outputs = c.dir.path().join("outputs");
    c.th(&["job", "output", &id.to_string(), "--to", outputs.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(outputs.join("1/copy.txt")).unwrap(), "input\nx\n");
    if running_as_root() {
        for line in ["top.txt 0 644", "in 0 755", "in/deep.txt 0 644"] {
            assert!(out.contains(line), "staged inputs stay root's and readable:\n{out}");
        }
        assert!(!out.contains("wrote"), "a task writes into its staged inputs:\n{out}");
    }

    let after: Vec<_> = watched.iter().map(|p| owner_and_mode(p)).collect();
    assert_eq!(after, before, "the owner or mode of a file outside the task's directory changed");
}

/// The processes whose command line holds `marker`, with their arguments.
fn processes_naming(marker: &str) -> Vec<(u32, Vec<String>)> {
    let entries = std::fs::read_dir("/proc").unwrap();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> =
                String::from_utf8_lossy(&cmdline).split_terminator('\0').map(str::to_string).collect();
            args.iter().any(|a| a.contains(marker)).then_some((pid, args))
        })
        .collect()
}

/// The `sleep MARKER` processes.
fn sleeping(marker: &str) -> Vec<u32> {
    processes_naming(marker)
        .into_iter()
        .filter(|(_, args)| args.len() == 2 && args[1] == marker)
        .map(|(p, _)| p)
        .collect()
}

/// Kills whatever still runs with one of its markers in its command line when the test ends,
/// pass or fail.
struct KillNaming(Vec<String>);

impl Drop for KillNaming {
    fn drop(&mut self) {
        for marker in &self.0 {
            for (pid, _) in processes_naming(marker) {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn processes_a_task_started_in_a_session_of_their_own_end_with_the_task() {
    let c = Cluster::start();
    c.burst("leftovers", 1, "Medium");
    // Durations no other process on the machine sleeps: they name this test's processes.
    let pid = std::process::id();
    let markers = [format!("301.{pid}"), format!("302.{pid}"), format!("303.{pid}")];
    let _guard = KillNaming(markers.to_vec());
    let [alone, nested, canceled] = &markers;
    let gone = |marker: &str| {
        eventually(5, &format!("the processes of sleep {marker} to end"), || {
            processes_naming(marker).is_empty().then_some(())
        })
    };

    // A task that starts a process in a new session, and one that double-forks into another,
    // and ends while they sleep on.
    let escape = format!("setsid sleep {alone} & (setsid sh -c 'sleep {nested} & wait' &); sleep 3");
    let id = c.submit(&["--sweep", "1-1", "--", "sh", "-c", &escape]);
    for marker in [alone, nested] {
        let seen = eventually(20, &format!("sleep {marker} to start"), || {
            let found = sleeping(marker);
            (!found.is_empty()).then_some(found)
        });
        if running_as_root() {
            // They run as the task user, as the task did.
            let status = std::fs::read_to_string(format!("/proc/{}/status", seen[0])).unwrap_or_default();
            let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a user nobody").uid.as_raw();
            assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains(&nobody.to_string())), "{status}");
        }
    }
    assert!(c.try_th(&["job", "wait", &id.to_string()]).status.success());
    gone(alone);
    gone(nested);

    // A task canceled while its escaped process sleeps.
    let id = c.submit(&["--sweep", "1-1", "--", "sh", "-c", &format!("setsid sleep {canceled} & sleep 300")]);
    eventually(20, &format!("sleep {canceled} to start"), || (!sleeping(canceled).is_empty()).then_some(()));
    c.th(&["job", "cancel", &id.to_string()]);
    gone(canceled);

    // The node runs tasks as before.
    let (out, _) = run(&c, &["echo", "still working"]);
    assert_eq!(out.trim(), "still working");
}
