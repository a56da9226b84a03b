//! The `slurm` provider end to end, against the real single-host Slurm cluster that
//! `scripts/peers/slurm.sh` starts (Debian's slurm-wlm and munge, every port on 127.0.0.1): each
//! node is an allocation running a real agent that joins the head node and runs real tasks.

mod common;

use common::{Cluster, eventually};
use serde_json::Value;

/// The command prefix that reaches the test cluster.
fn prefix() -> String {
    std::env::var("THUNDERHEAD_TEST_SLURM").expect("THUNDERHEAD_TEST_SLURM: run the tests with scripts/test.sh")
}

/// Runs a Slurm command on the test cluster, as the provider would.
fn slurm(command: &str) -> String {
    let words: Vec<String> = prefix().split_whitespace().map(String::from).collect();
    let out = std::process::Command::new(&words[0]).args(&words[1..]).args(["sh", "-c", command]).output().unwrap();
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `template create NAME --provider slurm` on the test cluster, with node directories in the
/// test's own directory.
fn create(c: &Cluster, name: &str, extra: &[&str]) {
    let work = c.dir.path().join("slurm-work");
    let settings =
        [format!("command_prefix={}", prefix()), format!("work_dir={}", work.display()), "time_limit=10m".to_string()];
    let mut args = vec!["template", "create", name, "--provider", "slurm"];
    for s in &settings {
        args.extend(["--set", s.as_str()]);
    }
    args.extend_from_slice(extra);
    c.th(&args);
}

/// The Slurm jobs of the test cluster by name, with their states.
fn jobs() -> Vec<(String, String, String)> {
    slurm("squeue --me -h -o '%i %j %T'")
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// Cancels, when the test ends however it ends, every job of this test's nodes.
struct CancelAtEnd(Vec<String>);

impl Drop for CancelAtEnd {
    fn drop(&mut self) {
        for (id, name, _) in jobs() {
            if self.0.iter().any(|prefix| name.starts_with(prefix)) {
                let _ = std::process::Command::new("sh").args(["-c", &format!("{} scancel {id}", prefix())]).status();
            }
        }
    }
}

#[test]
fn a_sweep_runs_in_allocations_a_cancelled_one_is_noticed_and_leftovers_are_removed() {
    let _cancel = CancelAtEnd(vec!["Hpc-".into(), "Stray-".into()]);
    // A secret in the head node's environment must not travel with its sbatch calls.
    let mut c = Cluster::start_with_env(&[], &[("HEAD_SECRET", "hunter2-for-the-head-node-only")]);
    create(&c, "hpc", &["--series-prefix", "Hpc-", "--set", "partition=main"]);
    let shown = c.json(&["template", "show", "hpc"]);
    assert_eq!(shown["proxies"], 0, "{shown}");
    let checks = c.json(&["template", "validate", "hpc"]);
    assert!(checks.as_array().unwrap().iter().all(|c| c["ok"] == true), "{checks}");
    c.th(&["node", "add", "--template", "hpc", "--count", "3", "--size", "Medium"]);
    c.th(&["node", "start", "--template", "hpc", "--wait"]);
    c.th(&["node", "online", "--template", "hpc"]);
    c.await_nodes("hpc", "Online");
    let running: Vec<_> = jobs().into_iter().filter(|(_, n, s)| n.starts_with("Hpc-") && s == "RUNNING").collect();
    assert_eq!(running.len(), 3, "one allocation a node: {running:?}");

    // The join grant and the head node's environment are in no record Slurm keeps of the jobs,
    // and the grant is no longer on disk.
    let mut records = slurm("scontrol show job -dd") + &slurm("squeue --json");
    let conf = std::path::PathBuf::from(std::env::var("SLURM_CONF").expect("SLURM_CONF"));
    for entry in walk(&conf.parent().unwrap().join("state")) {
        records.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap_or_default()));
    }
    assert!(!records.contains("thj1_"), "a join token reached Slurm's records");
    assert!(!records.contains("hunter2-for-the-head-node-only"), "the head node's environment reached Slurm's records");
    let grants: Vec<_> = walk(&c.dir.path().join("slurm-work")).into_iter().filter(|p| p.ends_with("join")).collect();
    assert!(grants.is_empty(), "grant files left: {grants:?}");

    // A restarted head node finds its allocations through their handles; the agents come back.
    c.kill_server();
    c.start_server();
    c.await_nodes("hpc", "Online");

    let id = c.submit(&["--sweep", "1-30", "--", "sh", "-c", "echo index *; sleep 0.2"]);
    assert!(c.try_th(&["job", "wait", &id.to_string()]).status.success());
    let out = c.th(&["task", "output", &format!("{id}.7")]);
    assert!(out.contains("index 7"), "{out}");

    // Someone cancels an allocation from outside while a sweep runs: the node is lost and its
    // tasks run elsewhere.
    let id = c.submit(&["--sweep", "1-24", "--", "sleep", "1"]);
    let victim = eventually(30, "a task to run", || {
        let tasks = c.json(&["task", "list", &id.to_string()]);
        tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["state"] == "Running")
            .map(|t| t["node"].as_str().unwrap().to_string())
    });
    let job = jobs().into_iter().find(|(_, n, _)| *n == victim).expect("its allocation").0;
    slurm(&format!("scancel {job}"));
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    assert_eq!(c.job(id)["tasks"]["Finished"], 24);
    let states = c.node_states("hpc");
    assert!(states.iter().any(|(n, s, _)| *n == victim && s == "Unknown"), "{states:?}");
    let log = c.th(&["node", "log", &victim]);
    assert!(log.contains("Slurm allocation ended"), "{log}");

    // An allocation named for the set that no node owns: listed, then cancelled.
    let comment = format!("thunderhead:{}:hpc", jobs_comment_tag(&c));
    slurm(&format!("sbatch --parsable --job-name=Stray-1 --comment={comment} --wrap='sleep 300' -o /dev/null"));
    let out = c.try_th(&["--json", "template", "validate", "hpc"]);
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let leftovers = checks.as_array().unwrap().iter().find(|c| c["name"] == "leftovers").unwrap().clone();
    assert!(leftovers["ok"] == false && leftovers["detail"].as_str().unwrap().contains("Stray-1"), "{checks}");
    let removed = c.json(&["node", "stop", "--template", "hpc", "--orphans"]);
    assert_eq!(removed.as_array().unwrap().len(), 1, "{removed}");
    eventually(30, "the stray allocation to end", || {
        jobs().iter().all(|(_, n, s)| n != "Stray-1" || s != "RUNNING" && s != "PENDING").then_some(())
    });

    c.th(&["node", "stop", "--template", "hpc"]);
    c.await_nodes("hpc", "NotDeployed");
    eventually(30, "the allocations to end", || {
        jobs().iter().all(|(_, n, s)| !n.starts_with("Hpc-") || s != "RUNNING").then_some(())
    });
}

/// Every file under `root`.
fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files
}

/// The tag that tells this head node's jobs and directories from another's: the name of the one
/// directory it made in the template's work directory.
fn jobs_comment_tag(c: &Cluster) -> String {
    let work = c.dir.path().join("slurm-work");
    let dirs: Vec<String> =
        std::fs::read_dir(&work).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn an_allocation_that_cannot_start_hits_the_boot_timeout_with_slurm_s_reason() {
    let _cancel = CancelAtEnd(vec!["Tiny-".into()]);
    let c = Cluster::start();
    let partition = std::env::var("THUNDERHEAD_TEST_SLURM_SMALL_PARTITION").unwrap_or_else(|_| "tiny".into());
    let partition = format!("partition={partition}");
    create(
        &c,
        "tiny",
        &["--series-prefix", "Tiny-", "--set", &partition, "--boot-timeout", "8s", "--deploy-retries", "0"],
    );
    // A Medium node asks for 2 CPUs; the partition's only node has 1.
    c.th(&["node", "add", "--template", "tiny", "--count", "1", "--size", "Medium"]);
    c.th(&["node", "start", "--template", "tiny"]);
    let node =
        c.json(&["node", "list", "--template", "tiny"]).as_array().unwrap()[0]["name"].as_str().unwrap().to_string();
    eventually(60, "the node to time out", || (c.node_states("tiny")[0].1 == "Unknown").then_some(()));
    let log = c.th(&["node", "log", &node]);
    assert!(log.contains("the provider says the deployment waits: Slurm job"), "{log}");
    let cause = c.json(&["node", "list", "--template", "tiny"]).as_array().unwrap()[0]["cause"].clone();
    assert!(
        cause.as_str().unwrap().contains("did not connect within 8 s")
            && cause.as_str().unwrap().contains("PartitionConfig"),
        "{cause}"
    );
    eventually(30, "the pending allocation to be cancelled", || {
        jobs().iter().all(|(_, n, s)| *n != node || s != "PENDING").then_some(())
    });
}

#[test]
fn a_time_limit_reached_mid_sweep_drains_the_node_first_and_loses_no_task() {
    let _cancel = CancelAtEnd(vec!["Short-".into()]);
    let c = Cluster::start();
    // One-minute allocations that stop taking tasks after 20 s; a local node goes on.
    create(
        &c,
        "short",
        &[
            "--series-prefix",
            "Short-",
            "--set",
            "partition=main",
            "--set",
            "time_limit=1m",
            "--set",
            "drain_margin=40s",
        ],
    );
    c.th(&["node", "add", "--template", "short", "--count", "2", "--size", "Small"]);
    c.th(&["node", "start", "--template", "short", "--wait"]);
    c.th(&["node", "online", "--template", "short"]);
    c.await_nodes("short", "Online");
    c.burst("steady", 1, "Small");
    let id = c.submit(&["--sweep", "1-30", "--", "sleep", "3"]);
    let wait = c.try_th(&["job", "wait", &id.to_string()]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    let job = c.job(id);
    assert_eq!((job["tasks"]["Finished"].as_u64(), job["tasks"]["Failed"].as_u64()), (Some(30), Some(0)), "{job}");
    for (name, _, _) in c.node_states("short") {
        let log = c.th(&["node", "log", &name]);
        assert!(log.contains("taken back at") && log.contains("draining"), "{name}:\n{log}");
    }
    let tasks = c.json(&["task", "list", &id.to_string()]);
    let on_slurm =
        tasks.as_array().unwrap().iter().filter(|t| t["node"].as_str().unwrap().starts_with("Short-")).count();
    assert!(on_slurm > 0, "the allocations ran some of the sweep: {tasks}");
}
