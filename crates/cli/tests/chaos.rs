//! Chaos: a sweep runs on local nodes while their agents, their proxies and the head node are
//! killed with SIGKILL at random moments, and a sim set is stopped and started again with a
//! third of its deployments failing, all under a seed, until the sweep is done. At the end every index is `Finished`
//! exactly once with the output of its last attempt, nothing is left `Running`, no node is stuck
//! in a transitional state and the database passes its integrity check.
//!
//! Longer: `THUNDERHEAD_CHAOS_INDICES=100000 THUNDERHEAD_CHAOS_SEED=3 THUNDERHEAD_CHAOS_SECONDS=300
//! cargo test --release -p thunderhead --test chaos -- --nocapture`

mod common;

use common::{Cluster, eventually};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use thunderhead_store::Store;

/// A small seeded generator (xorshift64*), so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn kill_pid_file(path: &std::path::Path) -> bool {
    let Some(pid) = std::fs::read_to_string(path).ok().and_then(|p| p.trim().parse::<i32>().ok()) else {
        return false;
    };
    killpg(Pid::from_raw(pid), Signal::SIGKILL).is_ok()
}

const TRANSITIONAL: [&str; 3] = ["Provisioning", "Draining", "Stopping"];

/// Brings back what the faults took: failed nodes are started again, started ones put online.
/// Local nodes run the sweep; the sim set only deploys and fails, and takes no work. Commands
/// may fail while the head node is down; they are tried again next time.
fn recover(c: &Cluster) {
    let out = c.try_th(&["--json", "node", "list"]);
    let Ok(serde_json::Value::Array(nodes)) = serde_json::from_slice(&out.stdout) else { return };
    for n in nodes {
        let (Some(name), Some(state)) = (n["name"].as_str(), n["state"].as_str()) else { continue };
        match state {
            "Unknown" | "NotDeployed" => drop(c.try_th(&["node", "start", name])),
            "Offline" if name.starts_with("LocalCN") => drop(c.try_th(&["node", "online", name])),
            _ => {}
        }
    }
}

#[test]
fn a_sweep_survives_killed_agents_proxies_and_head_nodes_and_failing_deployments() {
    let indices = env_or("THUNDERHEAD_CHAOS_INDICES", 10_000);
    let seed = env_or("THUNDERHEAD_CHAOS_SEED", 7);
    let limit = Duration::from_secs(env_or("THUNDERHEAD_CHAOS_SECONDS", 240));
    let mut rng = Rng(seed.max(1));
    let mut c = Cluster::start_with(&["--reconnect-grace", "3", "--provision-timeout", "10"]);
    c.burst("chaos", 3, "Small");
    let seed_text = seed.to_string();
    c.th(&["template", "create", "faulty", "--provider", "sim", "--sim-light", "--sim-deploy-time", "50ms..300ms"]
        .into_iter()
        .chain(["--sim-failure-rate", "0.3", "--sim-seed", &seed_text])
        .collect::<Vec<_>>());
    c.th(&["node", "add", "--template", "faulty", "--count", "3", "--size", "Small"]);
    c.th(&["node", "start", "--template", "faulty"]);
    let id = c.submit(&["--sweep", &format!("1-{indices}"), "--retries", "1000", "--", "sh", "-c", "echo out-*"]);

    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let start = Instant::now();
    // Faults until the sweep is done.
    let running = |c: &Cluster| {
        let out = c.try_th(&["--json", "job", "view", &id.to_string()]);
        // While the head node is down the answer is unknown: keep going.
        serde_json::from_slice::<serde_json::Value>(&out.stdout).map_or(true, |job| job["state"] != "Finished")
    };
    while running(&c) {
        assert!(start.elapsed() < limit, "the sweep did not finish within {} s of chaos", limit.as_secs());
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
        recover(&c);
        let nodes = c.state_dir().join("nodes");
        match rng.below(4) {
            0 => {
                let name = format!("LocalCN-000{}", 1 + rng.below(3));
                if kill_pid_file(&nodes.join(&name).join("agent.pid")) {
                    *faults.entry("agent killed").or_default() += 1;
                }
            }
            1 => {
                let proxies: Vec<_> = std::fs::read_dir(&nodes)
                    .map(|d| d.flatten().map(|e| e.path().join("proxy.pid")).filter(|p| p.exists()).collect())
                    .unwrap_or_default();
                if !proxies.is_empty() && kill_pid_file(&proxies[rng.below(proxies.len() as u64) as usize]) {
                    *faults.entry("proxy killed").or_default() += 1;
                }
            }
            2 => {
                c.kill_server();
                std::thread::sleep(Duration::from_millis(rng.below(1_000)));
                c.start_server();
                *faults.entry("head node killed").or_default() += 1;
            }
            _ => {
                // Failures are injected at the provider: about a third of these deployments fail.
                if c.try_th(&["node", "stop", "--template", "faulty"]).status.success() {
                    *faults.entry("sim set restarted").or_default() += 1;
                }
            }
        }
    }
    eprintln!("faults injected under seed {seed}: {faults:?}");

    // The faults stop; the cluster recovers and the sweep finishes.
    let job = eventually(60, "the sweep to be finished", || {
        recover(&c);
        let job = c.job(id);
        (job["state"] == "Finished").then_some(job)
    });
    assert_eq!(job["tasks"]["Finished"].as_u64(), Some(indices), "{job}");
    let tasks = c.json(&["task", "list", &id.to_string()]);
    let tasks = tasks.as_array().unwrap();
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for t in tasks {
        assert_eq!((t["state"].as_str(), t["exit_code"].as_i64()), (Some("Finished"), Some(0)), "{t}");
        *seen.entry(t["index"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len() as u64, indices, "every index is in the record");
    assert!(seen.values().all(|n| *n == 1), "every index is in the record once");
    for _ in 0..20 {
        let t = &tasks[rng.below(tasks.len() as u64) as usize];
        let index = t["index"].as_u64().unwrap();
        let out = c.th(&["task", "output", &format!("{id}.{index}")]);
        assert_eq!(out, format!("out-{index}\n"), "the output of {id}.{index}'s last attempt on {}", t["node"]);
    }
    eventually(60, "no node in a transitional state", || {
        recover(&c);
        let nodes = c.json(&["node", "list"]);
        nodes.as_array().unwrap().iter().all(|n| !TRANSITIONAL.contains(&n["state"].as_str().unwrap())).then_some(())
    });
    let failed_deploys: usize = (1..=3)
        .map(|i| c.th(&["node", "log", &format!("SimCN-000{i}")]).lines().filter(|l| l.contains("(sim)")).count())
        .sum();
    eprintln!(
        "survived: {faults:?} and {failed_deploys} sim deployment failures logged; {indices} indices finished once"
    );
    c.kill_server();
    let store = thunderhead_store::sqlite::SqliteStore::open(&c.state_dir().join("thunderhead.db")).unwrap();
    store.integrity_check().expect("the database passes its integrity check");
    assert!(faults.values().sum::<u32>() >= 5, "the run injected faults: {faults:?}");
}
