//! Cancelling, requeueing and reserving jobs.

use super::*;

#[test]
fn canceling_a_job_cancels_its_running_tasks_on_their_agents() {
    let mut env = Env::new();
    env.online(1, "Small");
    let id = env.sweep("1-100", None, None, None);
    env.end();
    env.c.cancel_job(&mut env.fx, id, env.now).unwrap();
    let fx = env.end();
    assert!(fx.commands.iter().any(|c| matches!(c, Command::Cancel { tasks, .. } if tasks.len() == 2)));
    assert_eq!(env.job_counts(id).canceled, 100);
    assert!(env.c.cancel_job(&mut env.fx, id, env.now).unwrap_err().message.contains("already Canceled"));
}

#[test]
fn a_requeued_job_runs_its_failed_and_canceled_tasks_again_and_keeps_its_finished_ones() {
    let mut env = Env::new();
    let names = env.online(1, "Small");
    let id = env.sweep("1-100", None, None, None);
    let d = all_dispatches(&env.end());
    assert!(env.c.requeue_job(&mut env.fx, id, None, &[]).unwrap_err().message.contains("is Running"));
    env.finish(&names[0], &d[0], 0);
    env.finish(&names[0], &d[1], 3);
    env.end();
    let seen: Vec<(String, String)> =
        env.c.node_tasks(&names[0], None).unwrap().into_iter().map(|t| (t.id, t.state)).collect();
    let expect = [(3, "Running"), (4, "Running"), (2, "Failed"), (1, "Finished")];
    assert_eq!(seen, expect.map(|(i, s)| (format!("{id}.{i}"), s.to_string())), "running first, then newest first");
    env.c.cancel_job(&mut env.fx, id, env.now).unwrap();
    env.end();
    // The store holds rows for the failed task and the two canceled while running; the 96
    // canceled before they ran are only counted.
    let ended_at = env.c.job(id).unwrap().ended_at;
    let stale = env.c.requeue_job(&mut env.fx, id, None, &[(2, 1)]).unwrap_err();
    assert!(stale.message.contains("changed while its tasks were read"), "{}", stale.message);
    let view = env.c.requeue_job(&mut env.fx, id, ended_at, &[(2, 1), (3, 1), (4, 1)]).unwrap();
    assert_eq!((view.state.as_str(), view.tasks.queued, view.tasks.finished), ("Queued", 99, 1));
    assert_eq!(view.tasks.failed + view.tasks.canceled, 0);
    let again = all_dispatches(&env.end());
    assert_eq!((again[0].key.index, again[0].attempt), (2, 2), "the failed task goes first, as a new attempt");
    assert_eq!((again[1].key.index, again[1].attempt), (3, 2));
    let mut next = again;
    for _ in 0..200 {
        for d in &next {
            env.finish(&names[0], d, 0);
        }
        next = all_dispatches(&env.end());
    }
    assert_eq!(env.job_counts(id).finished, 100);
    let done = env.c.requeue_job(&mut env.fx, id, env.c.job(id).unwrap().ended_at, &[]).unwrap_err();
    assert!(done.message.contains("nothing to requeue"), "{}", done.message);
}

#[test]
fn a_reserved_job_id_is_used_once_and_survives_a_restart() {
    let mut env = Env::new();
    let id = env.c.reserve_job_id(&mut env.fx);
    env.end();
    let mut fx = Effects::default();
    let mut c = Cluster::restore(Config::default(), rules(), snapshot_of(&env.log), &mut fx, env.now);
    let sub =
        |reserved| JobSubmission { command: Some(vec!["true".into()]), reserved_id: reserved, ..Default::default() };
    let other = c.submit(&mut fx, sub(None), env.now).unwrap();
    assert!(other > id, "a reserved id is not handed out again after a restart");
    assert_eq!(c.submit(&mut fx, sub(Some(id)), env.now).unwrap(), id);
    let err = c.submit(&mut fx, sub(Some(id)), env.now).unwrap_err();
    assert!(err.message.contains("taken"), "{err}");
    assert!(c.submit(&mut fx, sub(Some(999)), env.now).is_err());
    assert!(c.submit(&mut fx, sub(Some(0)), env.now).is_err(), "job ids start at 1");
}
