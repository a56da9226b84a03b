//! Which files an agent may fetch and upload through the head node: those its node's tasks
//! name, and package files. A node certificate is no pass to other jobs' files.

use super::Cluster;
use crate::access::FileUse;
use crate::{Error, Result};

/// The path and options of a location, apart (`s3://b/k?endpoint=…` → `s3://b/k`, `endpoint=…`).
fn split(location: &str) -> (&str, &str) {
    location.split_once('?').unwrap_or((location, ""))
}

/// Whether `location` is a file below `prefix` (a task's output prefix), as an agent joins
/// them: the prefix's path, then a relative path without `..`, then the prefix's options.
fn below(location: &str, prefix: &str) -> bool {
    let ((path, options), (prefix_path, prefix_options)) = (split(location), split(prefix));
    let Some(rest) = path.strip_prefix(prefix_path) else { return false };
    options == prefix_options
        && !rest.is_empty()
        && !rest.starts_with('/')
        && rest.split('/').all(|p| !p.is_empty() && p != ".." && p != ".")
}

impl Cluster {
    /// Refuses an agent of `node` reading (`FileUse::Read`) or writing `location` unless a task
    /// the node holds names it: an input source to read, a file below an output prefix to write.
    /// Package files may be read by every agent.
    pub fn agent_may_use(&self, node: &str, location: &str, use_: FileUse) -> Result<()> {
        let refused = || {
            Error::forbidden(format!(
                "node {node} holds no task that {} \"{}\"; an agent reaches only its own tasks' files",
                match use_ {
                    FileUse::Read => "reads",
                    FileUse::Write => "writes",
                },
                crate::text::escape(location)
            ))
        };
        let node = self.nodes.get(node).ok_or_else(refused)?;
        if use_ == FileUse::Read && self.packages.values().any(|p| p.location() == location) {
            return Ok(());
        }
        let named = node.running.iter().any(|key| {
            let Some(job) = self.jobs.get(&key.job) else { return false };
            let staging = job.staging.for_task(key.job, key.index);
            match use_ {
                FileUse::Read => staging.inputs.iter().any(|i| i.source == location),
                FileUse::Write => {
                    staging.outputs.iter().filter_map(|o| o.prefix.as_deref()).any(|prefix| below(location, prefix))
                }
            }
        });
        if named { Ok(()) } else { Err(refused()) }
    }
}

#[cfg(test)]
mod tests {
    use super::below;

    #[test]
    fn a_file_below_a_prefix_stays_below_it() {
        assert!(below("thunderhead:jobs/4/1/out.csv", "thunderhead:jobs/4/1/"));
        assert!(below("thunderhead:jobs/4/1/a/b.csv", "thunderhead:jobs/4/1/"));
        assert!(below("s3://b/r1/out.txt?endpoint=http://x:9", "s3://b/r1/?endpoint=http://x:9"));
        assert!(below("thunderhead:results/r-out.csv", "thunderhead:results/r-"));
        for (location, prefix) in [
            ("thunderhead:jobs/4/1/../../5/x", "thunderhead:jobs/4/1/"),
            ("thunderhead:jobs/4/1/", "thunderhead:jobs/4/1/"),
            ("thunderhead:jobs/5/x", "thunderhead:jobs/4/1/"),
            ("s3://b/r1/out.txt?endpoint=http://evil", "s3://b/r1/?endpoint=http://x:9"),
            ("thunderhead:jobs/4/1//x", "thunderhead:jobs/4/1/"),
        ] {
            assert!(!below(location, prefix), "{location} below {prefix}");
        }
    }
}
