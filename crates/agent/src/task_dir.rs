//! Where a task runs: a directory the agent makes afresh for it, empty, and removes when the
//! task has ended; and the task's output files in it, whose tails its result holds.
//!
//! A task that stages no files runs in a *slot* directory, one of a few names reused from task
//! to task; a task that stages files gets a directory *of its own*, named after it, removed
//! after its outputs are up. Either way nothing of a task, not even its output files, is left
//! once its result is taken, and no task finds anything of another.

use std::path::{Path, PathBuf};
use thunderhead_proto::OUTPUT_TAIL_BYTES;

/// A task's directory (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskDir {
    Slot(PathBuf),
    Own(PathBuf),
}

impl TaskDir {
    pub(crate) fn path(&self) -> &Path {
        match self {
            TaskDir::Slot(p) | TaskDir::Own(p) => p,
        }
    }
}

/// Whether a task's directory was made and filled with its inputs before the task starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staged {
    Yes,
    No,
}

/// The slot directories: those free for the next task that stages no files, and how many were
/// ever made (each has its own name).
#[derive(Default)]
pub(crate) struct Slots {
    free: Vec<PathBuf>,
    made: u32,
}

impl Slots {
    /// A free slot in `tasks_dir`, or the name of a new one.
    pub(crate) fn take(&mut self, tasks_dir: &Path) -> PathBuf {
        self.free.pop().unwrap_or_else(|| {
            self.made += 1;
            tasks_dir.join(format!("slot-{}", self.made))
        })
    }

    /// A task is done with its directory: it is removed, everything the task left in it too
    /// (its output files included: its result holds their tails), so a task that wrote much
    /// leaves no disk used. A slot's name is free for the next task; a slot of tasks of the
    /// agent's own user (`reused`) is emptied rather than removed.
    pub(crate) fn release(&mut self, dir: TaskDir, reused: bool) {
        match dir {
            TaskDir::Own(path) => {
                let _ = std::fs::remove_dir_all(path);
            }
            TaskDir::Slot(path) if reused => match empty_slot(&path) {
                Ok(()) => self.free.push(path),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot empty a task directory; not reusing it")
                }
            },
            TaskDir::Slot(path) => match remove_dir(&path) {
                Ok(()) => self.free.push(path),
                // A slot that cannot be removed is not reused.
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a task directory; not reusing it")
                }
            },
        }
    }
}

/// Makes `dir` afresh for a task: whatever is there goes (never following a link), and a new,
/// empty directory of the agent's (0700) takes its place, in `tasks/`, which only the agent may
/// write to. So nothing an earlier task left, nor a link planted by a process of the task user,
/// is ever in a task's directory; and the agent may give the directory to the task user
/// ([`crate::task_user::TaskUser::give`]): no one could have swapped it.
pub(crate) fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    remove_dir(dir)?;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

/// Removes a directory and everything in it, without following links; one already gone is
/// no error.
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Empties a reused slot once its task has ended: everything the task left goes, and its output
/// files (whose tails its result holds) are cut to nothing, so a task that wrote much leaves no
/// disk used.
fn empty_slot(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if (name == "stdout" || name == "stderr") && kind.is_file() {
            if entry.metadata()?.len() > 0 {
                std::fs::OpenOptions::new().write(true).open(entry.path())?.set_len(0)?;
            }
        } else if kind.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// An output file of a slot reused by tasks of the agent's own user, emptied (0600; a link is
/// not followed).
pub(crate) fn reused_output_file(dir: &Path, name: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(dir.join(name))
}

/// A new, empty output file of a task (0600, the agent's): whatever was at its name goes, and
/// a link planted there is neither followed nor written through.
pub(crate) fn output_file(dir: &Path, name: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path)
}

/// A task's standard output and error files, open for reading their tails.
pub(crate) struct OutputFiles {
    pub(crate) stdout: std::fs::File,
    pub(crate) stderr: std::fs::File,
}

impl OutputFiles {
    /// The tails of standard output and error.
    pub(crate) fn tails(&self) -> (String, String) {
        (tail(&self.stdout), tail(&self.stderr))
    }
}

/// The last `OUTPUT_TAIL_BYTES` of a file, as text. Read at an offset: the file shares its
/// position with the task's descriptor.
fn tail(file: &std::fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(OUTPUT_TAIL_BYTES as u64);
    let mut bytes = vec![0; (len - from) as usize];
    let mut read = 0;
    while read < bytes.len() {
        match file.read_at(&mut bytes[read..], from + read as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    bytes.truncate(read);
    String::from_utf8_lossy(&bytes).into_owned()
}
