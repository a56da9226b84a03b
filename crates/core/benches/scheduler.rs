//! The scheduler core on a large snapshot: 10,000 nodes and 1,000,000 queued tasks.
//!
//! `plan` is the pure placement function alone; `cluster` is a whole scheduling round of the
//! head node's model (placements, task records to commit, and the assignments for each agent).
//! Each is measured on the first round, where every node is empty, and on a steady round,
//! where a task has ended on 1% of the nodes. Throughput is in assignments.
//!
//! cargo bench -p thunderhead-core --bench scheduler

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use thunderhead_core::cluster::{Cluster, Command, Config, Dispatch, Effects, Hello, TaskResult};
use thunderhead_core::job::{JobSubmission, Priority};
use thunderhead_core::scheduler::{JobDemand, NodeSlots, plan};
use thunderhead_core::view::{NodeAction, NodeActionRequest};

const NODES: usize = 10_000;
const CORES: u32 = 4;
const TASKS: u64 = 1_000_000;
/// The queued tasks are split over this many jobs of different priorities.
const JOBS: u64 = 10;

fn demand() -> Vec<JobDemand> {
    let priorities = [Priority::Normal, Priority::AboveNormal, Priority::BelowNormal, Priority::Highest];
    (0..JOBS)
        .map(|j| JobDemand {
            job: j + 1,
            priority: priorities[j as usize % priorities.len()],
            cores_per_task: 1 + (j % 2) as u32,
            pending: TASKS / JOBS,
        })
        .collect()
}

fn bench_plan(c: &mut Criterion) {
    let jobs = demand();
    let empty: Vec<NodeSlots> = (0..NODES).map(|_| NodeSlots { free_cores: CORES * 2, cores: CORES }).collect();
    let placed: u64 = plan(&jobs, &empty).iter().map(|p| p.count as u64).sum();
    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(placed));
    group.bench_function("first round: 10,000 empty nodes, 1,000,000 queued", |b| {
        b.iter(|| plan(black_box(&jobs), black_box(&empty)))
    });
    let steady: Vec<NodeSlots> =
        (0..NODES).map(|i| NodeSlots { free_cores: u32::from(i % 100 == 0), cores: CORES }).collect();
    let placed: u64 = plan(&jobs, &steady).iter().map(|p| p.count as u64).sum();
    group.throughput(Throughput::Elements(placed));
    group.bench_function("steady round: one free core on 1% of 10,000 nodes", |b| {
        b.iter(|| plan(black_box(&jobs), black_box(&steady)))
    });
    group.finish();
}

/// A head node's model with 10,000 connected, online nodes and the queued jobs, not yet
/// scheduled.
fn loaded_cluster() -> (Cluster, Effects) {
    let mut cluster = Cluster::new(
        Config { queue_ahead: 1, ..Config::default() },
        std::sync::Arc::new(thunderhead_core::provider_rules::TakeAsGiven),
    );
    let mut fx = Effects::default();
    let now = 1_000;
    let names: Vec<String> = (0..NODES).map(|i| format!("node-{i:05}")).collect();
    for (session, name) in names.iter().enumerate() {
        let hello = Hello { name: name.clone(), cores: CORES, running: vec![], completed: vec![], leaves_at: None };
        cluster.agent_hello(&mut fx, session as u64 + 1, hello, now).expect("an unknown agent joins");
    }
    let online = NodeActionRequest { action: NodeAction::Online, template: None, names, force: false };
    cluster.node_action(&mut fx, online, now).expect("nodes go online");
    for j in demand() {
        let submission = JobSubmission {
            command: Some(vec!["true".into(), "*".into()]),
            sweep: Some(format!("1-{}", j.pending)),
            priority: Some(format!("{:?}", j.priority)),
            cores_per_task: Some(j.cores_per_task),
            ..Default::default()
        };
        cluster.submit(&mut fx, submission, now).expect("the sweep is accepted");
    }
    (cluster, Effects::default())
}

fn assigned(fx: &Effects) -> Vec<(u64, &Dispatch)> {
    fx.commands
        .iter()
        .flat_map(|c| match c {
            Command::Assign { session, tasks } => tasks.iter().map(|t| (*session, t)).collect(),
            _ => vec![],
        })
        .collect()
}

fn bench_cluster(c: &mut Criterion) {
    let (mut first, mut fx) = loaded_cluster();
    first.end_batch(&mut fx, 2_000);
    let mut group = c.benchmark_group("cluster");
    group.sample_size(10);
    group.throughput(Throughput::Elements(assigned(&fx).len() as u64));
    group.bench_function("first round: 10,000 empty nodes, 1,000,000 queued", |b| {
        b.iter_batched(
            loaded_cluster,
            |(mut cluster, mut fx)| {
                cluster.end_batch(&mut fx, 2_000);
                // Returned, so dropping the model is not timed.
                (cluster, fx)
            },
            BatchSize::PerIteration,
        )
    });
    // Every hundredth node reports one task ended; the round re-fills the cores it frees.
    let mut results: Vec<(u64, TaskResult)> = Vec::new();
    for (session, d) in assigned(&fx) {
        if session % 100 == 0 && results.last().is_none_or(|(s, _)| *s != session) {
            results.push((session, finished(d)));
        }
    }
    assert_eq!(results.len(), NODES / 100);
    group.throughput(Throughput::Elements(results.len() as u64));
    group.bench_function("steady round: a task ends on 1% of 10,000 nodes", |b| {
        b.iter_batched(
            || (first.clone(), Effects::default()),
            |(mut cluster, mut fx)| {
                for (session, result) in &results {
                    cluster.agent_results(&mut fx, *session, vec![result.clone()], 3_000);
                }
                cluster.end_batch(&mut fx, 3_000);
                // Returned, so dropping the model is not timed.
                (cluster, fx)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn finished(d: &Dispatch) -> TaskResult {
    TaskResult {
        key: d.key,
        attempt: d.attempt,
        exit_code: Some(0),
        message: None,
        started_at: 2_000,
        ended_at: 2_500,
        stdout: String::new(),
        stderr: String::new(),
        staging_error: None,
    }
}

criterion_group!(benches, bench_plan, bench_cluster);
criterion_main!(benches);
