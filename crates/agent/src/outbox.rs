//! Results waiting for the head node's acknowledgement, kept on disk so that an agent that
//! restarts, or a head node that restarts, loses none of them.
//!
//! The outbox is one append-only log, `outbox.log`: a line `R [results]` for each round of
//! results before they are sent, and a line `A [tasks]` for each acknowledgement. Reading it back
//! replays both, so the pending results are those never acknowledged. Appending costs one write
//! per round, with no file created or deleted per task; when the log passes
//! [`COMPACT_AT`] bytes it is rewritten with only the pending results and renamed into place.
//! Results an earlier build left in `batch-N.json` files are read into the log when it opens.
//!
//! The log is written but not synced: it survives the agent being killed (the kernel keeps it),
//! and a machine that loses power loses only results the head node has not acknowledged, whose
//! tasks the head node then runs again. The head node, which syncs every commit, is the record.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use thunderhead_proto::{TaskRef, TaskResult};

/// The log's size at which it is rewritten with only the pending results.
pub const COMPACT_AT: u64 = 4 << 20;
const LOG: &str = "outbox.log";

pub struct Outbox {
    path: PathBuf,
    file: File,
    len: u64,
    pending: Pending,
}

/// Pending results in the order they were written, and where each task's result is.
#[derive(Default)]
struct Pending {
    results: BTreeMap<u64, TaskResult>,
    by_task: HashMap<TaskRef, u64>,
    next: u64,
}

impl Pending {
    /// Replays one line of the log; false if it is torn.
    fn replay(&mut self, line: &[u8]) -> bool {
        match line.split_first() {
            Some((b'R', rest)) => match serde_json::from_slice::<Vec<TaskResult>>(rest) {
                Ok(results) => self.remember(results),
                Err(_) => return false,
            },
            Some((b'A', rest)) => match serde_json::from_slice::<Vec<TaskRef>>(rest) {
                Ok(tasks) => self.forget(&tasks),
                Err(_) => return false,
            },
            _ => return false,
        }
        true
    }

    fn remember(&mut self, results: Vec<TaskResult>) {
        for r in results {
            if let Some(old) = self.by_task.insert(r.task, self.next) {
                self.results.remove(&old);
            }
            self.results.insert(self.next, r);
            self.next += 1;
        }
    }

    fn forget(&mut self, tasks: &[TaskRef]) {
        for task in tasks {
            if let Some(n) = self.by_task.remove(task) {
                self.results.remove(&n);
            }
        }
    }
}

impl Outbox {
    /// Opens the outbox in `dir`, reading back the results of an earlier run.
    pub fn open(dir: &Path) -> std::io::Result<Outbox> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG);
        let mut pending = Pending::default();
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).split(b'\n') {
                // A line torn by a crash mid-write ends the log: its results were never sent.
                if !pending.replay(&line?) {
                    tracing::warn!(file = %path.display(), "the outbox log ends in a torn line; ignoring it");
                    break;
                }
            }
        }
        // Earlier builds kept a file per round, `batch-N.json`: their results join the log.
        let mut legacy: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let n = p.file_name()?.to_str()?.strip_prefix("batch-")?.strip_suffix(".json")?.parse().ok()?;
                Some((n, p))
            })
            .collect();
        legacy.sort();
        for (_, file) in &legacy {
            if let Some(results) = std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                pending.remember(results);
            }
        }
        // Start from a compact log, so a torn tail is never appended to.
        let (file, len) = write_compact(&path, &pending)?;
        for (_, old) in legacy {
            let _ = std::fs::remove_file(old);
        }
        Ok(Outbox { path, file, len, pending })
    }

    fn append(&mut self, tag: u8, json: Vec<u8>) -> std::io::Result<()> {
        let line = log_line(tag, &json);
        self.file.write_all(&line)?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Writes `results` as one round.
    pub fn push(&mut self, results: Vec<TaskResult>) -> std::io::Result<()> {
        self.append(b'R', serde_json::to_vec(&results).expect("results serialise"))?;
        self.pending.remember(results);
        Ok(())
    }

    /// Every result not yet acknowledged, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &TaskResult> {
        self.pending.results.values()
    }

    /// Forgets acknowledged results.
    pub fn ack(&mut self, tasks: &[TaskRef]) {
        let known: Vec<TaskRef> = tasks.iter().filter(|t| self.pending.by_task.contains_key(t)).copied().collect();
        if known.is_empty() {
            return;
        }
        self.pending.forget(&known);
        let written = self.append(b'A', serde_json::to_vec(&known).expect("tasks serialise"));
        let compacted = if self.len >= COMPACT_AT {
            write_compact(&self.path, &self.pending).map(|(file, len)| (self.file, self.len) = (file, len))
        } else {
            Ok(())
        };
        if let Err(e) = written.and(compacted) {
            // The acknowledged results would only be sent again, and acknowledged again.
            tracing::warn!(error = %e, "cannot record an acknowledgement in the outbox");
        }
    }

    /// The log's size in bytes.
    #[cfg(test)]
    fn log_len(&self) -> u64 {
        self.len
    }
}

/// One line of the log: its tag (`R` or `A`), then its JSON.
fn log_line(tag: u8, json: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(json.len() + 2);
    line.push(tag);
    line.extend_from_slice(json);
    line.push(b'\n');
    line
}

/// Writes a log holding only the pending results and renames it into place; returns it open for
/// appending, and its length.
fn write_compact(path: &Path, pending: &Pending) -> std::io::Result<(File, u64)> {
    let tmp = path.with_extension("log.new");
    let mut file = File::create(&tmp)?;
    let results: Vec<&TaskResult> = pending.results.values().collect();
    let mut len = 0;
    if !results.is_empty() {
        let line = log_line(b'R', &serde_json::to_vec(&results).expect("results serialise"));
        file.write_all(&line)?;
        len = line.len() as u64;
    }
    std::fs::rename(&tmp, path)?;
    Ok((file, len))
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

    fn pending(dir: &Path) -> Vec<u64> {
        Outbox::open(dir).unwrap().pending().map(|r| r.task.index).collect()
    }

    #[test]
    fn results_survive_a_restart_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.push(vec![result(1), result(2)]).unwrap();
        outbox.push(vec![result(3)]).unwrap();
        outbox.ack(&[result(1).task]);
        drop(outbox);
        assert_eq!(pending(dir.path()), [2, 3]);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.ack(&[result(2).task]);
        outbox.push(vec![result(4)]).unwrap();
        drop(outbox);
        assert_eq!(pending(dir.path()), [3, 4]);
    }

    #[test]
    fn results_an_earlier_build_left_in_batch_files_join_the_log() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("batch-7.json"), serde_json::to_vec(&[result(5)]).unwrap()).unwrap();
        std::fs::write(dir.path().join("batch-3.json"), serde_json::to_vec(&[result(4)]).unwrap()).unwrap();
        assert_eq!(pending(dir.path()), [4, 5], "oldest batch first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the batch files are gone, the log holds them");
        assert_eq!(pending(dir.path()), [4, 5]);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.push(vec![result(1)]).unwrap();
        drop(outbox);
        let mut log = std::fs::OpenOptions::new().append(true).open(dir.path().join(LOG)).unwrap();
        log.write_all(b"R [{\"task\":").unwrap();
        drop(log);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.push(vec![result(2)]).unwrap();
        drop(outbox);
        assert_eq!(pending(dir.path()), [1, 2]);
    }

    #[test]
    fn the_log_is_compacted_to_the_pending_results() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let mut index = 0;
        while outbox.log_len() < COMPACT_AT / 2 {
            index += 1;
            outbox.push(vec![result(index)]).unwrap();
            outbox.ack(&[result(index).task]);
        }
        outbox.push(vec![result(0)]).unwrap();
        for i in index + 1..index * 3 {
            outbox.push(vec![result(i)]).unwrap();
            outbox.ack(&[result(i).task]);
        }
        assert!(outbox.log_len() < COMPACT_AT, "compacted at {COMPACT_AT} bytes: {}", outbox.log_len());
        drop(outbox);
        assert_eq!(pending(dir.path()), [0], "the pending result outlives compaction");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "one log, no leftovers");
    }
}
