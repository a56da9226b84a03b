//! The **task user**: the Unix user an agent started as root runs its tasks as (`--run-as`), so
//! a task cannot read what only root may, such as the agent's node key or, on a head node's
//! machine, the head node's state directory.
//!
//! The task's process gets the user's id and primary group and no supplementary groups (the
//! standard library drops them when it changes the user of a process started by root). The
//! task's directory is given to the user once the agent has filled it; the directories above
//! it stay root's and must only be passable (`x`) by the user.

use crate::AgentError;
use nix::unistd::{Gid, Uid, User};
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

    /// Gives `dir` and everything in it to this user, never following a symbolic link, and
    /// closes `dir` to everyone else.
    pub fn give(&self, dir: &Path) -> std::io::Result<()> {
        self.give_tree(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }

    fn give_tree(&self, path: &Path) -> std::io::Result<()> {
        let (uid, gid) = (Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid)));
        nix::unistd::fchownat(nix::fcntl::AT_FDCWD, path, uid, gid, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if std::fs::symlink_metadata(path)?.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.give_tree(&entry?.path())?;
            }
        }
        Ok(())
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

/// Whether a user `uid` with primary group `gid` (and no other) may pass a directory of `mode`
/// owned by `owner` and `group`. Root passes every directory.
fn passable(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let bit = if uid == owner {
        0o100
    } else if gid == group {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
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
}
