//! Results waiting for the head node's acknowledgement, kept on disk so that an agent that
//! restarts, or a head node that restarts, loses none of them.
//!
//! Each flush writes one file `batch-N.json` holding the results that ended together before they
//! are sent, and a file is deleted when every result in it has been acknowledged. The files are
//! written but not synced: they survive the agent being killed (the kernel keeps them), and a
//! machine that loses power loses only results the head node has not acknowledged, whose tasks
//! the head node then runs again. The head node, which syncs every commit, is the record; a sync
//! per batch here would cost a quarter of the agent's time on short tasks.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use thunderhead_proto::{TaskRef, TaskResult};

pub struct Outbox {
    dir: PathBuf,
    next: u64,
    /// Results per batch file, in order.
    batches: BTreeMap<u64, Vec<TaskResult>>,
}

impl Outbox {
    /// Opens the outbox in `dir`, reading back the results of an earlier run.
    pub fn open(dir: &Path) -> std::io::Result<Outbox> {
        std::fs::create_dir_all(dir)?;
        let mut batches = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(n) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("batch-"))
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Vec<TaskResult>>(&b).ok()) {
                Some(results) => {
                    batches.insert(n, results);
                }
                // A batch torn by a crash mid-write was never sent: its tasks rerun.
                None => {
                    tracing::warn!(file = %path.display(), "dropping an unreadable outbox batch");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let next = batches.keys().next_back().map_or(0, |n| n + 1);
        Ok(Outbox { dir: dir.to_path_buf(), next, batches })
    }

    /// Writes `results` as one batch.
    pub fn push(&mut self, results: Vec<TaskResult>) -> std::io::Result<()> {
        let n = self.next;
        self.next += 1;
        let path = self.dir.join(format!("batch-{n}.json"));
        let tmp = self.dir.join(format!("batch-{n}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&results).expect("results serialise"))?;
        // Renamed into place whole, so a batch is never read half written.
        std::fs::rename(&tmp, &path)?;
        self.batches.insert(n, results);
        Ok(())
    }

    /// Every result not yet acknowledged, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &TaskResult> {
        self.batches.values().flatten()
    }

    /// Forgets acknowledged results, deleting batches that are fully acknowledged.
    pub fn ack(&mut self, tasks: &[TaskRef]) {
        let acked: HashSet<&TaskRef> = tasks.iter().collect();
        let mut done = Vec::new();
        for (n, results) in &mut self.batches {
            results.retain(|r| !acked.contains(&r.task));
            if results.is_empty() {
                done.push(*n);
            }
        }
        for n in done {
            self.batches.remove(&n);
            let _ = std::fs::remove_file(self.dir.join(format!("batch-{n}.json")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(index: u64) -> TaskResult {
        TaskResult {
            task: TaskRef { job: 1, index, attempt: 1 },
            exit_code: Some(0),
            message: None,
            started_at: 1,
            ended_at: 2,
            stdout: format!("{index}\n"),
            stderr: String::new(),
            staging_error: None,
        }
    }

    #[test]
    fn results_survive_a_restart_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.push(vec![result(1), result(2)]).unwrap();
        outbox.push(vec![result(3)]).unwrap();
        outbox.ack(&[result(1).task]);
        drop(outbox);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let pending: Vec<u64> = outbox.pending().map(|r| r.task.index).collect();
        assert_eq!(pending, [1, 2, 3], "an ack only in memory does not delete a partly acked batch");
        outbox.ack(&[result(1).task, result(2).task]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        outbox.push(vec![result(4)]).unwrap();
        let pending: Vec<u64> = Outbox::open(dir.path()).unwrap().pending().map(|r| r.task.index).collect();
        assert_eq!(pending, [3, 4]);
    }
}
