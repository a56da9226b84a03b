//! The scheduler: a pure function from a snapshot of demand and capacity to placements.
//!
//! Jobs are served in priority order (higher first, then the older job first). Each job's tasks
//! are spread one at a time across the nodes that can fit another of its tasks, so a sweep fills
//! every node evenly instead of piling onto the first. A job whose tasks fit nowhere does not
//! block lower-priority jobs that fit (backfill). Node capacity counts cores, including the
//! tasks an agent holds queued ahead of its free cores.

use crate::JobId;
use crate::job::Priority;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDemand {
    pub job: JobId,
    pub priority: Priority,
    pub cores_per_task: u32,
    /// Tasks ready to start.
    pub pending: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSlots {
    /// Cores the node may still be given (its capacity less what it holds).
    pub free_cores: u32,
    /// The node's own cores: the largest task it can run.
    pub cores: u32,
}

/// `count` tasks of `job` go to node number `node` of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub job: JobId,
    pub node: usize,
    pub count: u32,
}

/// Plans placements for `jobs` on `nodes`.
pub fn plan(jobs: &[JobDemand], nodes: &[NodeSlots]) -> Vec<Placement> {
    let mut order: Vec<&JobDemand> = jobs.iter().filter(|j| j.pending > 0).collect();
    order.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.job.cmp(&b.job)));
    let mut free: Vec<u32> = nodes.iter().map(|n| n.free_cores).collect();
    let mut placements = Vec::new();
    for job in order {
        let c = job.cores_per_task.max(1);
        let mut left = job.pending;
        let mut given = vec![0u32; nodes.len()];
        // Round-robin, one task per node per pass, over the nodes that fit one more task.
        let mut fitting: Vec<usize> = (0..nodes.len()).filter(|&i| free[i] >= c && nodes[i].cores >= c).collect();
        while left > 0 && !fitting.is_empty() {
            fitting.retain(|&i| {
                if left == 0 || free[i] < c {
                    return false;
                }
                free[i] -= c;
                given[i] += 1;
                left -= 1;
                free[i] >= c
            });
        }
        placements.extend(given.iter().enumerate().filter(|(_, n)| **n > 0).map(|(node, &count)| Placement {
            job: job.job,
            node,
            count,
        }));
    }
    debug_assert!(placements.iter().all(|p| p.count > 0));
    debug_assert!(jobs.iter().all(|j| {
        let placed: u64 = placements.iter().filter(|p| p.job == j.job).map(|p| p.count as u64).sum();
        placed <= j.pending
    }));
    debug_assert!(nodes.iter().enumerate().all(|(i, n)| {
        let used: u64 = placements
            .iter()
            .filter(|p| p.node == i)
            .map(|p| {
                p.count as u64 * jobs.iter().find(|j| j.job == p.job).map_or(1, |j| j.cores_per_task.max(1)) as u64
            })
            .sum();
        used <= n.free_cores as u64
    }));
    placements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(job: JobId, priority: Priority, cores: u32, pending: u64) -> JobDemand {
        JobDemand { job, priority, cores_per_task: cores, pending }
    }

    fn placed(p: &[Placement], job: JobId) -> u32 {
        p.iter().filter(|x| x.job == job).map(|x| x.count).sum()
    }

    #[test]
    fn higher_priority_goes_first_then_fifo() {
        let nodes = [NodeSlots { free_cores: 3, cores: 8 }];
        let jobs =
            [demand(1, Priority::Normal, 1, 5), demand(2, Priority::Highest, 1, 2), demand(3, Priority::Normal, 1, 5)];
        let p = plan(&jobs, &nodes);
        assert_eq!((placed(&p, 2), placed(&p, 1), placed(&p, 3)), (2, 1, 0));
    }

    #[test]
    fn capacity_and_cores_per_task_are_respected() {
        let nodes = [NodeSlots { free_cores: 4, cores: 8 }, NodeSlots { free_cores: 3, cores: 8 }];
        let p = plan(&[demand(1, Priority::Normal, 2, 100)], &nodes);
        assert_eq!(p, vec![Placement { job: 1, node: 0, count: 2 }, Placement { job: 1, node: 1, count: 1 }]);
    }

    #[test]
    fn a_task_larger_than_a_node_never_goes_there_even_with_room_queued_ahead() {
        let nodes = [NodeSlots { free_cores: 4, cores: 2 }, NodeSlots { free_cores: 4, cores: 4 }];
        let p = plan(&[demand(1, Priority::Normal, 3, 5)], &nodes);
        assert_eq!(p, vec![Placement { job: 1, node: 1, count: 1 }]);
    }

    #[test]
    fn tasks_spread_evenly_across_nodes() {
        let nodes = [NodeSlots { free_cores: 4, cores: 8 }; 4];
        let p = plan(&[demand(1, Priority::Normal, 1, 8)], &nodes);
        assert!(p.iter().all(|x| x.count == 2), "{p:?}");
    }

    #[test]
    fn a_job_that_fits_nowhere_does_not_block_smaller_ones() {
        let nodes = [NodeSlots { free_cores: 2, cores: 8 }];
        let p = plan(&[demand(1, Priority::Highest, 8, 1), demand(2, Priority::Lowest, 1, 5)], &nodes);
        assert_eq!((placed(&p, 1), placed(&p, 2)), (0, 2));
    }

    /// Planning again on the snapshot that results from applying a plan places nothing more.
    #[test]
    fn planning_on_its_own_output_changes_nothing() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..500 {
            let nodes: Vec<NodeSlots> =
                (0..next(6)).map(|_| NodeSlots { free_cores: next(10) as u32, cores: 1 + next(4) as u32 }).collect();
            let mut jobs: Vec<JobDemand> = (0..next(5))
                .map(|j| demand(j + 1, Priority::ALL[next(5) as usize], 1 + next(3) as u32, next(20)))
                .collect();
            let p = plan(&jobs, &nodes);
            let mut after = nodes.clone();
            for x in &p {
                let job = jobs.iter_mut().find(|j| j.job == x.job).unwrap();
                job.pending -= x.count as u64;
                after[x.node].free_cores -= x.count * job.cores_per_task;
            }
            assert_eq!(plan(&jobs, &after), vec![], "nodes {nodes:?} jobs {jobs:?}");
        }
    }
}
