//! The contract every [`crate::Store`] engine passes. An engine's tests invoke
//! [`store_contract_tests!`] with a function that opens a fresh store in a directory.

use thunderhead_core::job::{JobSpec, JobState, Priority, TaskCounts, TaskState};
use thunderhead_core::node_state::{Health, NodeState};
use thunderhead_core::persist::{JobProgress, JobRecord, NodeRecord, TaskRow};
use thunderhead_core::size::NodeSize;
use thunderhead_core::sweep::SweepRange;
use thunderhead_core::template::Template;

pub fn template(name: &str) -> Template {
    Template { description: "d".into(), created_at: 5, ..Template::new(name, "local") }
}

pub fn node(name: &str, state: NodeState) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        template: Some("t".into()),
        size: Some(NodeSize::Medium),
        cores: 2,
        state,
        health: Health::OK,
        handle: Some(serde_json::json!({"pid": 1})),
    }
}

pub fn sweep_job(id: u64, len: u64) -> JobRecord {
    JobRecord {
        id,
        name: "sweep".into(),
        owner: "alice".into(),
        priority: Priority::Normal,
        cores_per_task: 1,
        retries: 3,
        spec: JobSpec::Sweep {
            command: vec!["echo".into(), "*".into()],
            range: SweepRange { start: 1, end: len, step: 1 },
        },
        state: JobState::Queued,
        submitted_at: 1,
        started_at: None,
        ended_at: None,
        cursor: 0,
        counts: TaskCounts { queued: len, ..Default::default() },
        core_ms: 0,
        cost_micros: Default::default(),
        staging: Default::default(),
    }
}

pub fn row(job: u64, index: u64, state: TaskState) -> TaskRow {
    TaskRow { state, attempt: 1, node: Some("n1".into()), ..TaskRow::new(job, index) }
}

pub fn progress(id: u64, state: JobState, cursor: u64) -> JobProgress {
    JobProgress {
        id,
        state,
        started_at: Some(2),
        ended_at: None,
        cursor,
        counts: TaskCounts::default(),
        core_ms: 7_200_000,
        cost_micros: [("USD".to_string(), 240_000)].into(),
        at: 0,
    }
}

#[macro_export]
macro_rules! store_contract_tests {
    ($open:expr) => {
        mod contract {
            use super::*;
            use thunderhead_core::job::{JobState, TaskState};
            use thunderhead_core::node_state::NodeState;
            use thunderhead_core::persist::Op;
            use $crate::contract::*;
            use $crate::{Store, TaskQuery};

            fn open(dir: &std::path::Path) -> impl Store {
                let f = $open;
                f(dir)
            }

            #[test]
            fn what_is_applied_is_loaded_back_after_reopening() {
                let dir = tempfile::tempdir().unwrap();
                {
                    let s = open(dir.path());
                    s.apply(&[
                        Op::PutTemplate(template("t")),
                        Op::PutSeries { prefix: "LocalCN-".into(), last: 2 },
                        Op::PutNode(node("n1", NodeState::Online { since: 3 })),
                        Op::PutNode(node("n2", NodeState::NotDeployed)),
                        Op::InsertJob(sweep_job(1, 100)),
                        Op::PutTask(row(1, 1, TaskState::Running)),
                        Op::PutTask(row(1, 2, TaskState::Finished)),
                        Op::PutTask(row(1, 3, TaskState::Queued)),
                        Op::JobProgress(progress(1, JobState::Running, 3)),
                    ])
                    .unwrap();
                    s.apply(&[Op::DeleteNode("n2".into())]).unwrap();
                }
                let s = open(dir.path());
                let snap = s.load().unwrap();
                assert_eq!(snap.templates, vec![template("t")]);
                assert_eq!(snap.series, vec![("LocalCN-".to_string(), 2)]);
                assert_eq!(snap.nodes, vec![node("n1", NodeState::Online { since: 3 })]);
                assert_eq!(snap.jobs.len(), 1);
                assert_eq!((snap.jobs[0].state, snap.jobs[0].cursor), (JobState::Running, 3));
                let mut active: Vec<u64> = snap.active_tasks.iter().map(|r| r.index).collect();
                active.sort();
                assert_eq!(active, [1, 3], "finished rows of sweeps are not loaded");
            }

            #[test]
            fn usage_and_job_cost_are_kept() {
                use thunderhead_core::cost::{Usage, UsageKind};
                use thunderhead_core::size::NodeSize;
                let dir = tempfile::tempdir().unwrap();
                let usage = |id: u64, start: u64, end: Option<u64>| Usage {
                    id,
                    template: "t".into(),
                    kind: UsageKind::Node,
                    name: format!("n{id}"),
                    size: NodeSize::Small,
                    count: 1,
                    rate_micros: 120_000,
                    currency: "USD".into(),
                    start,
                    end,
                };
                {
                    let s = open(dir.path());
                    s.apply(&[
                        Op::PutUsage(usage(1, 0, Some(100))),
                        Op::PutUsage(usage(2, 50, None)),
                        Op::PutUsage(usage(3, 60, None)),
                        Op::InsertJob(sweep_job(1, 5)),
                        Op::JobProgress(progress(1, JobState::Running, 1)),
                    ])
                    .unwrap();
                    s.apply(&[Op::PutUsage(usage(3, 60, Some(500)))]).unwrap();
                }
                let s = open(dir.path());
                let snap = s.load().unwrap();
                assert_eq!(snap.open_usage, vec![usage(2, 50, None)]);
                assert_eq!(snap.next_usage, 4);
                assert_eq!(snap.jobs[0].core_ms, 7_200_000);
                assert_eq!(snap.jobs[0].cost_micros["USD"], 240_000);
                let since: Vec<u64> = s.usage(200).unwrap().iter().map(|u| u.id).collect();
                assert_eq!(since, [2, 3], "the stretch that ended before 200 is left out");
            }

            #[test]
            fn job_cost_is_sampled_once_a_minute_and_read_from_a_period_on() {
                let dir = tempfile::tempdir().unwrap();
                let at = |job: u64, at: u64, micros: u64| {
                    let mut p = progress(job, JobState::Running, 1);
                    p.at = at;
                    p.cost_micros = [("USD".to_string(), micros)].into();
                    Op::JobProgress(p)
                };
                let minute = 60_000;
                {
                    let s = open(dir.path());
                    s.apply(&[Op::InsertJob(sweep_job(1, 5)), Op::InsertJob(sweep_job(2, 5))]).unwrap();
                    s.apply(&[at(1, 0, 10), at(1, 1_000, 20), at(1, minute, 30), at(1, 5 * minute, 90)]).unwrap();
                    s.apply(&[at(2, 2 * minute, 5)]).unwrap();
                }
                let s = open(dir.path());
                let read: Vec<(u64, u64, u64)> =
                    s.job_cost(minute, 4 * minute).unwrap().iter().map(|p| (p.job, p.at, p.cost_micros["USD"])).collect();
                // Job 1's samples of minute 0 collapse into the last; its total at `since` opens the
                // period, and the sample after `until` is left out.
                assert_eq!(read, [(1, minute, 30), (2, 2 * minute, 5)]);
                let all: Vec<u64> = s.job_cost(0, 10 * minute).unwrap().iter().map(|p| p.at).collect();
                assert_eq!(all, [1_000, minute, 5 * minute, 2 * minute]);
                // A period that begins between two samples keeps the one before it as its base.
                let between: Vec<u64> = s.job_cost(2 * minute, 10 * minute).unwrap().iter().filter(|p| p.job == 1).map(|p| p.at).collect();
                assert_eq!(between, [minute, 5 * minute]);
            }

            #[test]
            fn proxies_are_kept_until_deleted() {
                use thunderhead_core::proxy::{ProxyRecord, ProxyState};
                let dir = tempfile::tempdir().unwrap();
                let proxy = |n: u32| ProxyRecord {
                    name: format!("t-proxy-{n}"),
                    template: "t".into(),
                    state: ProxyState::Up { url: format!("http://127.0.0.1:{n}") },
                    handle: Some(serde_json::json!({"pid": n})),
                    address: Some(format!("http://127.0.0.1:{n}")),
                    since: 9,
                    provider: "local".into(),
                };
                {
                    let s = open(dir.path());
                    s.apply(&[Op::PutProxy(proxy(1)), Op::PutProxy(proxy(2))]).unwrap();
                    s.apply(&[Op::DeleteProxy("t-proxy-1".into())]).unwrap();
                }
                assert_eq!(open(dir.path()).load().unwrap().proxies, vec![proxy(2)]);
            }

            #[test]
            fn packages_are_kept_by_name_and_version() {
                use thunderhead_core::package::Package;
                let dir = tempfile::tempdir().unwrap();
                let pkg = |v: u32| Package {
                    name: "solver".into(),
                    version: v,
                    file_name: "solver.tar.gz".into(),
                    size: 5,
                    sha256: "00".repeat(32),
                    template: None,
                    store: None,
                    uploaded_at: 3,
                };
                {
                    let s = open(dir.path());
                    s.apply(&[Op::PutPackage(pkg(1)), Op::PutPackage(pkg(2))]).unwrap();
                    s.apply(&[Op::DeletePackage { name: "solver".into(), version: 1 }]).unwrap();
                }
                assert_eq!(open(dir.path()).load().unwrap().packages, vec![pkg(2)]);
            }

            #[test]
            fn users_are_kept_by_name_and_can_be_removed() {
                use thunderhead_core::access::{Role, UserRecord};
                let dir = tempfile::tempdir().unwrap();
                let user = |name: &str, role: Role| UserRecord {
                    name: name.into(),
                    role,
                    token_id: format!("id-{name}"),
                    token_salt: "01".repeat(16),
                    token_hash: "02".repeat(32),
                    created_at: 4,
                };
                {
                    let s = open(dir.path());
                    s.apply(&[Op::PutUser(user("alice", Role::User)), Op::PutUser(user("bob", Role::User))]).unwrap();
                    s.apply(&[Op::PutUser(user("alice", Role::JobAdministrator)), Op::DeleteUser("bob".into())])
                        .unwrap();
                }
                assert_eq!(open(dir.path()).load().unwrap().users, vec![user("alice", Role::JobAdministrator)]);
            }

            #[test]
            fn finished_jobs_load_no_task_rows() {
                let dir = tempfile::tempdir().unwrap();
                let s = open(dir.path());
                s.apply(&[Op::InsertJob(sweep_job(1, 2)), Op::PutTask(row(1, 1, TaskState::Running))]).unwrap();
                s.apply(&[Op::JobProgress(progress(1, JobState::Canceled, 2))]).unwrap();
                assert!(s.load().unwrap().active_tasks.is_empty());
            }

            #[test]
            fn task_pages_and_output() {
                let dir = tempfile::tempdir().unwrap();
                let s = open(dir.path());
                let mut ops = vec![Op::InsertJob(sweep_job(1, 10))];
                for i in 1..=10 {
                    let mut r = row(1, i, if i % 2 == 0 { TaskState::Finished } else { TaskState::Failed });
                    r.stdout = Some(format!("out {i}"));
                    ops.push(Op::PutTask(r));
                }
                s.apply(&ops).unwrap();
                let page = s.tasks(TaskQuery { job: 1, after: Some(3), limit: 4, state: None }).unwrap();
                assert_eq!(page.iter().map(|r| r.index).collect::<Vec<_>>(), [4, 5, 6, 7]);
                let beyond = s.tasks(TaskQuery { job: 1, after: Some(u64::MAX), limit: 4, state: None }).unwrap();
                assert!(beyond.is_empty(), "nothing comes after the largest index");
                assert!(page.iter().all(|r| r.stdout.is_none()));
                let failed =
                    s.tasks(TaskQuery { job: 1, after: None, limit: 100, state: Some(TaskState::Failed) }).unwrap();
                assert_eq!(failed.len(), 5);
                assert_eq!(s.task(1, 4).unwrap().unwrap().stdout.as_deref(), Some("out 4"));
                assert_eq!(s.task(1, 11).unwrap(), None);
            }

            #[test]
            fn node_logs_keep_their_order_and_go_with_the_node() {
                let dir = tempfile::tempdir().unwrap();
                let s = open(dir.path());
                s.apply(&[
                    Op::PutNode(node("n1", NodeState::NotDeployed)),
                    Op::NodeLog { node: "n1".into(), at: 1, message: "first".into() },
                    Op::NodeLog { node: "n1".into(), at: 2, message: "second".into() },
                ])
                .unwrap();
                let log: Vec<String> = s.node_log("n1").unwrap().into_iter().map(|e| e.message).collect();
                assert_eq!(log, ["first", "second"]);
                s.apply(&[Op::DeleteNode("n1".into())]).unwrap();
                assert!(s.node_log("n1").unwrap().is_empty());
                s.integrity_check().unwrap();
            }

            #[test]
            fn a_failed_batch_changes_nothing() {
                let dir = tempfile::tempdir().unwrap();
                let s = open(dir.path());
                s.apply(&[Op::InsertJob(sweep_job(1, 2))]).unwrap();
                // The second insert of job 1 violates its key: the whole batch must roll back.
                let err = s.apply(&[Op::PutTemplate(template("t")), Op::InsertJob(sweep_job(1, 2))]);
                assert!(err.is_err());
                assert!(s.load().unwrap().templates.is_empty());
            }
        }
    };
}
