//! Availability schedules.

use super::*;

#[test]
fn a_scheduled_set_starts_before_its_window_takes_work_in_it_drains_and_stops_at_its_end() {
    const MIN: Millis = 60_000;
    let mut env = Env::new();
    let schedule = crate::template::AvailabilityInput {
        availability: Some("schedule".into()),
        windows: Some(vec!["Mon 10:00-11:00".into()]),
        timezone: Some("UTC".into()),
        lead_time: Some("10m".into()),
        drain_before_end: Some("5m".into()),
    };
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { availability: schedule, ..Default::default() }, env.now)
        .unwrap();
    let names = env.add(2, "Small");
    let monday_10 = "2026-11-23T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis;
    let state = |env: &Env| names.iter().map(|n| env.state(n).0).collect::<Vec<_>>();

    env.now = monday_10 - 15 * MIN;
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(state(&env), ["NotDeployed", "NotDeployed"]);

    env.now = monday_10 - 9 * MIN;
    env.c.tick(&mut env.fx, env.now);
    assert_eq!(deploys(&env.end()).len(), 2, "started within the lead time");
    for n in &names {
        env.c.deployed(&mut env.fx, n, Ok(serde_json::json!({"n": n})), env.now);
        env.connect(n, 1).unwrap();
    }
    env.end();
    assert_eq!(state(&env), ["Offline", "Offline"], "deployed early, no work before the window");

    env.now = monday_10 + MIN;
    for s in env.sessions.values() {
        env.c.agent_heard(*s, env.now, None);
    }
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(state(&env), ["Online", "Online"]);

    env.now = monday_10 + 56 * MIN;
    for s in env.sessions.values() {
        env.c.agent_heard(*s, env.now, None);
    }
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(state(&env), ["Offline", "Offline"], "drained (nothing was running)");

    env.now = monday_10 + 60 * MIN;
    for s in env.sessions.values() {
        env.c.agent_heard(*s, env.now, None);
    }
    env.c.tick(&mut env.fx, env.now);
    env.end();
    assert_eq!(state(&env), ["Stopping", "Stopping"], "stopped at the window's end");
}

#[test]
fn stopping_a_scheduled_set_by_hand_inside_its_window_sticks_until_the_next_window() {
    const MIN: Millis = 60_000;
    let mut env = Env::new();
    let schedule = crate::template::AvailabilityInput {
        windows: Some(vec!["Daily 10:00-11:00".into()]),
        lead_time: Some("0m".into()),
        ..Default::default()
    };
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { availability: schedule, ..Default::default() }, env.now)
        .unwrap();
    let names = env.add(1, "Small");
    let day_10 = "2026-11-23T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis;
    env.now = day_10 + MIN;
    env.c.tick(&mut env.fx, env.now);
    assert_eq!(deploys(&env.end()).len(), 1);
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Stopping");
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    env.end();
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!(1), Ok(()), env.now);
    env.now += 10 * MIN;
    env.c.tick(&mut env.fx, env.now);
    assert!(deploys(&env.end()).is_empty(), "the person's stop holds inside the window");
    assert_eq!(env.state(&names[0]).0, "NotDeployed");
    env.now = day_10 + 61 * MIN;
    env.c.tick(&mut env.fx, env.now);
    assert!(deploys(&env.end()).is_empty());
    env.now = day_10 + 24 * 60 * MIN + MIN;
    env.c.tick(&mut env.fx, env.now);
    assert_eq!(deploys(&env.end()).len(), 1, "the next window starts the set again");
}

#[test]
fn a_policy_that_missed_a_boundary_while_the_head_node_was_down_acts_again() {
    const MIN: Millis = 60_000;
    let mut env = Env::new();
    let schedule = crate::template::AvailabilityInput {
        windows: Some(vec!["Daily 10:00-11:00".into()]),
        lead_time: Some("0m".into()),
        ..Default::default()
    };
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { availability: schedule, ..Default::default() }, env.now)
        .unwrap();
    let names = env.add(1, "Small");
    let day_10 = "2026-11-23T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis;
    env.now = day_10 + MIN;
    env.c.tick(&mut env.fx, env.now);
    env.end();
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    env.end();
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!(1), Ok(()), env.now);
    env.end();
    // No tick for a day: the next day's window is a new phase even though it reads the same.
    env.now = day_10 + 24 * 60 * MIN + MIN;
    env.c.tick(&mut env.fx, env.now);
    assert_eq!(deploys(&env.end()).len(), 1);
}

#[test]
fn a_person_stopping_a_scheduled_set_is_remembered_across_a_restart() {
    const MIN: Millis = 60_000;
    let mut env = Env::new();
    let names = env.add(1, "Small");
    let day_10 = "2026-11-23T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis;
    env.now = day_10 + MIN;
    let schedule = crate::template::AvailabilityInput {
        windows: Some(vec!["Daily 10:00-11:00".into()]),
        lead_time: Some("0m".into()),
        ..Default::default()
    };
    env.c
        .edit_template(&mut env.fx, "t", TemplateEdit { availability: schedule, ..Default::default() }, env.now)
        .unwrap();
    assert_eq!(deploys(&env.end()).len(), 1);
    env.act(NodeAction::Stop, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    env.end();
    env.c.removed(&mut env.fx, &names[0], &serde_json::json!(1), Ok(()), env.now);
    env.end();
    let mut fx = Effects::default();
    let later = env.now + 5 * MIN;
    let mut c = Cluster::restore(Config::default(), rules(), snapshot_of(&env.log), &mut fx, later);
    c.tick(&mut fx, later);
    c.end_batch(&mut fx, later);
    assert!(deploys(&fx).is_empty(), "the restarted head node keeps the person's stop");
    assert_eq!(c.node(&names[0]).unwrap().state, "NotDeployed");
}
