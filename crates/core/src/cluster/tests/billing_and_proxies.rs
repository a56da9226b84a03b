//! Paid stretches and the proxies of each set.

use super::*;

#[test]
fn nodes_and_proxies_cost_from_start_to_removal_and_jobs_pay_for_core_time() {
    const HOUR: Millis = 3_600_000;
    let mut env = Env::new();
    let t0 = env.now;
    let names = env.online(1, "Medium");
    let id = env.sweep("1-1", None, None, None);
    let d = all_dispatches(&env.end()).remove(0);
    let result = TaskResult {
        key: d.key,
        attempt: d.attempt,
        exit_code: Some(0),
        message: None,
        started_at: t0,
        ended_at: t0 + HOUR,
        stdout: String::new(),
        stderr: String::new(),
        staging_error: None,
    };
    env.c.agent_results(&mut env.fx, env.sessions[&names[0]], vec![result], env.now);
    env.end();
    let job = env.c.job(id).unwrap();
    assert_eq!(job.core_hours, 1.0);
    assert_eq!(job.cost["USD"], 0.12, "one core of a 0.24/h two-core node for an hour");

    env.now = t0 + 2 * HOUR;
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!({"pid": 1}), Ok(()), env.now);
    env.end();
    let usage: Vec<crate::cost::Usage> = snapshot_usage(&env.log);
    assert!(usage.iter().all(|u| u.end.is_some()), "every stretch ended with the stop");
    let sets = crate::cost::summarize(&usage, 0, t0 + 10 * HOUR);
    assert_eq!((sets[0].node_hours, sets[0].proxy_hours), (2.0, 4.0));
    assert!((sets[0].cost["USD"] - (0.48 + 0.48)).abs() < 1e-9, "{sets:?}");
}

#[test]
fn a_started_set_runs_its_proxies_first_and_removes_them_with_its_last_node() {
    let mut env = Env::new();
    env.auto_proxies = false;
    let names = env.add(2, "Small");
    let req = |action| NodeActionRequest { action, template: Some("t".into()), names: vec![], force: false };
    env.c.node_action(&mut env.fx, req(NodeAction::Start), env.now).unwrap();
    let fx = env.end();
    let proxies: Vec<String> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::DeployProxy { proxy, .. } => Some(proxy.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(proxies, ["t-proxy-1", "t-proxy-2"]);
    assert!(deploys(&fx).is_empty(), "nodes wait for a proxy");
    env.c.proxy_deployed(&mut env.fx, "t-proxy-1", Ok((serde_json::json!(1), "http://127.0.0.1:1001".into())), env.now);
    assert!(deploys(&env.end()).is_empty(), "nodes wait until every proxy has answered");
    env.c.proxy_deployed(&mut env.fx, "t-proxy-2", Err("no capacity".into()), env.now);
    let fx = env.end();
    let via: Vec<Vec<String>> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Deploy { via, .. } => Some(via.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(via, vec![vec!["http://127.0.0.1:1001".to_string()]; 2]);
    let shown = env.c.template("t").unwrap().proxy_list;
    let states: Vec<&str> = shown.iter().map(|p| p.state.as_str()).collect();
    assert_eq!(states, ["Up", "Failed"]);

    // Stopping the set removes its proxies once no node is deployed.
    for n in &names {
        env.c.deployed(&mut env.fx, n, Ok(serde_json::json!({"node": n})), env.now);
    }
    env.c.node_action(&mut env.fx, req(NodeAction::Stop), env.now).unwrap();
    env.end();
    for n in &names {
        env.c.removed(&mut env.fx, n, &serde_json::json!({"node": n}), Ok(()), env.now);
    }
    let fx = env.end();
    let removals: Vec<(String, serde_json::Value)> = fx
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::RemoveProxy { proxy, handle, .. } => Some((proxy.clone(), handle.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(removals.len(), 1, "the failed proxy had nothing deployed");
    for (p, h) in removals {
        env.c.proxy_removed(&mut env.fx, &p, &h, Ok(()), env.now);
    }
    env.end();
    assert!(env.c.template("t").unwrap().proxy_list.is_empty());
}

#[test]
fn a_dead_proxy_is_redeployed_on_its_address() {
    let mut env = Env::new();
    env.online(1, "Small");
    env.c.proxy_gone(&mut env.fx, "t-proxy-1", &serde_json::json!({"proxy": "t-proxy-1"}), env.now);
    env.auto_proxies = false;
    let fx = env.end();
    let again = fx.commands.iter().find_map(|c| match c {
        Command::DeployProxy { proxy, address, .. } => Some((proxy.clone(), address.clone())),
        _ => None,
    });
    assert_eq!(again, Some(("t-proxy-1".into(), Some("http://127.0.0.1:9/t-proxy-1".into()))));
}

#[test]
fn when_no_proxy_can_be_deployed_the_waiting_nodes_fail_with_the_reason() {
    let mut env = Env::new();
    env.auto_proxies = false;
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.proxy_deployed(&mut env.fx, "t-proxy-1", Err("no capacity".into()), env.now);
    assert_eq!(env.state(&names[0]).0, "Provisioning", "the other proxy may still come up");
    env.c.proxy_deployed(&mut env.fx, "t-proxy-2", Err("no capacity".into()), env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Unknown");
    assert!(env.c.node(&names[0]).unwrap().cause.unwrap().contains("no proxy of set t is up: no capacity"));
}

#[test]
fn a_set_started_again_while_its_proxies_are_removed_gets_new_ones() {
    let mut env = Env::new();
    env.auto_proxies = false;
    let names = env.add(1, "Small");
    let n = &names[0];
    let proxy_commands = |fx: &Effects| -> (Vec<String>, Vec<(String, serde_json::Value)>) {
        let mut deploy = vec![];
        let mut remove = vec![];
        for c in &fx.commands {
            match c {
                Command::DeployProxy { proxy, .. } => deploy.push(proxy.clone()),
                Command::RemoveProxy { proxy, handle, .. } => remove.push((proxy.clone(), handle.clone())),
                _ => {}
            }
        }
        (deploy, remove)
    };
    env.act(NodeAction::Start, &[n], false);
    let (deploy, _) = proxy_commands(&env.end());
    for p in &deploy {
        env.c.proxy_deployed(&mut env.fx, p, Ok((serde_json::json!(p), format!("http://127.0.0.1:9/{p}"))), env.now);
    }
    env.end();
    env.c.deployed(&mut env.fx, n, Ok(serde_json::json!("n")), env.now);
    env.act(NodeAction::Stop, &[n], false);
    env.end();
    env.c.removed(&mut env.fx, n, &serde_json::json!("n"), Ok(()), env.now);
    let (_, removals) = proxy_commands(&env.end());
    assert_eq!(removals.len(), 2);
    env.act(NodeAction::Start, &[n], false);
    let (deploy, _) = proxy_commands(&env.end());
    assert!(deploy.is_empty(), "the old proxies are still being removed");
    for (p, h) in removals {
        env.c.proxy_removed(&mut env.fx, &p, &h, Ok(()), env.now);
    }
    let (deploy, _) = proxy_commands(&env.end());
    assert_eq!(deploy.len(), 2, "new proxies for the started set");
}

#[test]
fn a_failed_proxy_is_tried_again_while_its_set_runs() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    // The second proxy dies and cannot be redeployed at first.
    env.auto_proxies = false;
    env.c.proxy_gone(&mut env.fx, "t-proxy-2", &serde_json::json!({"proxy": "t-proxy-2"}), env.now);
    env.end();
    env.c.proxy_deployed(&mut env.fx, "t-proxy-2", Err("no capacity".into()), env.now);
    env.end();
    env.now += crate::cluster::proxies::PROXY_RETRY;
    for s in env.sessions.values() {
        env.c.agent_heard(*s, env.now, None);
    }
    env.c.tick(&mut env.fx, env.now);
    let fx = env.end();
    assert!(
        fx.commands.iter().any(|c| matches!(c, Command::DeployProxy { proxy, .. } if proxy == "t-proxy-2")),
        "{:?}",
        fx.commands
    );
    assert_eq!(env.state(&names[0]).0, "Online");
}
