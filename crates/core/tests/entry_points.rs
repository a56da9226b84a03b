//! Property test of every entry point of the core that takes input from outside: API requests
//! (of any role), agent messages and provider answers, in any order, with any values — extremes
//! included. Whatever arrives, no handler panics (this runs in a debug build, where arithmetic
//! overflow panics too) and the cluster's invariants hold after every batch.

use proptest::prelude::*;
use serde_json::{Value, json};
use thunderhead_core::cluster::packages::Installed;
use thunderhead_core::cluster::{Cluster, Command, Config, DeployFailure, Effects, Hello, TaskAttempt, TaskResult};
use thunderhead_core::job::{JobSubmission, TaskDef};
use thunderhead_core::provider_rules::{Derived, ProviderRules};
use thunderhead_core::template::NewTemplate;
use thunderhead_core::view::{AddNodes, NodeAction, NodeActionRequest};
use thunderhead_core::{Error, Result, TaskKey};

const NODES: [&str; 5] = ["LocalCN-0001", "LocalCN-0002", "SimCN-0001", "onprem", "bad\nname"];

#[derive(Debug, Clone)]
enum Event {
    Submit(JobSubmission),
    Template(Value),
    AddNodes(AddNodes),
    Action(NodeActionRequest),
    Hello {
        session: u64,
        node: usize,
        cores: u32,
        running: Vec<(u64, u64, u32)>,
    },
    /// Results for the n-th assigned task seen so far (or made up), with any times and codes.
    Results {
        session: u64,
        pick: usize,
        made_up: Option<(u64, u64, u32)>,
        times: (u64, u64),
        exit: Option<i32>,
    },
    Installed {
        session: u64,
        version: u32,
        error: bool,
    },
    Gone(u64),
    Deployed {
        node: usize,
        ok: bool,
        transient: bool,
    },
    Removed {
        node: usize,
        ok: bool,
    },
    DeploymentGone(usize),
    Cancel(u64),
    Requeue {
        job: u64,
        ended: Vec<(u64, u32)>,
        ended_at: Option<u64>,
    },
    Tick(u64),
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..10, Just(u64::MAX), Just(u64::MAX / 2), Just(i64::MAX as u64), any::<u64>()]
}

fn small() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..5, Just(u32::MAX), Just(4096), Just(4097), any::<u32>()]
}

/// A plain sweep that runs: most hostile sequences need work in the queue to do harm.
fn plain_sweep() -> impl Strategy<Value = JobSubmission> {
    (1u64..200, proptest::option::of(1u32..4)).prop_map(|(n, cores)| JobSubmission {
        command: Some(vec!["echo".into(), "*".into()]),
        sweep: Some(format!("1-{n}")),
        cores_per_task: cores,
        owner: "alice".into(),
        ..JobSubmission::default()
    })
}

fn submission() -> impl Strategy<Value = JobSubmission> {
    let arg = prop_oneof![Just("*".repeat(70_000)), "[a-z*]{0,8}", Just("*".repeat(20)), any::<String>()];
    let sweep = prop_oneof![
        Just(None),
        (number(), number(), prop_oneof![Just(1u64), number()]).prop_map(|(a, b, s)| Some(format!("{a}-{b}:{s}"))),
        "[0-9:-]{0,12}".prop_map(Some),
    ];
    let tasks = proptest::option::of(proptest::collection::vec(
        ("[a-c]", proptest::collection::vec("[a-d]", 0..3)).prop_map(|(name, deps)| TaskDef {
            name,
            command: vec!["true".into()],
            depends_on: deps,
        }),
        1..5,
    ));
    let staging = proptest::option::of(proptest::collection::vec(
        prop_oneof![
            Just("thunderhead:jobs/1/in*.txt:in.txt".to_string()),
            Just(format!("thunderhead:x/{}", "*".repeat(40))),
            "[a-z:/*.?=]{0,30}",
        ],
        0..3,
    ));
    (
        proptest::collection::vec(arg, 0..4),
        sweep,
        proptest::option::of(small()),
        proptest::option::of(small()),
        tasks,
        staging.clone(),
        staging,
        proptest::option::of(any::<String>()),
        proptest::option::of(0u64..6),
    )
        .prop_map(|(command, sweep, cores, retries, tasks, inputs, outputs, name, reserved)| {
            let command = (tasks.is_none()).then_some(command);
            JobSubmission {
                name,
                cores_per_task: cores,
                retries,
                command,
                sweep,
                tasks,
                inputs,
                outputs,
                reserved_id: reserved,
                owner: "alice".into(),
                ..JobSubmission::default()
            }
        })
}

fn event() -> impl Strategy<Value = Event> {
    let session = 1u64..4;
    let node = 0..NODES.len();
    prop_oneof![
        3 => submission().prop_map(Event::Submit),
        3 => plain_sweep().prop_map(Event::Submit),
        1 => ("(local|sim|x)", small(), small(), proptest::option::of("[0-9a-z.]{0,6}"), any::<bool>()).prop_map(
            |(provider, quota, proxies, lead, schedule)| {
                let mut t = json!({"name": if provider == "sim" { "sims" } else { "burst" }, "provider": provider,
                                   "quota_cores": quota, "proxies": proxies % 3});
                if schedule {
                    t["availability"] = json!("schedule");
                    t["windows"] = json!(["Mon-Sun 00:00-23:59"]);
                    t["lead_time"] = json!(lead.unwrap_or_default());
                }
                Event::Template(t)
            }
        ),
        2 => ("(burst|sims|none)", small(), "(Small|Medium|ExtraLarge|Huge|)").prop_map(|(template, count, size)| {
            Event::AddNodes(AddNodes { template, count: count % 20_000, size })
        }),
        4 => (0usize..5, proptest::option::of("(burst|sims)"), proptest::collection::vec(node.clone(), 0..3), any::<bool>())
            .prop_map(|(a, template, names, force)| {
                let action = [NodeAction::Start, NodeAction::Stop, NodeAction::Online, NodeAction::Offline, NodeAction::Delete][a];
                let mut names: Vec<String> = names.into_iter().map(|n| NODES[n].to_string()).collect();
                if template.is_some() {
                    names.clear();
                } else if a == 2 {
                    names.push("onprem".into());
                }
                Event::Action(NodeActionRequest { action, template, names, force })
            }),
        3 => (session.clone(), node.clone(), small(), proptest::collection::vec((0u64..5, number(), small()), 0..3))
            .prop_map(|(session, node, cores, running)| Event::Hello { session, node, cores, running }),
        4 => (session.clone(), 0usize..64, proptest::option::of((0u64..5, number(), small())), (number(), number()), proptest::option::of(any::<i32>()))
            .prop_map(|(session, pick, made_up, times, exit)| Event::Results { session, pick, made_up, times, exit }),
        1 => (session.clone(), small(), any::<bool>()).prop_map(|(session, version, error)| Event::Installed { session, version, error }),
        1 => session.prop_map(Event::Gone),
        2 => (node.clone(), any::<bool>(), any::<bool>()).prop_map(|(node, ok, transient)| Event::Deployed { node, ok, transient }),
        1 => (node.clone(), any::<bool>()).prop_map(|(node, ok)| Event::Removed { node, ok }),
        1 => node.prop_map(Event::DeploymentGone),
        1 => (0u64..6).prop_map(Event::Cancel),
        1 => (0u64..6, proptest::collection::vec((number(), small()), 0..4), proptest::option::of(number()))
            .prop_map(|(job, ended, ended_at)| Event::Requeue { job, ended, ended_at }),
        2 => prop_oneof![0u64..5_000, 0u64..10_000_000, Just(365 * 24 * 3_600_000u64)].prop_map(Event::Tick),
    ]
}

fn handle() -> Value {
    json!({"v": 1, "pid": 1, "start_ticks": 1, "dir": "/nonexistent"})
}

/// The rules of a build with two providers, `local` and `sim`, that take any setting; other
/// providers are refused.
#[derive(Debug)]
struct TwoProviders;

impl ProviderRules for TwoProviders {
    fn check(&self, provider: &str, _: &mut serde_json::Map<String, serde_json::Value>, _: bool) -> Result<Derived> {
        match provider {
            "local" | "sim" => Ok(Derived::default()),
            other => Err(Error::invalid(format!("provider \"{other}\" is not available in this build"))),
        }
    }

    fn proxies(&self, _: &str) -> bool {
        true
    }

    fn deployable(&self, _: &str) -> bool {
        true
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn no_input_panics_the_core_and_its_invariants_hold(events in proptest::collection::vec(event(), 1..40)) {
        let mut c = Cluster::new(Config::default(), std::sync::Arc::new(TwoProviders));
        let mut now = 1_800_000_000_000u64;
        let mut assigned: Vec<TaskAttempt> = vec![];
        for event in events {
            let mut fx = Effects::default();
            match event {
                Event::Submit(s) => { let _ = c.submit(&mut fx, s, now); }
                Event::Template(t) => {
                    if let Ok(t) = serde_json::from_value::<NewTemplate>(t) {
                        let _ = c.create_template(&mut fx, t, now);
                    }
                }
                Event::AddNodes(a) => { let _ = c.add_nodes(&mut fx, a, now); }
                Event::Action(a) => { let _ = c.node_action(&mut fx, a, now); }
                Event::Hello { session, node, cores, running } => {
                    let running = running
                        .into_iter()
                        .map(|(job, index, attempt)| TaskAttempt { key: TaskKey { job, index }, attempt })
                        .collect();
                    let hello = Hello { name: NODES[node].into(), cores, running, completed: vec![], leaves_at: None };
                    let _ = c.agent_hello(&mut fx, session, hello, now);
                }
                Event::Results { session, pick, made_up, times, exit } => {
                    let attempt = match made_up {
                        Some((job, index, attempt)) => TaskAttempt { key: TaskKey { job, index }, attempt },
                        None if !assigned.is_empty() => assigned[pick % assigned.len()],
                        None => continue,
                    };
                    let result = TaskResult {
                        key: attempt.key,
                        attempt: attempt.attempt,
                        exit_code: exit,
                        message: None,
                        started_at: times.0,
                        ended_at: times.1,
                        stdout: "\u{1b}[2J\n".into(),
                        stderr: String::new(),
                        staging_error: None,
                    };
                    c.agent_results(&mut fx, session, vec![result.clone(), result], now);
                }
                Event::Installed { session, version, error } => {
                    let installed = Installed { name: "tools".into(), version, error: error.then(|| "broken".into()) };
                    c.agent_installed(&mut fx, session, vec![installed], now);
                }
                Event::Gone(session) => c.agent_gone(&mut fx, session, now),
                Event::Deployed { node, ok, transient } => {
                    let result = if ok { Ok(handle()) } else { Err(DeployFailure { message: "no capacity".into(), transient }) };
                    c.deployed(&mut fx, NODES[node], result, now);
                }
                Event::Removed { node, ok } => {
                    let result = if ok { Ok(()) } else { Err("cannot remove".to_string()) };
                    c.removed(&mut fx, NODES[node], &handle(), result, now);
                }
                Event::DeploymentGone(node) => c.deployment_gone(&mut fx, NODES[node], &handle(), "gone", now),
                Event::Cancel(job) => { let _ = c.cancel_job(&mut fx, job, now); }
                Event::Requeue { job, ended, ended_at } => { let _ = c.requeue_job(&mut fx, job, ended_at, &ended); }
                Event::Tick(ms) => {
                    now = now.saturating_add(ms);
                    c.tick(&mut fx, now);
                }
            }
            c.end_batch(&mut fx, now);
            for command in &fx.commands {
                if let Command::Assign { tasks, .. } = command {
                    assigned.extend(tasks.iter().map(|d| TaskAttempt { key: d.key, attempt: d.attempt }));
                }
            }
            if let Err(broken) = c.check_invariants() {
                prop_assert!(false, "an invariant broke: {}", broken);
            }
            // Every view of the state can be made, whatever happened.
            let _ = (c.jobs(), c.templates(), c.nodes(None));
        }
    }
}
