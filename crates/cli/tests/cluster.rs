//! End-to-end: a real head node, real agents, the real CLI.

mod common;

use common::{Cluster, eventually};
use serde_json::Value;
use std::collections::BTreeMap;

fn counts(job: &Value) -> (u64, u64, u64, u64, u64) {
    let t = &job["tasks"];
    let n = |k: &str| t[k].as_u64().unwrap();
    (n("Queued"), n("Running"), n("Finished"), n("Failed"), n("Canceled"))
}

#[test]
fn a_sweep_runs_on_local_burst_nodes_from_start_to_stop() {
    let c = Cluster::start();
    c.th(&["template", "create", "burst", "--provider", "local", "--description", "test set"]);
    let added = c.json(&["node", "add", "--template", "burst", "--count", "2", "--size", "Small"]);
    assert_eq!(added.as_array().unwrap().len(), 2);
    let nodes = c.json(&["node", "list"]);
    let first = &nodes[0];
    assert_eq!(first["name"], "LocalCN-0001");
    assert_eq!(nodes[1]["name"], "LocalCN-0002");
    assert_eq!(
        (first["template"].as_str(), first["size"].as_str(), first["cores"].as_u64()),
        (Some("burst"), Some("Small"), Some(1))
    );
    assert_eq!((first["state"].as_str(), first["health"].as_str()), (Some("NotDeployed"), Some("Unapproved")));

    let started = c.th(&["node", "start", "--template", "burst", "--wait"]);
    assert!(started.contains("2/2 Offline"), "progress lines when not on a terminal: {started}");
    // --wait returned once the agents connected: no polling needed.
    assert!(c.node_states("burst").iter().all(|(_, s, h)| s == "Offline" && h == "OK"), "{:?}", c.node_states("burst"));
    c.th(&["node", "online", "--template", "burst"]);
    c.await_nodes("burst", "Online");

    let id = c.submit(&[
        "--name",
        "doubles",
        "--sweep",
        "1-40",
        "--",
        "sh",
        "-c",
        // Each task starts in an empty directory of its own, whatever the one before it left.
        "echo \"$(ls -A | tr '\\n' ' ')v=$((THUNDERHEAD_SWEEP_INDEX + THUNDERHEAD_SWEEP_INDEX)) pad=*** task=$THUNDERHEAD_TASK_ID on=$THUNDERHEAD_NODE_NAME\"; touch left-*; mkdir -p sub/dir",
    ]);
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "job wait: {}", String::from_utf8_lossy(&wait.stderr));
    let job = c.job(id);
    assert_eq!(job["state"], "Finished");
    assert_eq!(job["name"], "doubles");
    assert_eq!(counts(&job), (0, 0, 40, 0, 0));

    let out = c.th(&["task", "output", &format!("{id}.7")]);
    assert!(out.starts_with(&format!("stderr stdout v=14 pad=007 task={id}.7 on=LocalCN-000")), "{out}");
    for index in 1..=40 {
        let out = c.th(&["task", "output", &format!("{id}.{index}")]);
        assert!(out.starts_with("stderr stdout v="), "task {index} found files of another task: {out}");
    }
    let tasks = c.json(&["task", "list", &id.to_string()]);
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 40);
    let used: std::collections::BTreeSet<&str> = tasks.iter().map(|t| t["node"].as_str().unwrap()).collect();
    assert_eq!(used.len(), 2, "both nodes ran tasks: {used:?}");

    c.th(&["node", "stop", "--template", "burst"]);
    c.await_nodes("burst", "NotDeployed");
    assert!(!c.state_dir().join("nodes/LocalCN-0001").exists(), "stop removes the node directory");
    let log = c.th(&["node", "log", "LocalCN-0001"]);
    for step in ["added from template burst", "Provisioning", "Offline", "Online", "Stopping", "NotDeployed"] {
        assert!(log.contains(step), "log lacks {step}:\n{log}");
    }
    c.th(&["node", "delete", "--template", "burst"]);
    assert_eq!(c.json(&["node", "list"]), Value::Array(vec![]));
    c.th(&["template", "delete", "burst"]);
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let c = Cluster::start();
    c.th(&["template", "create", "t", "--provider", "local"]);
    let cases: &[(&[&str], &str)] = &[
        (&["node", "add", "--template", "nope", "--count", "1", "--size", "Small"], "template \"nope\" does not exist"),
        (
            &["node", "add", "--template", "t", "--count", "1", "--size", "ExtraSmall"],
            "ExtraSmall\" cannot be used for burst nodes",
        ),
        (&["node", "add", "--template", "t", "--count", "1", "--size", "Huge"], "size \"Huge\" is not a node size"),
        (&["node", "add", "--template", "t", "--count", "0", "--size", "Small"], "count 0 is out of range"),
        (&["job", "submit", "--sweep", "10-1", "--", "echo", "*"], "sweep \"10-1\" ends before it starts"),
        (&["job", "submit", "--sweep", "1-x", "--", "echo"], "START-END[:STEP]"),
        (&["job", "submit", "--priority", "Urgent", "--", "echo"], "priority \"Urgent\" is not known"),
        (&["job", "submit"], "no command to run"),
        (&["template", "create", "u", "--provider", "gcp"], "provider \"gcp\" is not available"),
        (&["template", "create", "t", "--provider", "local"], "template \"t\" already exists"),
        (&["job", "view", "999"], "job 999 does not exist"),
        (&["task", "output", "1-2"], "expected JOB.INDEX"),
        (&["node", "online", "LocalCN-0042"], "node \"LocalCN-0042\" does not exist"),
    ];
    for (args, expected) in cases {
        let err = c.th_fails(args);
        assert!(err.contains(expected), "thunderhead {}: expected {expected:?} in {err:?}", args.join(" "));
    }
    let huge = c.dir.path().join("huge.json");
    std::fs::write(&huge, format!("{{\"command\": [\"{}\"]}}", "x".repeat(33 << 20))).unwrap();
    let err = c.th_fails(&["job", "submit", "--file", huge.to_str().unwrap()]);
    assert!(err.contains("larger than the limit of 32 MiB") && err.contains("sweep"), "{err}");
    // Nothing was created by the refused requests.
    assert_eq!(c.json(&["node", "list"]), Value::Array(vec![]));
    assert_eq!(c.json(&["job", "list"]), Value::Array(vec![]));
    c.th(&["node", "add", "--template", "t", "--count", "1", "--size", "Small"]);
    let err = c.th_fails(&["template", "delete", "t"]);
    assert!(err.contains("still has 1 node(s)") && err.contains("node delete --template t"), "{err}");
    let err = c.th_fails(&["node", "online", "LocalCN-0001"]);
    assert!(err.contains("cannot bring online a node that is NotDeployed"), "{err}");
}

#[test]
fn a_failed_deployment_leaves_the_node_unknown_with_the_reason_in_its_log() {
    let c = Cluster::start();
    c.th(&["template", "create", "broken", "--provider", "local", "--work-root", "/dev/null/nodes"]);
    let checks = c.try_th(&["template", "validate", "broken"]);
    assert!(!checks.status.success());
    assert!(String::from_utf8_lossy(&checks.stdout).contains("FAILED"));
    c.th(&["node", "add", "--template", "broken", "--count", "1", "--size", "Medium"]);
    c.th(&["node", "start", "--template", "broken"]);
    c.await_nodes("broken", "Unknown");
    let nodes = c.json(&["node", "list", "--template", "broken"]);
    assert_eq!(nodes[0]["health"], "Unapproved");
    assert!(nodes[0]["cause"].as_str().unwrap().contains("cannot create the node directory"), "{nodes}");
    // The set's proxies go first, and they cannot be deployed there either.
    let log = c.th(&["node", "log", "LocalCN-0001"]);
    assert!(
        log.contains("no proxy of set broken is up: cannot create the node directory /dev/null/nodes/broken-proxy-"),
        "{log}"
    );
    let proxy_log = c.th(&["node", "log", "broken-proxy-1"]);
    assert!(proxy_log.contains("proxy deployment failed: cannot create the node directory"), "{proxy_log}");
    // A failed node can be deleted.
    c.th(&["node", "delete", "LocalCN-0001"]);
}

#[test]
fn cancel_kills_running_tasks_with_their_process_groups() {
    let mut c = Cluster::start();
    c.start_agent("onprem-cancel", 2);
    eventually(20, "the agent to join", || {
        let nodes = c.json(&["node", "list"]);
        (nodes.as_array().unwrap().len() == 1).then_some(())
    });
    let node = c.json(&["node", "list"])[0].clone();
    assert_eq!(
        (node["template"].clone(), node["state"].as_str(), node["cores"].as_u64()),
        (Value::Null, Some("Offline"), Some(2))
    );
    c.th(&["node", "online", "onprem-cancel"]);
    // Each task starts a child that would outlive a kill of the task's own process alone.
    let marker = "61.4159";
    let id = c.submit(&["--sweep", "1-6", "--", "sh", "-c", &format!("sleep {marker} & sleep {marker}")]);
    eventually(20, "two tasks to run", || (counts(&c.job(id)).1 >= 2).then_some(()));
    eventually(10, "the task processes to start", || (pgrep(marker) >= 2).then_some(()));
    let out = c.th(&["job", "cancel", &id.to_string()]);
    assert!(out.contains("canceled"), "{out}");
    let job = c.job(id);
    assert_eq!(job["state"], "Canceled");
    assert_eq!(counts(&job), (0, 0, 0, 0, 6));
    eventually(10, "every sleep of the canceled tasks to end", || (pgrep(marker) == 0).then_some(()));
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(!wait.status.success(), "waiting on a canceled job exits non-zero");
}

#[test]
fn a_requeued_job_runs_its_failed_tasks_again_across_a_head_node_crash() {
    let mut c = Cluster::start();
    c.start_agent("onprem-requeue", 2);
    eventually(20, "the agent to join", || (c.json(&["node", "list"]).as_array().unwrap().len() == 1).then_some(()));
    c.th(&["node", "online", "onprem-requeue"]);
    let flag = c.dir.path().join("fixed");
    let script = format!("test * -le 4 || test -e '{}'", flag.display());
    let id = c.submit(&["--sweep", "1-8", "--", "sh", "-c", &script]);
    let _ = c.try_th(&["job", "wait", &id.to_string()]);
    assert_eq!(counts(&c.job(id)), (0, 0, 4, 4, 0));
    assert_eq!(c.job(id)["state"], "Failed");
    std::fs::write(&flag, "").unwrap();
    let out = c.th(&["job", "requeue", &id.to_string()]);
    assert!(out.contains("4 task(s) queued again"), "{out}");
    // Acknowledged means durable: the requeue survives a crash right after it.
    c.kill_server();
    c.start_server();
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "job wait: {}", String::from_utf8_lossy(&wait.stderr));
    assert_eq!(counts(&c.job(id)), (0, 0, 8, 0, 0));
    let tasks = c.json(&["task", "list", &id.to_string()]);
    let attempts: Vec<u64> = tasks.as_array().unwrap().iter().map(|t| t["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 1, 1, 1, 2, 2, 2, 2], "finished tasks kept their run; failed ones ran again");
    let refused = c.th_fails(&["job", "requeue", &id.to_string()]);
    assert!(refused.contains("nothing to requeue"), "{refused}");
}

fn pgrep(pattern: &str) -> usize {
    let out = std::process::Command::new("pgrep").args(["-f", pattern]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_job_file_runs_tasks_in_dependency_order() {
    let mut c = Cluster::start();
    c.start_agent("onprem-deps", 2);
    eventually(20, "the agent to join", || (c.json(&["node", "list"]).as_array().unwrap().len() == 1).then_some(()));
    c.th(&["node", "online", "onprem-deps"]);
    let shared = c.dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let file = c.dir.path().join("job.toml");
    let s = shared.display();
    std::fs::write(
        &file,
        format!(
            r#"
name = "pipeline"
[[tasks]]
name = "prepare"
command = ["sh", "-c", "sleep 0.3; echo data > {s}/input"]
[[tasks]]
name = "process"
command = ["sh", "-c", "cat {s}/input"]
depends_on = ["prepare"]
[[tasks]]
name = "broken"
command = ["sh", "-c", "echo oops >&2; exit 3"]
depends_on = ["process"]
[[tasks]]
name = "report"
command = ["echo", "never"]
depends_on = ["broken"]
[[tasks]]
name = "independent"
command = ["echo", "alone"]
"#
        ),
    )
    .unwrap();
    let id = c.submit(&["--file", file.to_str().unwrap()]);
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(!wait.status.success(), "a job with a failed task does not wait successfully");
    let job = c.job(id);
    assert_eq!((job["name"].as_str(), job["state"].as_str()), (Some("pipeline"), Some("Failed")));
    assert_eq!(counts(&job), (0, 0, 3, 1, 1));
    assert_eq!(c.th(&["task", "output", &format!("{id}.2")]), "data\n", "process ran after prepare");
    assert_eq!(c.th(&["task", "output", &format!("{id}.3"), "--stderr"]), "oops\n");
    let states: BTreeMap<u64, String> = c
        .json(&["task", "list", &id.to_string()])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["index"].as_u64().unwrap(), t["state"].as_str().unwrap().to_string()))
        .collect();
    let expected: BTreeMap<u64, String> =
        [(1, "Finished"), (2, "Finished"), (3, "Failed"), (4, "Canceled"), (5, "Finished")]
            .into_iter()
            .map(|(i, s)| (i, s.to_string()))
            .collect();
    assert_eq!(states, expected);
    let broken = c.json(&["task", "list", &id.to_string(), "--state", "Failed"]);
    assert_eq!(broken[0]["exit_code"], 3);
}

#[test]
fn killing_the_head_node_mid_sweep_loses_nothing_and_runs_nothing_twice() {
    let mut c = Cluster::start_with(&["--reconnect-grace", "20"]);
    c.burst("set", 2, "Medium");
    let ran = c.shared_dir().join("ran.log");
    let script = format!(
        "sleep 0.0$((THUNDERHEAD_SWEEP_INDEX % 7)); echo $THUNDERHEAD_SWEEP_INDEX >> {}; echo done-*",
        ran.display()
    );
    let id = c.submit(&["--sweep", "1-300", "--", "sh", "-c", &script]);
    eventually(60, "a third of the sweep to finish", || (counts(&c.job(id)).2 >= 100).then_some(()));
    c.kill_server();
    // Agents keep running tasks while the head node is down.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.start_server();
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "job wait after restart: {}", String::from_utf8_lossy(&wait.stderr));
    let job = c.job(id);
    assert_eq!(counts(&job), (0, 0, 300, 0, 0));
    let tasks = c.json(&["task", "list", &id.to_string()]);
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 300);
    assert!(tasks.iter().all(|t| t["state"] == "Finished" && t["exit_code"] == 0));
    for index in [1u64, 150, 300] {
        assert_eq!(c.th(&["task", "output", &format!("{id}.{index}")]), format!("done-{index}\n"));
    }
    // Every index ran exactly once: none was lost, none was run again after the restart.
    let mut runs: BTreeMap<u64, u32> = BTreeMap::new();
    for line in std::fs::read_to_string(&ran).unwrap().lines() {
        *runs.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    assert_eq!(runs.len(), 300);
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "indices run more than once: {twice:?}");
    let log = c.th(&["node", "log", "LocalCN-0001"]);
    assert!(log.contains("agent reconnected"), "{log}");
    c.th(&["node", "stop", "--template", "set"]);
    c.await_nodes("set", "NotDeployed");
}

#[test]
fn a_million_index_sweep_is_one_record_until_its_tasks_start() {
    let c = Cluster::start();
    let id = c.submit(&["--sweep", "1-1000000", "--", "echo", "*"]);
    let job = c.job(id);
    assert_eq!(job["total_tasks"], 1_000_000);
    assert_eq!(counts(&job), (1_000_000, 0, 0, 0, 0));
    assert_eq!(c.json(&["task", "list", &id.to_string()]), Value::Array(vec![]), "no task rows before tasks start");
    let db = std::fs::metadata(c.state_dir().join("thunderhead.db")).unwrap().len();
    let wal = std::fs::metadata(c.state_dir().join("thunderhead.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(db + wal < 2_000_000, "the state holds no row per index ({} bytes)", db + wal);
    c.th(&["job", "cancel", &id.to_string()]);
    assert_eq!(counts(&c.job(id)), (0, 0, 0, 0, 1_000_000));
}

#[test]
fn tasks_of_a_killed_agent_are_requeued_on_the_other_nodes() {
    let c = Cluster::start();
    c.burst("pair", 2, "Small");
    let id = c.submit(&["--sweep", "1-8", "--", "sh", "-c", "sleep 0.4; echo ok"]);
    eventually(20, "tasks to run on both nodes", || {
        let tasks = c.json(&["task", "list", &id.to_string(), "--state", "Running"]);
        let nodes: std::collections::BTreeSet<String> =
            tasks.as_array().unwrap().iter().map(|t| t["node"].as_str().unwrap().to_string()).collect();
        (nodes.len() == 2).then_some(())
    });
    let pid: i32 =
        std::fs::read_to_string(c.state_dir().join("nodes/LocalCN-0001/agent.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    assert_eq!(counts(&c.job(id)), (0, 0, 8, 0, 0));
    let nodes = c.json(&["node", "list"]);
    assert_eq!((nodes[0]["state"].as_str(), nodes[0]["health"].as_str()), (Some("Unknown"), Some("Error")));
    let tasks = c.json(&["task", "list", &id.to_string()]);
    let retried: Vec<&Value> = tasks.as_array().unwrap().iter().filter(|t| t["attempt"].as_u64() == Some(2)).collect();
    assert!(!retried.is_empty(), "some task ran a second attempt");
    assert!(retried.iter().all(|t| t["node"] == "LocalCN-0002"));
}

#[test]
fn tasks_signalled_with_their_agent_as_a_batch_system_ends_an_allocation_run_again_not_failed() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let c = Cluster::start();
    c.burst("pair", 2, "Small");
    let id = c.submit(&["--sweep", "1-6", "--", "sleep", "3"]);
    eventually(20, "tasks to run on both nodes", || {
        let tasks = c.json(&["task", "list", &id.to_string(), "--state", "Running"]);
        let nodes: std::collections::BTreeSet<String> =
            tasks.as_array().unwrap().iter().map(|t| t["node"].as_str().unwrap().to_string()).collect();
        (nodes.len() == 2).then_some(())
    });
    // As Slurm does at a time limit or scancel: SIGTERM to every process of the allocation, here
    // the tasks first, then the agent.
    let node_dir = c.state_dir().join("nodes/LocalCN-0001");
    let agent: i32 = std::fs::read_to_string(node_dir.join("agent.pid")).unwrap().trim().parse().unwrap();
    let ps = std::process::Command::new("ps").args(["-eo", "pid=,ppid=,args="]).output().unwrap();
    // The agent's tasks are its children.
    let tasks: Vec<i32> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (pid, ppid) = (words.next()?.parse::<i32>().ok()?, words.next()?.parse::<i32>().ok()?);
            (ppid == agent && words.collect::<Vec<_>>().join(" ") == "sleep 3").then_some(pid)
        })
        .collect();
    assert!(!tasks.is_empty(), "the node runs tasks");
    for pid in tasks {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    // Slurm signals an allocation's processes one by one: the agent may hear of its tasks'
    // ends before its own signal comes.
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(Pid::from_raw(agent), Signal::SIGTERM).unwrap();
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    assert_eq!(counts(&c.job(id)), (0, 0, 6, 0, 0), "no task counted failed");
}

#[test]
fn clients_find_the_head_node_through_its_access_file() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    let c = Cluster::start();
    let access = c.state_dir().join("access.json");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&access).unwrap()).unwrap();
    assert_eq!(written["url"].as_str(), Some(c.url().as_str()));
    assert_eq!(std::fs::metadata(&access).unwrap().permissions().mode() & 0o777, 0o600);
    let home = tempfile::tempdir().unwrap();
    let client = || {
        let mut cmd = Command::new(common::BIN);
        cmd.env_remove("THUNDERHEAD_SERVER")
            .env_remove("THUNDERHEAD_ACCESS")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", home.path());
        cmd
    };
    let by_flag = client().args(["--access", access.to_str().unwrap(), "job", "list"]).output().unwrap();
    assert!(by_flag.status.success(), "{}", String::from_utf8_lossy(&by_flag.stderr));
    let by_env = client().env("THUNDERHEAD_ACCESS", &access).args(["job", "list"]).output().unwrap();
    assert!(by_env.status.success(), "{}", String::from_utf8_lossy(&by_env.stderr));
    let none = client().args(["job", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&none.stderr).contains("no head node given and none found"));
    let default_dir = home.path().join(".local/share/thunderhead");
    std::fs::create_dir_all(&default_dir).unwrap();
    std::fs::copy(&access, default_dir.join("access.json")).unwrap();
    let by_default = client().args(["job", "list"]).output().unwrap();
    assert!(by_default.status.success(), "{}", String::from_utf8_lossy(&by_default.stderr));
}

#[test]
fn a_sim_rehearsal_with_failures_leaves_failed_nodes_unknown_and_the_sweep_finishes_on_the_rest() {
    let c = Cluster::start_with(&["--provision-timeout", "3"]);
    c.th(&[
        "template",
        "create",
        "rehearsal",
        "--provider",
        "sim",
        "--sim-deploy-time",
        "100ms..400ms",
        "--sim-failure-rate",
        "0.5",
        "--sim-seed",
        "11",
    ]);
    c.th(&["node", "add", "--template", "rehearsal", "--count", "6", "--size", "Small"]);
    assert_eq!(c.node_states("rehearsal")[0].0, "SimCN-0001");
    c.th(&["node", "start", "--template", "rehearsal"]);
    let nodes = eventually(30, "every deployment to succeed or fail", || {
        let nodes = c.node_states("rehearsal");
        nodes.iter().all(|(_, s, _)| s == "Offline" || s == "Unknown").then_some(nodes)
    });
    let failed: Vec<&String> = nodes.iter().filter(|(_, s, _)| s == "Unknown").map(|(n, _, _)| n).collect();
    let up: Vec<&str> = nodes.iter().filter(|(_, s, _)| s == "Offline").map(|(n, _, _)| n.as_str()).collect();
    assert!(!failed.is_empty() && !up.is_empty(), "seed 11 gives both outcomes: {nodes:?}");
    for name in &failed {
        let log = c.th(&["node", "log", name]);
        assert!(log.contains("(sim)") || log.contains("did not connect within 3 s"), "{name}:\n{log}");
    }
    let mut online = vec!["node", "online"];
    online.extend(&up);
    c.th(&online);
    let id = c.submit(&["--sweep", "1-30", "--", "echo", "*"]);
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    assert_eq!(counts(&c.job(id)), (0, 0, 30, 0, 0));
    c.th(&["node", "stop", "--template", "rehearsal"]);
    c.await_nodes("rehearsal", "NotDeployed");
}

#[test]
fn the_core_quota_counts_proxies_and_can_be_raised() {
    let c = Cluster::start();
    c.th(&["template", "create", "q", "--provider", "local", "--series-prefix", "Q-"]);
    let err = c.th_fails(&["node", "add", "--template", "q", "--count", "19", "--size", "Small"]);
    assert!(err.contains("needs 21 cores") && err.contains("quota of 20") && err.contains("add at most 18"), "{err}");
    c.th(&["node", "add", "--template", "q", "--count", "18", "--size", "Small"]);
    assert_eq!(c.node_states("q")[17].0, "Q-0018");
    c.th_fails(&["node", "add", "--template", "q", "--count", "1", "--size", "Small"]);
    c.th(&["template", "edit", "q", "--quota-cores", "40", "--proxies", "3"]);
    let t = c.json(&["template", "show", "q"]);
    assert_eq!(
        (t["quota_cores"].as_u64(), t["proxies"].as_u64(), t["node_cores"].as_u64()),
        (Some(40), Some(3), Some(18))
    );
    c.th(&["node", "add", "--template", "q", "--count", "4", "--size", "Medium"]);
    let err = c.th_fails(&["template", "edit", "q", "--proxies", "0"]);
    assert!(err.contains("0 proxies is out of range"), "{err}");
}

#[test]
fn a_hung_agent_gets_health_error_and_its_tasks_finish_elsewhere() {
    use nix::sys::signal::{Signal, kill};
    let mut c = Cluster::start_with(&["--heartbeat-timeout", "3", "--reconnect-grace", "120"]);
    c.start_agent("hangs", 1);
    c.start_agent("steady", 1);
    eventually(20, "both agents to join", || (c.json(&["node", "list"]).as_array().unwrap().len() == 2).then_some(()));
    c.th(&["node", "online", "hangs", "steady"]);
    let id = c.submit(&["--sweep", "1-6", "--", "sh", "-c", "sleep 0.3; echo ok-*"]);
    eventually(20, "a task on the agent that will hang", || {
        let running = c.json(&["task", "list", &id.to_string(), "--state", "Running"]);
        running.as_array().unwrap().iter().any(|t| t["node"] == "hangs").then_some(())
    });
    kill(c.agent_pid("hangs"), Signal::SIGSTOP).unwrap();
    let health = |name: &str| {
        let nodes = c.json(&["node", "list"]);
        let node = nodes.as_array().unwrap().iter().find(|n| n["name"] == name).unwrap().clone();
        (node["state"].as_str().unwrap().to_string(), node["health"].as_str().unwrap().to_string())
    };
    eventually(15, "the silent node's health to be Error", || (health("hangs").1 == "Error").then_some(()));
    assert_eq!(health("hangs").0, "Online", "the state stays; the health says it takes no work");
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    assert_eq!(counts(&c.job(id)), (0, 0, 6, 0, 0));
    let log = c.th(&["node", "log", "hangs"]);
    assert!(log.contains("no heartbeat for 3 s: health Error"), "{log}");
    kill(c.agent_pid("hangs"), Signal::SIGCONT).unwrap();
    eventually(20, "the agent to come back with health OK", || (health("hangs").1 == "OK").then_some(()));
}

#[test]
fn cost_is_reported_per_set_per_job_and_in_total() {
    let c = Cluster::start();
    c.th(&["template", "create", "paid", "--provider", "local", "--rates", "Small=36000", "--currency", "EUR"]);
    c.th(&["node", "add", "--template", "paid", "--count", "1", "--size", "Small"]);
    c.th(&["node", "start", "--template", "paid"]);
    c.await_nodes("paid", "Offline");
    c.th(&["node", "online", "--template", "paid"]);
    c.await_nodes("paid", "Online");
    let id = c.submit(&["--sweep", "1-2", "--", "sleep", "0.2"]);
    assert!(c.try_th(&["job", "wait", &id.to_string()]).status.success());
    c.th(&["node", "stop", "--template", "paid"]);
    c.await_nodes("paid", "NotDeployed");
    let report = c.json(&["cost"]);
    let set = &report["sets"][0];
    assert_eq!(set["template"], "paid");
    // 36000 EUR an hour is 10 EUR a second: a node up for a second or so costs some EUR.
    let node_cost = set["cost"]["EUR"].as_f64().unwrap();
    assert!(node_cost > 1.0, "{report}");
    assert!(set["proxy_hours"].as_f64().unwrap() > 0.0, "proxies are billed: {report}");
    let job = report["jobs"].as_array().unwrap().iter().find(|j| j["id"] == id).unwrap().clone();
    let job_cost = job["cost"]["EUR"].as_f64().unwrap();
    assert!(job_cost >= 3.9 && job_cost < node_cost, "two 0.2 s tasks at 10 EUR/s: {job}");
    let only_job = c.json(&["cost", "--job", &id.to_string()]);
    assert_eq!(only_job["sets"], Value::Array(vec![]));
    assert_eq!(only_job["total"]["EUR"], job["cost"]["EUR"]);
    let later = c.json(&["cost", "--since", "2099-01-01"]);
    assert_eq!(later["sets"], Value::Array(vec![]), "nothing ran after 2099");
    let err = c.th_fails(&["cost", "--since", "yesterday-ish"]);
    assert!(err.contains("--since \"yesterday-ish\""), "{err}");
    let text = c.th(&["cost"]);
    assert!(text.contains("paid") && text.contains("EUR") && text.contains("total:"), "{text}");
}

#[test]
fn agents_reach_the_head_node_through_proxies_and_fail_over_when_one_dies() {
    let c = Cluster::start();
    c.burst("relayed", 2, "Small");
    let template = c.json(&["template", "show", "relayed"]);
    let proxies = template["proxy_list"].as_array().unwrap().clone();
    assert_eq!(proxies.len(), 2, "{template}");
    assert!(proxies.iter().all(|p| p["state"] == "Up"), "{template}");
    let urls: Vec<String> = proxies.iter().map(|p| p["url"].as_str().unwrap().to_string()).collect();
    // The agents were given the proxies' addresses, not the head node's.
    let pid: i32 =
        std::fs::read_to_string(c.state_dir().join("nodes/LocalCN-0001/agent.pid")).unwrap().trim().parse().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap().replace('\0', " ");
    assert!(urls.iter().all(|u| cmdline.contains(u.as_str())), "{cmdline}");
    assert!(!cmdline.contains(&c.url()), "{cmdline}");

    let ran = c.shared_dir().join("ran.log");
    let script = format!("sleep 0.05; echo $THUNDERHEAD_SWEEP_INDEX >> {}", ran.display());
    let id = c.submit(&["--sweep", "1-80", "--", "sh", "-c", &script]);
    eventually(30, "a quarter of the sweep", || (counts(&c.job(id)).2 >= 20).then_some(()));
    let proxy_pid: i32 =
        std::fs::read_to_string(c.state_dir().join("nodes/relayed-proxy-1/proxy.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(proxy_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    assert_eq!(counts(&c.job(id)), (0, 0, 80, 0, 0));
    let mut runs: BTreeMap<u64, u32> = BTreeMap::new();
    for line in std::fs::read_to_string(&ran).unwrap().lines() {
        *runs.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    assert_eq!(runs.len(), 80);
    assert!(runs.values().all(|n| *n == 1), "no task ran twice: {runs:?}");
    // The dead proxy is replaced on its address.
    eventually(20, "the proxy to be redeployed", || {
        let log = c.th(&["node", "log", "relayed-proxy-1"]);
        log.contains("proxy gone").then_some(())
    });
    eventually(20, "the proxy to be up again", || {
        let t = c.json(&["template", "show", "relayed"]);
        let p = t["proxy_list"].as_array().unwrap().iter().find(|p| p["name"] == "relayed-proxy-1").cloned()?;
        (p["state"] == "Up" && p["url"] == urls[0].as_str()).then_some(())
    });
    c.th(&["node", "stop", "--template", "relayed"]);
    c.await_nodes("relayed", "NotDeployed");
    eventually(20, "the proxies to be removed", || {
        c.json(&["template", "show", "relayed"])["proxy_list"].as_array().unwrap().is_empty().then_some(())
    });
}

#[test]
fn stopping_a_set_while_it_provisions_leaves_nothing_deployed() {
    let c = Cluster::start();
    // Proxies take 500 ms, then the nodes 500 ms: at 750 ms the node deployments are in flight.
    c.th(&["template", "create", "racy", "--provider", "sim", "--sim-deploy-time", "500ms"]);
    c.th(&["node", "add", "--template", "racy", "--count", "3", "--size", "Small"]);
    c.th(&["node", "start", "--template", "racy"]);
    std::thread::sleep(std::time::Duration::from_millis(750));
    c.th(&["node", "stop", "--template", "racy"]);
    c.await_nodes("racy", "NotDeployed");
    eventually(20, "the proxies to be gone", || {
        c.json(&["template", "show", "racy"])["proxy_list"].as_array().unwrap().is_empty().then_some(())
    });
    // Deployments that finished after the stop were removed too: no process is left.
    eventually(20, "every node and proxy directory to be removed", || {
        let left: Vec<_> = std::fs::read_dir(c.state_dir().join("nodes"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        left.is_empty().then_some(())
    });
    for (name, _, _) in c.node_states("racy") {
        let log = c.th(&["node", "log", &name]);
        assert!(log.contains("state Stopping -> NotDeployed"), "{name}:\n{log}");
    }
}

#[test]
fn an_azure_template_is_validated_its_certificate_sealed_and_its_nodes_not_started_in_this_build() {
    let c = Cluster::start();
    let password = "correct-horse-battery-42";
    let (pfx, fingerprint) = common::make_pfx(c.dir.path(), 2048, password);
    let pw_file = c.dir.path().join("pw.txt");
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();
    let (pfx_s, pw_s) = (pfx.to_str().unwrap(), pw_file.to_str().unwrap());
    let base = |name: &'static str, sub: &'static str, account: &'static str| {
        vec![
            "template",
            "create",
            name,
            "--provider",
            "azure",
            "--subscription-id",
            sub,
            "--service-name",
            "th-burst",
            "--storage-account",
            account,
            "--certificate",
            pfx_s,
            "--certificate-password-file",
            pw_s,
        ]
    };
    let good_sub = "0123abcd-4567-89ab-cdef-0123456789ab";
    let err = c.th_fails(&base("bad1", "12ab", "thstore"));
    assert!(err.contains("subscription id \"12ab\" is not a GUID"), "{err}");
    let err = c.th_fails(&base("bad2", good_sub, "TH_Store"));
    assert!(err.contains("storage account \"TH_Store\"") && err.contains("3-24 lowercase"), "{err}");
    let mut wrong_thumb = base("bad3", good_sub, "thstore");
    wrong_thumb.extend(["--thumbprint", "00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 00 11 22 33"]);
    let err = c.th_fails(&wrong_thumb);
    assert!(err.contains("does not match the certificate") && err.contains(&fingerprint), "{err}");
    let (weak, _) = common::make_pfx(c.dir.path(), 1024, password);
    let mut weak_args = base("bad4", good_sub, "thstore");
    weak_args[12] = weak.to_str().unwrap();
    let err = c.th_fails(&weak_args);
    assert!(err.contains("1024 bits") && err.contains("2048"), "{err}");

    // The thumbprint may be given with spaces and in lower case.
    let spaced: String = fingerprint
        .to_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let mut good = base("az", good_sub, "thstore");
    good.extend(["--thumbprint", &spaced]);
    c.th(&good);
    let shown = c.json(&["template", "show", "az"]);
    assert_eq!(shown["settings"]["thumbprint"].as_str(), Some(fingerprint.as_str()));
    assert_eq!(shown["settings"]["certificate_key_bits"], 2048);
    // The same template from provider settings given generically: --set, a settings file and
    // secret settings read from files.
    let settings_file = c.dir.path().join("azure.toml");
    std::fs::write(&settings_file, "service_name = \"th-burst\"\nstorage_account = \"thstore\"\n").unwrap();
    let cert_hex = c.dir.path().join("certificate.hex");
    std::fs::write(&cert_hex, std::fs::read(&pfx).unwrap().iter().map(|b| format!("{b:02x}")).collect::<String>())
        .unwrap();
    let subscription = format!("subscription_id={good_sub}");
    let (cert_secret, pw_secret) =
        (format!("certificate={}", cert_hex.display()), format!("certificate_password={pw_s}"));
    c.th(&[
        "template",
        "create",
        "az-set",
        "--provider",
        "azure",
        "--set",
        &subscription,
        "--settings",
        settings_file.to_str().unwrap(),
        "--secret",
        &cert_secret,
        "--secret",
        &pw_secret,
    ]);
    let generic = c.json(&["template", "show", "az-set"]);
    assert_eq!(generic["settings"], shown["settings"], "both forms make the same settings");
    assert_eq!(generic["blob_store"], shown["blob_store"]);
    c.th(&["template", "delete", "az-set"]);
    let err = c.th_fails(&["template", "edit", "az", "--thumbprint", &"a".repeat(40)]);
    assert!(err.contains("comes from the certificate"), "{err}");
    c.th(&["node", "add", "--template", "az", "--count", "1", "--size", "Small"]);
    assert_eq!(c.node_states("az")[0].0, "AzureCN-0001");
    let err = c.th_fails(&["node", "start", "--template", "az"]);
    assert!(err.contains("provider azure is not available in this build"), "{err}");
    let checks = c.try_th(&["template", "validate", "az"]);
    let text = String::from_utf8_lossy(&checks.stdout).to_string();
    assert!(!checks.status.success() && text.contains("FAILED") && text.contains(&fingerprint), "{text}");
    assert!(text.contains("stored secrets") && text.contains("open with this head node's key"), "{text}");

    // The password and the certificate are stored only sealed, and never answered.
    let pfx_hex: String = std::fs::read(&pfx).unwrap().iter().map(|b| format!("{b:02x}")).collect();
    let answers = c.th(&["--json", "template", "list"]) + &c.th(&["--json", "template", "show", "az"]);
    let mut stored = Vec::new();
    for f in ["thunderhead.db", "thunderhead.db-wal"] {
        stored.extend(std::fs::read(c.state_dir().join(f)).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored).to_string();
    for place in [&answers, &stored, &c.server_log()] {
        assert!(!place.contains(password), "the password leaked");
        assert!(!place.contains(&pfx_hex[..64]), "the certificate leaked");
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(c.state_dir().join("secret.key")).unwrap().permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
}

#[test]
fn node_start_wait_with_json_prints_only_the_answer() {
    let c = Cluster::start();
    c.th(&["template", "create", "quiet", "--provider", "sim", "--sim-light", "--sim-deploy-time", "0ms..50ms"]);
    c.th(&["node", "add", "--template", "quiet", "--count", "3", "--size", "Small"]);
    // Waiting draws no progress on standard output when a script reads it as JSON.
    let started = c.json(&["node", "start", "--template", "quiet", "--wait"]);
    let results = started.as_array().expect("a list of results");
    assert_eq!(results.len(), 3, "{started}");
    assert!(results.iter().all(|r| r["ok"] == true), "{started}");
    let states = c.node_states("quiet");
    assert!(states.iter().all(|(_, s, _)| s == "Offline" || s == "Online"), "{states:?}");
}

#[test]
fn a_sim_set_of_light_agents_rehearses_two_hundred_nodes() {
    let c = Cluster::start();
    c.th(&[
        "template",
        "create",
        "fleet",
        "--provider",
        "sim",
        "--sim-light",
        "--sim-deploy-time",
        "0ms..50ms",
        "--quota-cores",
        "1000",
        "--deploy-rate",
        "10000",
    ]);
    c.th(&["node", "add", "--template", "fleet", "--count", "200", "--size", "Medium"]);
    c.th(&["node", "start", "--template", "fleet"]);
    c.await_nodes("fleet", "Offline");
    c.th(&["node", "online", "--template", "fleet"]);
    c.await_nodes("fleet", "Online");
    let id = c.submit(&["--sweep", "1-20000", "--", "true"]);
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    assert_eq!(counts(&c.job(id)), (0, 0, 20000, 0, 0));
    let nodes_used: std::collections::BTreeSet<String> = c
        .json(&["task", "list", &id.to_string()])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["node"].as_str().unwrap().to_string())
        .collect();
    assert!(nodes_used.len() >= 190, "the sweep spread over the fleet: {} nodes", nodes_used.len());
    // No node process was started: light agents live in the head node.
    assert!(!c.state_dir().join("nodes/SimCN-0001").exists());
    c.th(&["node", "stop", "--template", "fleet"]);
    c.await_nodes("fleet", "NotDeployed");
}

/// A tar.gz holding one entry whose name is written raw, so hostile names can be made.
fn hostile_tar_gz(path: &std::path::Path, entry: &str) {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import io, sys, tarfile\nt = tarfile.open(sys.argv[1], 'w:gz')\ni = tarfile.TarInfo(sys.argv[2])\ni.size = 4\nt.addfile(i, io.BytesIO(b'evil'))\nt.close()",
            path.to_str().unwrap(),
            entry,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn packages_are_installed_when_nodes_deploy_and_on_request() {
    let c = Cluster::start();
    let tools = c.dir.path().join("tools");
    std::fs::create_dir_all(tools.join("bin")).unwrap();
    let square = tools.join("bin/square");
    std::fs::write(&square, "#!/bin/sh\necho \"v1 $(( $1 * $1 ))\"\n").unwrap();
    std::fs::set_permissions(&square, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let up = c.json(&["package", "upload", tools.to_str().unwrap()]);
    assert_eq!((up["name"].as_str(), up["version"].as_u64()), (Some("tools"), Some(1)));

    c.burst("pk", 2, "Small");
    let nodes = c.json(&["node", "list", "--template", "pk"]);
    assert!(nodes.as_array().unwrap().iter().all(|n| n["packages"] == serde_json::json!(["tools@1"])), "{nodes}");
    let log = c.th(&["node", "log", "LocalCN-0001"]);
    let installed = log.find("installed packages tools@1").expect("installed");
    let offline = log.find("Provisioning -> Offline").expect("offline");
    assert!(installed < offline, "the package is in before the node is Offline:\n{log}");

    let id = c.submit(&["--sweep", "1-6", "--", "sh", "-c", "$CCP_PACKAGE_ROOT/tools/bin/square *"]);
    assert!(c.try_th(&["job", "wait", &id.to_string()]).status.success());
    assert_eq!(c.th(&["task", "output", &format!("{id}.6")]), "v1 36\n");

    // A new version, installed on the running nodes without restarting them.
    std::fs::write(&square, "#!/bin/sh\necho \"v2 $(( $1 * $1 ))\"\n").unwrap();
    c.th(&["package", "upload", tools.to_str().unwrap()]);
    c.th(&["package", "install", "--template", "pk"]);
    eventually(20, "every node to install version 2", || {
        let nodes = c.json(&["node", "list", "--template", "pk"]);
        nodes.as_array().unwrap().iter().all(|n| n["packages"] == serde_json::json!(["tools@2"])).then_some(())
    });
    let id = c.submit(&["--sweep", "7-7", "--", "sh", "-c", "$THUNDERHEAD_PACKAGE_ROOT/tools/bin/square *"]);
    assert!(c.try_th(&["job", "wait", &id.to_string()]).status.success());
    assert_eq!(c.th(&["task", "output", &format!("{id}.7")]), "v2 49\n");

    let versions = c.json(&["package", "view", "tools"]);
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let got = c.dir.path().join("got.tar.gz");
    c.th(&["package", "download", "tools", "--version", "1", "--to", got.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&got).unwrap().len(), versions[1]["size"].as_u64().unwrap());

    // A hostile archive is refused by the node that installs it, naming the entry.
    let evil = c.dir.path().join("evil.tar.gz");
    hostile_tar_gz(&evil, "../../escape.txt");
    c.th(&["template", "create", "hostile", "--provider", "local"]);
    c.th(&["package", "upload", evil.to_str().unwrap(), "--template", "hostile"]);
    c.th(&["node", "add", "--template", "hostile", "--count", "1", "--size", "Small"]);
    c.th(&["node", "start", "--template", "hostile"]);
    c.await_nodes("hostile", "Unknown");
    let log = c.th(&["node", "log", "LocalCN-0003"]);
    assert!(
        log.contains("package evil@1 failed to install") && log.contains("\"../../escape.txt\" climbs out"),
        "{log}"
    );
    assert!(!c.state_dir().join("escape.txt").exists() && !c.state_dir().join("nodes/escape.txt").exists());

    c.th(&["package", "remove", "tools", "--version", "1"]);
    assert_eq!(c.json(&["package", "view", "tools"]).as_array().unwrap().len(), 1);
    c.th(&["node", "stop", "--template", "pk"]);
    c.th(&["node", "stop", "--template", "hostile"]);
}

#[test]
fn a_sweep_runs_a_packaged_program_on_staged_inputs_and_its_outputs_land_in_the_stores() {
    // Jobs may name the S3 store (moto_server) because the head node was told so.
    let s3 = std::env::var("THUNDERHEAD_TEST_S3").expect("THUNDERHEAD_TEST_S3: run the tests with scripts/test.sh");
    let (bucket, query) = s3.split_once('?').unwrap();
    // A store the administrator named whose bucket does not exist: uploads to it fail.
    let no_such = format!("s3://no-such-bucket-{}?{query}", std::process::id());
    let c = Cluster::start_with(&["--job-blob-store", &s3, "--job-blob-store", &no_such]);
    // The template keeps its packages in Azure Blob Storage (Azurite).
    let azure =
        std::env::var("THUNDERHEAD_TEST_AZURE").expect("THUNDERHEAD_TEST_AZURE: run the tests with scripts/test.sh");
    let (container, azure_query) = azure.split_once('?').unwrap();
    let package_store = format!("{container}/e2e-{}?{azure_query}", std::process::id());
    c.th(&["template", "create", "staged", "--provider", "local", "--blob-store", &package_store]);
    let calc = c.dir.path().join("calc");
    std::fs::create_dir_all(calc.join("bin")).unwrap();
    std::fs::write(calc.join("bin/plus1"), "#!/bin/sh\necho $(( $(cat \"$1\") + 1 ))\n").unwrap();
    std::fs::set_permissions(calc.join("bin/plus1"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    c.th(&["package", "upload", calc.to_str().unwrap(), "--template", "staged"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let in_azure = thunderhead_blob::BlobStore::open(&package_store).unwrap();
    let listed = rt.block_on(in_azure.list("packages/calc")).unwrap();
    assert_eq!(listed.len(), 1, "the package went to the template's store: {listed:?}");
    c.th(&["node", "add", "--template", "staged", "--count", "1", "--size", "Medium"]);
    c.th(&["node", "start", "--template", "staged"]);
    c.await_nodes("staged", "Offline");
    c.th(&["node", "online", "--template", "staged"]);
    let data = c.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 1..=5 {
        std::fs::write(data.join(format!("n{i}.txt")), format!("{}\n", i * 10)).unwrap();
    }
    // Outputs to the job's area, and a copy to S3 (moto_server) under a prefix of our own.
    let run = format!("e2e-{}", std::process::id());
    let s3_prefix = format!("{bucket}/{run}/r*/?{query}");
    let input = format!("{}/n*.txt:in.txt", data.display());
    let id = c.submit(&[
        "--sweep",
        "1-5",
        "--input",
        &input,
        "--output",
        "result*.txt",
        "--output",
        &format!("result*.txt:{s3_prefix}"),
        "--",
        "sh",
        "-c",
        "$THUNDERHEAD_PACKAGE_ROOT/calc/bin/plus1 in.txt > result$THUNDERHEAD_SWEEP_INDEX.txt",
    ]);
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    // The local inputs were uploaded into the job's area of the head node's store.
    assert!(c.state_dir().join(format!("blobs/jobs/{id}/inputs/n3.txt")).exists());
    let out = c.dir.path().join("out");
    c.th(&["job", "output", &id.to_string(), "--to", out.to_str().unwrap()]);
    assert!(!out.join("inputs").exists(), "job output gives the tasks' outputs only");
    for i in 1..=5 {
        let got = std::fs::read_to_string(out.join(i.to_string()).join(format!("result{i}.txt"))).unwrap();
        assert_eq!(got, format!("{}\n", i * 10 + 1));
    }
    let store = thunderhead_blob::BlobStore::open(&format!("{bucket}/{run}?{query}")).unwrap();
    let in_s3 = rt.block_on(store.get_bytes("r3/result3.txt")).unwrap();
    assert_eq!(&in_s3[..], b"31\n");

    // An input that cannot be fetched fails the task before it runs, with the reason.
    let missing = format!("{bucket}/{run}/missing-*.txt?{query}:in.txt");
    let id = c.submit(&["--sweep", "1-1", "--input", &missing, "--", "touch", "ran"]);
    assert!(!c.try_th(&["job", "wait", &id.to_string()]).status.success());
    let task = &c.json(&["task", "list", &id.to_string()])[0];
    assert_eq!(task["state"], "Failed");
    assert!(task["message"].as_str().unwrap().contains("cannot be fetched"), "{task}");
    assert_eq!(task["exit_code"], Value::Null, "it never ran");

    // An output to the package area is refused when the job is submitted, not when it has run.
    let err = c.th_fails(&["job", "submit", "--sweep", "1-1", "--output", "x*:thunderhead:packages/", "--", "true"]);
    assert!(err.contains("package area"), "{err}");
    // An output that cannot be uploaded fails the task, keeping its exit code.
    let (no_bucket, _) = no_such.split_once('?').unwrap();
    let prefix = format!("{no_bucket}/out/?{query}");
    let id = c.submit(&["--sweep", "1-1", "--output", &format!("x*:{prefix}"), "--", "sh", "-c", "echo > x1"]);
    assert!(!c.try_th(&["job", "wait", &id.to_string()]).status.success());
    let task = &c.json(&["task", "list", &id.to_string()])[0];
    assert_eq!((task["state"].as_str(), task["exit_code"].as_i64()), (Some("Failed"), Some(0)));
    assert!(task["message"].as_str().unwrap().contains("cannot be uploaded"), "{task}");
    // A bucket the administrator did not name is refused at submission, whatever endpoint it names.
    let err = c.th_fails(&["job", "submit", "--output", &format!("x:s3://elsewhere/x/?{query}"), "--", "true"]);
    assert!(err.contains("not in a blob store an administrator configured"), "{err}");

    let err = c.th_fails(&["job", "submit", "--input", "/nonexistent/n*.txt", "--", "true"]);
    assert!(err.contains("matches no file") || err.contains("cannot read the directory"), "{err}");
    let err = c.th_fails(&["job", "submit", "--output", "../escape:thunderhead:x/", "--", "true"]);
    assert!(err.contains("relative path"), "{err}");
}

#[test]
fn the_benchmark_command_reports_its_measurements() {
    let out = std::process::Command::new(common::BIN)
        .args(["--json", "bench", "dispatch", "--repeat", "1", "--tasks", "40"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &report[0];
    assert_eq!((d["benchmark"].as_str(), d["tasks"].as_u64()), (Some("dispatch"), Some(40)));
    assert!(d["ratio_to_xargs"].as_f64().unwrap() > 0.0 && d["xargs_seconds"].as_f64().unwrap() > 0.0, "{d}");
}

#[test]
fn the_scale_benchmarks_run_light_agents_and_restart_a_head_node_mid_sweep() {
    let run = |which: &str| {
        let out = std::process::Command::new(common::BIN)
            .args(["--json", "bench", which, "--repeat", "1", "--agents", "30", "--idle-seconds", "1"])
            .args(["--indices", "3000"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{which}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
    };
    let many = run("many-nodes");
    assert_eq!((many["agents"].as_u64(), many["tasks"].as_u64()), (Some(30), Some(3000)), "{many}");
    assert!(many["decisions_per_second"].as_f64().unwrap() > 0.0, "{many}");
    assert!(many["heartbeating_memory_mib"].as_f64().unwrap() > 1.0, "{many}");
    let restart = run("restart");
    let finished = restart["state"]["finished"].as_u64().unwrap();
    assert!(finished >= 1500, "half the sweep was done before the kill and is still done after: {restart}");
    assert!(restart["seconds_to_first_answer"].as_f64().unwrap() > 0.0, "{restart}");
    assert_eq!(pgrep("light-agents"), 0, "the benchmark ends the agents it started");
}
