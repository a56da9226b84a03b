//! Placing tasks on nodes and ending them once.

use super::*;

#[test]
fn higher_priority_jobs_are_dispatched_first() {
    let mut env = Env::new();
    env.online(1, "Small");
    let low = env.sweep("1-5", Some("Lowest"), None, None);
    let high = env.sweep("1-5", Some("Highest"), None, None);
    let fx = env.end();
    let jobs: Vec<JobId> = all_dispatches(&fx).iter().map(|d| d.key.job).collect();
    // A Small node holds one running task and one queued ahead.
    assert_eq!(jobs, [high, high]);
    assert_eq!(env.job_counts(low).queued, 5);
}

#[test]
fn cores_per_task_and_node_capacity_are_respected() {
    let mut env = Env::new();
    env.online(1, "Medium");
    env.sweep("1-10", None, Some(2), None);
    let fx = env.end();
    let d = all_dispatches(&fx);
    assert_eq!(d.len(), 2, "2 cores, one task's worth queued ahead, 2 cores per task");
    assert!(d.iter().all(|d| d.cores == 2));
}

#[test]
fn a_node_whose_tasks_are_short_holds_more_queued_and_long_tasks_bring_it_back_to_one() {
    let mut env = Env::new();
    let names = env.online(1, "Medium");
    env.sweep("1-1000", None, None, None);
    let first = all_dispatches(&env.end());
    assert_eq!(first.len(), 4, "2 cores and one multiple queued until a task has run");
    // Tasks of 1 ms: 50 ms of work per core would be 50 multiples; the most is 16.
    for d in &first {
        env.finish_after(&names[0], d, 0, 1);
    }
    let short = all_dispatches(&env.end());
    assert_eq!(short.len(), 2 * (1 + 16), "the node now holds 16 multiples of its cores queued");
    // Tasks of 10 ms: 5 multiples. The average moves by an eighth per task.
    for d in &short {
        env.finish_after(&names[0], d, 0, 10);
    }
    let held = all_dispatches(&env.end());
    let node = &env.c.nodes[&names[0]];
    assert_eq!(node.queue_ahead(16), 6, "the average is near 10 ms: {:?}", node.task_us);
    assert_eq!(held.len(), 2 * (1 + 6));
    for d in &held {
        env.finish_after(&names[0], d, 0, 60_000);
    }
    env.end();
    assert_eq!(env.c.nodes[&names[0]].queue_ahead(16), 1, "minute-long tasks hold one multiple");
    assert_eq!(env.c.nodes[&names[0]].used_cores, 2 * 2);
    assert_eq!(Config { queue_ahead: 0, ..Config::default() }.queue_ahead, 0);
    assert_eq!(env.c.nodes[&names[0]].queue_ahead(0), 0, "--queue-ahead 0 holds nothing queued");
}

#[test]
fn only_online_nodes_with_health_ok_get_work() {
    let mut env = Env::new();
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.connect(&names[0], 1).unwrap();
    env.sweep("1-3", None, None, None);
    assert!(all_dispatches(&env.end()).is_empty(), "an Offline node takes no work");
    env.act(NodeAction::Online, &[&names[0]], false);
    let fx = env.end();
    assert_eq!(all_dispatches(&fx).len(), 2);
    assert_eq!(env.state(&names[0]), ("Online".into(), "OK".into()));
}

#[test]
fn dispatches_carry_the_substituted_command_and_environment() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("7-7", None, None, None);
    let d = all_dispatches(&env.end()).remove(0);
    assert_eq!(d.command, ["echo", "7"]);
    let env_of = |k: &str| d.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(env_of("THUNDERHEAD_SWEEP_INDEX").as_deref(), Some("7"));
    assert_eq!(env_of("THUNDERHEAD_TASK_ID"), Some(format!("{id}.7")));
    assert_eq!(env_of("THUNDERHEAD_NODE_NAME"), Some(names[0].clone()));
}

#[test]
fn results_end_each_task_once_and_stale_attempts_are_ignored() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("1-3", None, None, None);
    let d = all_dispatches(&env.end());
    env.finish(&names[0], &d[0], 0);
    env.finish(&names[0], &d[0], 0);
    let fx = env.end();
    assert_eq!(env.job_counts(id).finished, 1, "a repeated result counts once");
    let acks: usize = fx
        .commands
        .iter()
        .map(|c| match c {
            Command::Ack { tasks, .. } => tasks.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(acks, 2, "both reports are acknowledged so the agent forgets them");
    let stale = Dispatch { attempt: 9, ..d[1].clone() };
    env.finish(&names[0], &stale, 1);
    env.end();
    assert_eq!(env.job_counts(id).failed, 0);
}

#[test]
fn an_agent_holding_an_old_result_and_a_new_attempt_of_one_task_keeps_running_it() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("1-1", None, None, None);
    let first = all_dispatches(&env.end()).remove(0);
    // The node is forced offline and back: the task is requeued and dispatched again.
    env.act(NodeAction::Offline, &[&names[0]], true);
    env.act(NodeAction::Online, &[&names[0]], false);
    let second = all_dispatches(&env.end()).remove(0);
    assert_eq!((second.key, second.attempt), (first.key, 2));
    env.c.agent_gone(&mut env.fx, env.sessions[&names[0]], env.now);
    let hello = Hello {
        name: names[0].clone(),
        cores: 1,
        running: vec![TaskAttempt { key: second.key, attempt: 2 }],
        completed: vec![TaskAttempt { key: first.key, attempt: 1 }],
        leaves_at: None,
    };
    env.c.agent_hello(&mut env.fx, 50, hello, env.now).unwrap();
    let fx = env.end();
    assert!(all_dispatches(&fx).is_empty(), "attempt 2 is still held, nothing runs again");
    assert_eq!(env.job_counts(id).running, 1);
}
