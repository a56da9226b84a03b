//! Provider answers, deploy rate, retries and pausing.

use super::*;

#[test]
fn a_deployment_that_never_connects_times_out_to_unknown() {
    let mut env = Env::new();
    let names = env.add(1, "Large");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!({"pid": 1})), env.now);
    env.end();
    env.now += env.c.config().provision_timeout + 1;
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    assert_eq!(env.state(&names[0]), ("Unknown".into(), "Unapproved".into()));
    assert!(env.c.node(&names[0]).unwrap().cause.unwrap().contains("did not connect within 120 s"));
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Remove { .. })), "the half-deployed node is removed");
}

#[test]
fn a_stop_during_deployment_removes_the_node_when_the_deploy_returns() {
    let mut env = Env::new();
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.act(NodeAction::Stop, &[&names[0]], false);
    let fx = env.end();
    assert!(!fx.commands.iter().any(|c| matches!(c, Command::Remove { .. })), "nothing to remove yet");
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!({"pid": 1})), env.now);
    let fx = env.end();
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Remove { .. })));
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!({"pid": 1}), Ok(()), env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "NotDeployed");
}

#[test]
fn restarting_a_failed_node_removes_its_old_deployment_and_old_answers_do_not_touch_the_new_one() {
    let mut env = Env::new();
    let names = env.add(1, "Small");
    let n = &names[0];
    let old = serde_json::json!({"pid": 1});
    env.act(NodeAction::Start, &[n], false);
    env.end();
    env.c.deployed(&mut env.fx, n, Ok(old.clone()), env.now);
    env.now += env.c.config().provision_timeout + 1;
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(env.state(n).0, "Unknown");
    let err = env.c.node_action(
        &mut env.fx,
        NodeActionRequest { action: NodeAction::Delete, template: None, names: vec![n.clone()], force: false },
        env.now,
    );
    assert!(err.unwrap()[0].message.contains("still has a deployment"));
    env.act(NodeAction::Start, &[n], false);
    let fx = env.end();
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Remove { handle, .. } if *handle == old)));
    assert!(deploys(&fx).is_empty(), "the new deployment waits until the old one is gone");
    env.c.removed(&mut env.fx, n, &old, Ok(()), env.now);
    assert_eq!(deploys(&env.end()), std::slice::from_ref(n));
    let new = serde_json::json!({"pid": 2});
    env.c.deployed(&mut env.fx, n, Ok(new.clone()), env.now);
    // A second, late answer about the old deployment (the timeout had asked for one too).
    env.c.removed(&mut env.fx, n, &old, Ok(()), env.now);
    env.end();
    assert_eq!(env.c.nodes[n].handle(), Some(&new), "the answer about the old deployment leaves the new one alone");
    assert_eq!(env.state(n).0, "Provisioning");
}

#[test]
fn deployments_start_no_faster_than_the_template_rate() {
    let mut env = Env::new();
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { deploy_rate: Some(2), ..Default::default() }, env.now)
        .unwrap();
    env.add(5, "Small");
    let req = NodeActionRequest { action: NodeAction::Start, template: Some("t".into()), names: vec![], force: false };
    env.c.node_action(&mut env.fx, req, env.now).unwrap();
    assert_eq!(deploys(&env.end()), ["LabCN-0001", "LabCN-0002"]);
    env.now += 30_000;
    assert!(deploys(&env.end()).is_empty(), "still the same minute");
    env.now += 30_000;
    assert_eq!(deploys(&env.end()), ["LabCN-0003", "LabCN-0004"]);
    env.now += 60_000;
    assert_eq!(deploys(&env.end()), ["LabCN-0005"]);
}

#[test]
fn a_transient_failure_is_retried_after_a_delay_and_a_fatal_one_is_not() {
    let mut env = Env::new();
    let names = env.add(2, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.act(NodeAction::Start, &[&names[1]], false);
    assert_eq!(deploys(&env.end()).len(), 2);
    env.c.deployed(&mut env.fx, &names[0], fail(true), env.now);
    env.c.deployed(&mut env.fx, &names[1], fail(false), env.now);
    assert!(deploys(&env.end()).is_empty(), "the retry waits");
    assert_eq!(env.state(&names[0]).0, "Provisioning");
    assert_eq!(env.state(&names[1]).0, "Unknown");
    env.now += RETRY_DELAY;
    assert_eq!(deploys(&env.end()), [names[0].clone()]);
    env.c.deployed(&mut env.fx, &names[0], fail(true), env.now);
    env.now += 2 * RETRY_DELAY;
    assert_eq!(deploys(&env.end()), [names[0].clone()], "the second of 2 retries");
    env.c.deployed(&mut env.fx, &names[0], fail(true), env.now);
    env.now += 10 * RETRY_DELAY;
    assert!(deploys(&env.end()).is_empty());
    assert_eq!(env.state(&names[0]).0, "Unknown", "retries used up");
    let log_has = |n: &str, text: &str| {
        env.log.iter().any(|op| matches!(op, Op::NodeLog { node, message, .. } if node == n && message.contains(text)))
    };
    assert!(log_has(&names[0], "deployment attempt 3 failed: no capacity (test)"));
}

#[test]
fn a_template_pauses_itself_after_consecutive_failures_until_resumed() {
    let mut env = Env::new();
    let edit = TemplateEdit { pause_after_failures: Some(2), deploy_rate: Some(2), ..Default::default() };
    env.c.edit_template(&mut env.fx, "t", edit, env.now).unwrap();
    let names = env.add(4, "Small");
    let req = NodeActionRequest { action: NodeAction::Start, template: Some("t".into()), names: vec![], force: false };
    env.c.node_action(&mut env.fx, req.clone(), env.now).unwrap();
    env.end();
    env.c.deployed(&mut env.fx, &names[0], fail(true), env.now);
    env.c.deployed(&mut env.fx, &names[1], fail(true), env.now);
    env.end();
    let t = env.c.template("t").unwrap();
    assert!(t.paused.as_deref().unwrap().contains("2 deployments in a row failed"), "{t:?}");
    for n in &names {
        assert_eq!(env.state(n).0, "Unknown", "{n}: nothing keeps looping");
    }
    let refused = env.c.node_action(&mut env.fx, req.clone(), env.now).unwrap();
    assert!(refused.iter().all(|r| !r.ok && r.message.contains("template resume t")), "{refused:?}");
    env.c.resume_template(&mut env.fx, "t").unwrap();
    env.now += 60_000;
    let again = env.c.node_action(&mut env.fx, req, env.now).unwrap();
    assert!(again.iter().all(|r| r.ok));
    assert_eq!(deploys(&env.end()).len(), 2);
}

#[test]
fn a_failed_node_with_nothing_deployed_costs_nothing_and_keeps_no_proxies() {
    let mut env = Env::new();
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], fail(false), env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Unknown");
    assert!(snapshot_usage(&env.log).iter().all(|u| u.end.is_some()), "the node and proxies stopped costing");
    assert!(env.c.template("t").unwrap().proxy_list.is_empty(), "the set's proxies were removed");
    let err = env.c.delete_template(&mut env.fx, "t").unwrap_err();
    assert!(err.message.contains("still has 1 node"), "{err}");
}
