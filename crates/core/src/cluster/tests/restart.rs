//! A head node restarted from its snapshot.

use super::*;

#[test]
fn a_restarted_head_node_keeps_running_tasks_and_requeues_what_agents_do_not_hold() {
    let mut env = Env::new();
    let names = env.online(1, "Medium");
    let id = env.sweep("1-10", None, None, None);
    let d = all_dispatches(&env.end());
    assert_eq!(d.len(), 4);
    env.finish(&names[0], &d[0], 0);
    let refill = all_dispatches(&env.end());
    assert_eq!(refill.len(), 1, "the freed slot is refilled");

    let snapshot = snapshot_of(&env.log);
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), rules(), snapshot, &mut fx, env.now);
    c.check_invariants().unwrap();
    assert_eq!(c.job(id).unwrap().tasks.running, 4);
    assert_eq!(c.node(&names[0]).unwrap().state, "Online");
    // The agent comes back holding two of the three attempts and the result of one.
    let attempt = |d: &Dispatch| TaskAttempt { key: d.key, attempt: d.attempt };
    let hello = Hello {
        name: names[0].clone(),
        cores: 2,
        running: vec![attempt(&d[1])],
        completed: vec![attempt(&d[2])],
        leaves_at: None,
    };
    c.agent_hello(&mut fx, 77, hello, env.now).unwrap();
    c.end_batch(&mut fx, env.now);
    c.check_invariants().unwrap();
    let job = c.job(id).unwrap();
    assert_eq!(job.tasks.finished, 1);
    let redispatched: Vec<Dispatch> = all_dispatches(&fx);
    for lost in [&d[3], &refill[0]] {
        assert!(
            redispatched.iter().any(|x| x.key == lost.key && x.attempt == 2),
            "a task the agent did not hold runs again"
        );
    }
    assert!(redispatched.iter().all(|x| x.key != d[1].key && x.key != d[2].key), "held tasks are not run twice");
}

#[test]
fn a_stop_cut_short_by_a_restart_is_finished_by_removing_the_deployment() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), rules(), snapshot_of(&env.log), &mut fx, env.now);
    assert_eq!(c.node(&names[0]).unwrap().state, "Stopping");
    let handle = fx.commands.iter().find_map(|cmd| match cmd {
        Command::Remove { node, handle, .. } if node == &names[0] => Some(handle.clone()),
        _ => None,
    });
    let handle = handle.expect("the removal is sent again");
    c.removed(&mut fx, &names[0], &handle, Ok(()), env.now);
    assert_eq!(c.node(&names[0]).unwrap().state, "NotDeployed");
}

#[test]
fn open_paid_stretches_survive_a_restart() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), rules(), snapshot_of(&env.log), &mut fx, env.now);
    let req = NodeActionRequest { action: NodeAction::Stop, template: None, names: names.clone(), force: false };
    c.node_action(&mut fx, req, env.now + 1_000).unwrap();
    c.removed(&mut fx, &names[0], &serde_json::json!({"pid": 1}), Ok(()), env.now + 1_000);
    let mut log = env.log.clone();
    log.extend(fx.ops);
    let usage = snapshot_usage(&log);
    assert_eq!(usage.len(), 2, "the restart closed the same two stretches it found open: {usage:?}");
    assert!(usage.iter().all(|u| u.end == Some(env.now + 1_000)));
}

#[test]
fn deployments_queued_when_the_head_node_stopped_are_made_after_the_restart() {
    let mut env = Env::new();
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { deploy_rate: Some(1), ..Default::default() }, env.now)
        .unwrap();
    let names = env.add(3, "Small");
    let req = NodeActionRequest { action: NodeAction::Start, template: Some("t".into()), names: vec![], force: false };
    env.c.node_action(&mut env.fx, req, env.now).unwrap();
    assert_eq!(deploys(&env.end()).len(), 1, "one a minute");
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), rules(), snapshot_of(&env.log), &mut fx, env.now + 61_000);
    c.end_batch(&mut fx, env.now + 61_000);
    let again: Vec<String> = deploys(&fx);
    assert_eq!(again.len(), 1, "deployment goes on at the template's rate: {again:?}");
    assert!(names.contains(&again[0]));
    // Nothing is timed out as if it had been deployed.
    c.tick(&mut fx, env.now + 61_000 + Config::default().provision_timeout + 1);
    let unknown = names.iter().filter(|n| c.node(n).unwrap().state == "Unknown").count();
    assert_eq!(unknown, 0);
}
