//! **Strays**: processes a task leaves running after it ends, out of the agent's sight if they
//! left the task's process group (`setsid`, `setpgid`, a double fork into a new session).
//!
//! Every process a task starts descends from the agent, a child subreaper: when a process's
//! parent dies, the process is re-parented to the agent. So a task's processes are, at any
//! time, either below a living process of the task or **children of the agent**. The agent's
//! children are its running tasks' **leaders** (the processes it started; each leads its
//! task's process group) and **orphans**. The rule: an orphan that is not in the process group
//! of a running task is a stray, and is killed. An orphan in a running task's group belongs to
//! that task and ends with it (the agent kills the group when the task ends).
//!
//! Killing strays in rounds ends every process of an ended task: a killed process's children
//! are re-parented to the agent before it becomes a zombie, and are found in a later round.
//! The rounds are over when one is [`settled`]. The price of the rule: a process of a
//! still-running task that left its group *and* lost its parent is a stray too, and is killed
//! when any task of the agent ends.
//!
//! This module decides ([`survey`], [`settled`]) and reads `/proc` ([`agent_children`]); the
//! reaper kills, holding its lock so that no task starts and no child is reaped meanwhile.

use std::collections::HashSet;

/// One process, as its `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// Ended, waiting to be reaped: nothing to kill, and its children are already re-parented.
    pub zombie: bool,
}

/// What one look at the agent's children found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Round {
    /// The processes to kill: every live child of the agent that neither leads a running task
    /// nor is in the process group of one (a task's group is its leader's pid).
    pub strays: Vec<i32>,
    /// The children that have ended and are not reaped yet.
    pub zombies: Vec<i32>,
}

/// Sorts the children of `agent` among `procs`, given the pids of the running tasks' leaders.
pub(crate) fn survey(agent: i32, procs: &[ProcStat], leaders: &HashSet<i32>) -> Round {
    let children = procs.iter().filter(|p| p.ppid == agent && p.pid != agent);
    let (zombies, live): (Vec<&ProcStat>, Vec<&ProcStat>) = children.partition(|p| p.zombie);
    Round {
        strays: live
            .iter()
            .filter(|p| !leaders.contains(&p.pid) && !leaders.contains(&p.pgid))
            .map(|p| p.pid)
            .collect(),
        zombies: zombies.iter().map(|p| p.pid).collect(),
    }
}

/// Whether `round` proves there is no stray left, given the round before it: it found no
/// stray, and every zombie it found was one already in the round before. A child that became a
/// zombie while a round was read may have handed its own children to the agent after the list
/// of children was read, so they may be missing from that round; the next round's list is read
/// after, and has them.
pub(crate) fn settled(previous: Option<&Round>, round: &Round) -> bool {
    round.strays.is_empty() && round.zombies.iter().all(|z| previous.is_some_and(|p| p.zombies.contains(z)))
}

/// Parses `/proc/PID/stat`: `PID (COMM) STATE PPID PGRP SESSION …`, where COMM may hold
/// spaces and parentheses of its own (the last `)` ends it).
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(ProcStat { pid, ppid, pgid, zombie: matches!(state, "Z" | "X") })
}

/// The children of this process, but for those in `known` (running tasks' leaders, which the
/// caller knows already). They are listed by the `children` files of this process's main thread
/// (where orphans are re-parented to) and of the `threads` that spawned tasks
/// (`/proc/self/task/TID/children`); failing that, of every thread; on a kernel without those
/// files, by looking at every process. Processes that end while being read are left out.
pub(crate) fn agent_children(threads: &HashSet<i32>, known: &HashSet<i32>) -> Vec<ProcStat> {
    let me = std::process::id() as i32;
    let main_and_spawners: Vec<i32> = std::iter::once(me).chain(threads.iter().copied().filter(|t| *t != me)).collect();
    let pids = listed_by(&main_and_spawners)
        .or_else(|| {
            // A thread that ended handed its children to another.
            let all = std::fs::read_dir("/proc/self/task").ok()?.flatten();
            listed_by(&all.filter_map(|t| t.file_name().to_str()?.parse().ok()).collect::<Vec<_>>())
        })
        .unwrap_or_else(|| {
            let all = std::fs::read_dir("/proc").into_iter().flatten().flatten();
            all.filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
        });
    let stat = |pid: &i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|t| parse_stat(&t));
    pids.iter().filter(|p| !known.contains(p)).filter_map(stat).collect()
}

/// The children of these threads of this process, or `None` if one cannot be read.
fn listed_by(threads: &[i32]) -> Option<Vec<i32>> {
    let mut pids = Vec::new();
    for tid in threads {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")).ok()?;
        pids.extend(text.split_ascii_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    Some(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: i32 = 100;

    fn proc(pid: i32, ppid: i32, pgid: i32) -> ProcStat {
        ProcStat { pid, ppid, pgid, zombie: false }
    }

    fn strays(procs: &[ProcStat], leaders: &HashSet<i32>) -> Vec<i32> {
        survey(AGENT, procs, leaders).strays
    }

    #[test]
    fn an_orphan_that_left_its_ended_task_s_group_is_a_stray() {
        // Task 200 ended; its `setsid sleep` (300) was re-parented to the agent.
        let procs = [proc(300, AGENT, 300), proc(301, 300, 300)];
        assert_eq!(strays(&procs, &HashSet::new()), [300], "its child is found once it is orphaned");
    }

    #[test]
    fn running_tasks_and_their_groups_are_spared() {
        let leaders = HashSet::from([200, 210]);
        let procs = [
            proc(200, AGENT, 200),
            proc(210, AGENT, 210),
            // Orphaned inside a running task's group: that task's, ended with it.
            proc(211, AGENT, 210),
            // Left task 200's group and lost its parent: a stray, even though 200 runs on.
            proc(205, AGENT, 205),
            // Left a group but its parent lives: not the agent's child, not seen yet.
            proc(206, 200, 206),
            // The ended task's group, orphaned: killed with the group, and again here.
            proc(220, AGENT, 219),
        ];
        assert_eq!(strays(&procs, &leaders), [205, 220]);
    }

    #[test]
    fn zombies_other_processes_and_the_agent_itself_are_never_strays() {
        let procs = [
            ProcStat { pid: 300, ppid: AGENT, pgid: 300, zombie: true },
            proc(400, 1, 400),
            proc(AGENT, 1, AGENT),
            proc(500, 7, 500),
        ];
        let round = survey(AGENT, &procs, &HashSet::new());
        assert_eq!(round, Round { strays: vec![], zombies: vec![300] });
    }

    #[test]
    fn with_no_task_running_every_live_child_is_a_stray() {
        let procs = [proc(200, AGENT, 200), proc(201, AGENT, 200)];
        assert_eq!(strays(&procs, &HashSet::new()), [200, 201]);
    }

    #[test]
    fn the_rounds_are_over_when_one_finds_no_stray_and_no_new_zombie() {
        let round = |strays: &[i32], zombies: &[i32]| Round { strays: strays.to_vec(), zombies: zombies.to_vec() };
        assert!(settled(None, &round(&[], &[])), "nothing to kill, nothing handed over");
        assert!(!settled(None, &round(&[300], &[])), "a stray was just killed");
        // A zombie may have handed over children after the list was read: look once more.
        assert!(!settled(None, &round(&[], &[300])));
        assert!(settled(Some(&round(&[], &[300])), &round(&[], &[300])));
        assert!(!settled(Some(&round(&[], &[300])), &round(&[], &[300, 301])), "a new zombie");
        assert!(settled(Some(&round(&[300], &[])), &round(&[], &[])), "the killed were reaped");
    }

    #[test]
    fn stat_lines_parse_whatever_the_command_s_name() {
        let line = "4242 (sleep) S 100 4242 4242 0 -1 4194560 98 0 0 0 0 0 0 0 20 0 1 0 1234 5677056 129";
        assert_eq!(parse_stat(line), Some(proc(4242, 100, 4242)));
        // A name may hold spaces and parentheses: only the last `)` ends it.
        let line = "77 (a) S 1 2 (x) Z 100 76 76 0 -1 0";
        assert_eq!(parse_stat(line), Some(ProcStat { pid: 77, ppid: 100, pgid: 76, zombie: true }));
        assert_eq!(parse_stat("77 (sh) R"), None);
        assert_eq!(parse_stat(""), None);
    }
}
