//! The **task user**: the Unix user an agent started as root runs its tasks as (`--run-as`), so
//! a task cannot read what only root may, such as the agent's node key or, on a head node's
//! machine, the head node's state directory.
//!
//! The task's process gets the user's id and primary group and no supplementary groups (the
//! standard library drops them when it changes the user of a process started by root).
//!
//! The agent makes each task's directory afresh, as root, fills it (staged inputs, which stay
//! root's and readable: files 0644, directories 0755) and then gives the user that one
//! directory ([`TaskUser::give`]), taking it back when the task has ended and has outputs to
//! upload ([`TaskUser::take_back`]); it never changes the owner of anything else. The
//! directories above it stay root's and must only be passable (`x`) by the user.

use crate::AgentError;
use nix::unistd::User;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TaskUser {
    /// Looks `name` up in the user database. Only root may run tasks as another user.
    pub fn resolve(name: &str) -> Result<TaskUser, AgentError> {
        let user = User::from_name(name)
            .map_err(|e| AgentError::Setup(format!("cannot look up the user \"{name}\" (--run-as): {e}")))?
            .ok_or_else(|| {
                AgentError::Setup(format!("there is no user \"{name}\" on this machine (--run-as names a Unix user)"))
            })?;
        let me = nix::unistd::geteuid();
        if !me.is_root() && user.uid != me {
            return Err(AgentError::Setup(format!(
                "only an agent running as root can run tasks as \"{name}\" (--run-as); this one runs as user id {me}"
            )));
        }
        Ok(TaskUser { name: name.to_string(), uid: user.uid.as_raw(), gid: user.gid.as_raw() })
    }

    /// Gives the directory `dir` to this user and closes it to everyone else (0700), changing
    /// the owner of that one directory through a handle opened without following a link.
    ///
    /// `dir` must be one the agent has just made, in a directory only the agent may write to,
    /// so that no one could have swapped it since; nothing inside it changes owner. The agent
    /// never changes the owner of a path a task could have touched: a task could swap a
    /// directory on that path for a link (to `/etc`, say) while the agent walks it.
    pub fn give(&self, dir: &Path) -> std::io::Result<()> {
        let handle = open_directory(dir)?;
        let owner = handle.metadata()?.uid();
        let me = nix::unistd::geteuid().as_raw();
        if owner != me {
            return Err(std::io::Error::other(format!(
                "{} belongs to user id {owner}, not to the agent ({me}); it is not given to \"{}\"",
                dir.display(),
                self.name
            )));
        }
        std::os::unix::fs::fchown(&handle, Some(self.uid), Some(self.gid))?;
        handle.set_permissions(std::fs::Permissions::from_mode(0o700))
    }

    /// Takes a task's directory back from this user once the task has ended and its processes
    /// are gone: the directory becomes the agent's (0700), so that no process of this user
    /// (another task's) can change the task's outputs while the agent reads them. Through a
    /// handle opened without following a link, on a directory in one only the agent may write
    /// to: it is the task's directory, whatever the task did. What is inside keeps its owner.
    pub fn take_back(&self, dir: &Path) -> std::io::Result<()> {
        let handle = open_directory(dir)?;
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        std::os::unix::fs::fchown(&handle, Some(uid), Some(gid))?;
        handle.set_permissions(std::fs::Permissions::from_mode(0o700))
    }

    /// The first directory from the root down to `dir` through which this user could replace
    /// `dir` or change what it holds, with its owner and mode, or `None`. Above `dir`, a sticky
    /// directory the user may write to (as `/tmp`) is safe; `dir` itself must not be writable
    /// at all (else the user could make the agent's `tasks/` or `packages/` before it does).
    /// Root, as a task user, has nothing to be kept from.
    pub fn can_change(&self, dir: &Path) -> Option<(PathBuf, u32, u32)> {
        if self.uid == 0 {
            return None;
        }
        // The directories on the path as given (who may change a link on it is who may change
        // the directory the link is in) and on the path the links lead to.
        let given = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let real = std::fs::canonicalize(&given).unwrap_or_else(|_| given.clone());
        let mut ancestors: Vec<&Path> = given.ancestors().chain(real.ancestors()).collect();
        ancestors.reverse();
        ancestors.into_iter().find_map(|a| {
            let meta = std::fs::symlink_metadata(a).ok().filter(|m| m.is_dir())?;
            let sticky_ok = a != given && a != real;
            changeable(meta.mode(), meta.uid(), meta.gid(), self.uid, self.gid, sticky_ok)
                .then(|| (a.to_path_buf(), meta.uid(), meta.mode() & 0o7777))
        })
    }

    /// The first directory from the root down to `dir` that this user may not pass, with its
    /// mode, or `None` if the user reaches `dir`.
    pub fn blocked_on(&self, dir: &Path) -> Option<(PathBuf, u32)> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut ancestors: Vec<&Path> = dir.ancestors().collect();
        ancestors.reverse();
        ancestors.into_iter().find_map(|a| {
            let meta = std::fs::metadata(a).ok()?;
            (!passable(meta.mode(), meta.uid(), meta.gid(), self.uid, self.gid))
                .then(|| (a.to_path_buf(), meta.mode() & 0o7777))
        })
    }
}

/// Opens the directory `dir` itself: a link at its name is not followed.
fn open_directory(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_NOFOLLOW;
    std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(dir)
}

/// Whether a user `uid` with primary group `gid` (and no other) may pass a directory of `mode`
/// owned by `owner` and `group`. Root passes every directory.
fn passable(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    uid == 0 || mode & class_bits(owner, group, uid, gid) & 0o111 != 0
}

/// Whether a user `uid` with primary group `gid` (and no other) may change what a directory of
/// `mode` owned by `owner` and `group` holds: its owner may (it can change the mode), and so
/// may a user with write permission, unless the directory is sticky (as `/tmp`) and
/// `sticky_ok`: then the user may add entries but not rename or remove anyone else's.
fn changeable(mode: u32, owner: u32, group: u32, uid: u32, gid: u32, sticky_ok: bool) -> bool {
    let writable = mode & class_bits(owner, group, uid, gid) & 0o222 != 0;
    uid == owner || (writable && !(sticky_ok && mode & 0o1000 != 0))
}

/// The permission bits (`rwx` of the owner, group or others) that apply to a user.
fn class_bits(owner: u32, group: u32, uid: u32, gid: u32) -> u32 {
    if uid == owner {
        0o700
    } else if gid == group {
        0o070
    } else {
        0o007
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_passes_a_directory_by_the_bits_of_the_first_class_it_belongs_to() {
        // Others may pass, the owner and group not: the owner is refused.
        assert!(!passable(0o001, 10, 20, 10, 99));
        assert!(passable(0o001, 10, 20, 11, 99));
        assert!(passable(0o711, 0, 0, 65534, 65534));
        assert!(!passable(0o700, 0, 0, 65534, 65534));
        assert!(passable(0o710, 0, 65534, 65534, 65534));
        assert!(!passable(0o701, 0, 65534, 65534, 65534), "the group's bits rule a member of the group");
        assert!(passable(0o000, 5, 5, 0, 0), "root passes everything");
    }

    #[test]
    fn a_user_changes_a_directory_it_owns_or_may_write_to_unless_it_is_sticky_above_the_task_root() {
        const NOBODY: u32 = 65534;
        assert!(!changeable(0o711, 0, 0, NOBODY, NOBODY, false), "root's task root");
        assert!(changeable(0o700, NOBODY, 0, NOBODY, NOBODY, true), "its own, whatever the mode");
        assert!(changeable(0o777, 0, 0, NOBODY, NOBODY, false));
        assert!(changeable(0o775, 0, NOBODY, NOBODY, NOBODY, true), "by its group");
        assert!(!changeable(0o755, 0, NOBODY, NOBODY, NOBODY, true));
        assert!(!changeable(0o1777, 0, 0, NOBODY, NOBODY, true), "/tmp above the task root");
        assert!(changeable(0o1777, 0, 0, NOBODY, NOBODY, false), "a sticky task root the user may add to");
    }
}
