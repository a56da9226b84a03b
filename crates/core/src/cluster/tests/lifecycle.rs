//! Node states, health, quotas and set actions.

use super::*;

#[test]
fn a_lost_node_requeues_its_tasks_on_another_node() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    let id = env.sweep("1-2", None, None, None);
    let fx = env.end();
    let per_node = assigned(&fx);
    assert_eq!(per_node.len(), 2, "one task per node");
    let lost_session = per_node[0].0;
    let lost_task = per_node[0].1[0].key;
    env.c.agent_gone(&mut env.fx, lost_session, env.now);
    env.end();
    env.now += env.c.config().reconnect_grace + 1;
    for (name, session) in env.sessions.clone() {
        if session != lost_session {
            env.c.agent_heard(session, env.now, None);
            assert!(names.contains(&name));
        }
    }
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    let lost_name = names.iter().find(|n| env.sessions[*n] == lost_session).unwrap().clone();
    assert_eq!(env.state(&lost_name), ("Unknown".into(), "Error".into()));
    let again = all_dispatches(&fx);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].key, again[0].attempt), (lost_task, 2));
    assert_eq!(env.job_counts(id).running, 2);
}

#[test]
fn a_task_whose_node_is_lost_more_often_than_its_retries_fails() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("1-1", None, None, Some(0));
    env.end();
    env.c.agent_gone(&mut env.fx, env.sessions[&names[0]], env.now);
    env.now += env.c.config().reconnect_grace + 1;
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    assert_eq!(env.job_counts(id).failed, 1);
    assert_eq!(env.c.job(id).unwrap().state, "Failed");
    let failed = fx.ops.iter().find_map(|op| match op {
        Op::PutTask(r) if r.state == TaskState::Failed => r.message.clone(),
        _ => None,
    });
    assert!(failed.unwrap().contains("more than the job's 0 retries"));
}

#[test]
fn taking_a_node_offline_drains_it_or_requeues_with_force() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    let id = env.sweep("1-4", None, None, None);
    let fx = env.end();
    let on_first: Vec<Dispatch> = assigned(&fx).into_iter().find(|(s, _)| *s == env.sessions[&names[0]]).unwrap().1;
    env.act(NodeAction::Offline, &[&names[0]], false);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Draining");
    for d in &on_first {
        env.finish(&names[0], d, 0);
    }
    env.end();
    assert_eq!(env.state(&names[0]).0, "Offline", "drained once its tasks ended");

    env.act(NodeAction::Offline, &[&names[1]], true);
    let fx = env.end();
    assert_eq!(env.state(&names[1]).0, "Offline");
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Cancel { tasks, .. } if tasks.len() == 2)));
    assert_eq!(env.job_counts(id).queued, 2, "forced offline requeues");
}

#[test]
fn names_in_a_series_are_never_reused() {
    let mut env = Env::new();
    let first = env.add(2, "Small");
    assert_eq!(first, ["LabCN-0001", "LabCN-0002"]);
    env.act(NodeAction::Delete, &["LabCN-0002"], false);
    env.end();
    assert_eq!(env.add(1, "Small"), ["LabCN-0003"]);
}

#[test]
fn unknown_agents_join_as_on_premises_nodes_and_undeployed_names_are_refused() {
    let mut env = Env::new();
    env.connect("workstation-7", 16).unwrap();
    env.end();
    let n = env.c.node("workstation-7").unwrap();
    assert_eq!((n.template, n.state.as_str(), n.health.as_str(), n.cores), (None, "Offline", "OK", 16));
    let names = env.add(1, "Small");
    let err = env.connect(&names[0], 1).unwrap_err();
    assert!(err.message.contains("NotDeployed") && err.message.contains("node start"), "{err}");
}

#[test]
fn the_quota_counts_the_proxies_eighteen_small_nodes_fit_nineteen_do_not() {
    let mut env = Env::new();
    let req = |count| AddNodes { template: "t".into(), count, size: "Small".into() };
    let err = env.c.add_nodes(&mut env.fx, req(19), env.now).unwrap_err();
    assert!(err.message.contains("needs 21 cores") && err.message.contains("quota of 20"), "{err}");
    assert!(err.message.contains("add at most 18"), "{err}");
    assert!(env.end().ops.is_empty(), "a refused add changes nothing");
    env.c.add_nodes(&mut env.fx, req(18), env.now).unwrap();
    env.end();
    let err = env.c.add_nodes(&mut env.fx, req(1), env.now).unwrap_err();
    assert!(err.message.contains("18 cores of nodes"), "{err}");
}

#[test]
fn starting_beyond_a_lowered_quota_is_refused_per_node() {
    let mut env = Env::new();
    env.add(4, "Medium");
    let edit = TemplateEdit { quota_cores: Some(6), ..Default::default() };
    env.c.edit_template(&mut env.fx, "t", edit, env.now).unwrap();
    let req = NodeActionRequest { action: NodeAction::Start, template: Some("t".into()), names: vec![], force: false };
    let results = env.c.node_action(&mut env.fx, req, env.now).unwrap();
    env.end();
    let ok: Vec<bool> = results.iter().map(|r| r.ok).collect();
    assert_eq!(ok, [true, true, false, false], "2 Medium nodes and 2 proxies fill 6 cores");
    assert!(results[2].message.contains("over its quota of 6"), "{}", results[2].message);
}

#[test]
fn a_template_prefix_names_new_nodes() {
    let mut env = Env::new();
    let edit = TemplateEdit { series_prefix: Some("Burst-".into()), ..Default::default() };
    env.c.edit_template(&mut env.fx, "t", edit, env.now).unwrap();
    assert_eq!(env.add(2, "Small"), ["Burst-0001", "Burst-0002"]);
}

#[test]
fn a_silent_agent_gets_health_error_its_tasks_requeued_and_ok_when_it_returns() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    let id = env.sweep("1-4", None, None, None);
    let fx = env.end();
    let quiet = names[0].clone();
    let held: Vec<TaskAttempt> = assigned(&fx)
        .into_iter()
        .filter(|(s, _)| *s == env.sessions[&quiet])
        .flat_map(|(_, t)| t)
        .map(|d| TaskAttempt { key: d.key, attempt: d.attempt })
        .collect();
    // The other agent keeps talking; the quiet one does not.
    env.now += env.c.config().heartbeat_timeout / 2;
    env.c.agent_heard(env.sessions[&names[1]], env.now, None);
    env.now += env.c.config().heartbeat_timeout / 2 + 1;
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    assert_eq!(env.state(&quiet), ("Online".into(), "Error".into()));
    assert_eq!(env.state(&names[1]), ("Online".into(), "OK".into()));
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Disconnect { .. })));
    assert_eq!(env.job_counts(id).running + env.job_counts(id).queued, 4);
    // A node with health Error takes no work even though it is Online.
    assert!(assigned(&fx).iter().all(|(s, _)| *s != env.sessions[&quiet]));

    let session = 99;
    let hello = Hello { name: quiet.clone(), cores: 1, running: held.clone(), completed: vec![], leaves_at: None };
    env.c.agent_hello(&mut env.fx, session, hello, env.now).unwrap();
    let fx = env.end();
    assert_eq!(env.state(&quiet), ("Online".into(), "OK".into()));
    let canceled: Vec<TaskAttempt> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Cancel { session: 99, tasks } => Some(tasks.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(canceled, held, "the attempts it held were requeued, so it must drop them");
}

#[test]
fn one_command_may_not_start_or_stop_two_sets() {
    let mut env = Env::new();
    let t2 = NewTemplate { name: "t2".into(), provider: "lab".into(), ..Default::default() };
    env.c.create_template(&mut env.fx, t2, env.now).unwrap();
    env.add(1, "Small");
    env.c.add_nodes(&mut env.fx, AddNodes { template: "t2".into(), count: 1, size: "Small".into() }, env.now).unwrap();
    env.end();
    let req = NodeActionRequest {
        action: NodeAction::Start,
        template: None,
        names: vec!["LabCN-0001".into(), "LabCN-0002".into()],
        force: false,
    };
    let err = env.c.node_action(&mut env.fx, req, env.now).unwrap_err();
    assert!(err.message.contains("different sets") && err.message.contains("template t2"), "{err}");
    assert!(env.end().commands.is_empty());
}

#[test]
fn a_draining_node_whose_agent_returns_empty_handed_settles_offline() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    env.sweep("1-2", None, None, None);
    env.end();
    env.act(NodeAction::Offline, &[&names[0]], false);
    env.c.agent_gone(&mut env.fx, env.sessions[&names[0]], env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Draining");
    env.connect(&names[0], 1).unwrap();
    env.end();
    assert_eq!(env.state(&names[0]).0, "Offline", "nothing left to drain");
}

#[test]
fn a_node_can_be_disconnected_by_name() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    env.end();
    assert_eq!(env.c.disconnect_node(&mut env.fx, &names[0], "its certificate was revoked"), 1);
    let fx = env.end();
    let closed: Vec<SessionId> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Disconnect { session, reason } if reason.contains("revoked") => Some(*session),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![env.sessions[&names[0]]]);
    assert_eq!(env.c.disconnect_node(&mut env.fx, "nobody", "x"), 0);
}
