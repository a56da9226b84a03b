//! Staging a task's files: inputs fetched into its working directory before it starts, outputs
//! uploaded after it ends. Every transfer goes through the head node, which holds the blob
//! credentials and uses them when the transfer happens, so a long task never outlives them.

use crate::link::Head;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn url(base: &str, location: &str) -> String {
    format!("{base}{}?location={}", thunderhead_proto::BLOB_PATH, encode_query(location))
}

fn error_of(response: &mut ureq::http::Response<ureq::Body>) -> String {
    let text = response.body_mut().read_to_string().unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| format!("the head node answered {}", response.status()))
}

/// A failed transfer, and whether trying again may help.
pub(crate) struct Failure {
    pub retry: bool,
    pub message: String,
}

/// Whether an answer of the head node is worth trying again: it could not reach the store, or
/// was busy.
fn transient(status: ureq::http::StatusCode) -> bool {
    status.is_server_error() || status == ureq::http::StatusCode::CONFLICT
}

/// Runs a transfer up to three times, waiting 1 s and then 2 s after transient failures.
pub(crate) fn with_retries(mut attempt: impl FnMut() -> Result<(), Failure>) -> Result<(), String> {
    let mut delay = std::time::Duration::from_secs(1);
    for n in 1..=3 {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(f) if f.retry && n < 3 => {
                tracing::warn!(error = %f.message, "transfer failed; trying again");
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(f) => return Err(f.message),
        }
    }
    unreachable!("the last attempt returns")
}

fn fetch_one(head: &Head, source: &str, dest: &Path) -> Result<(), Failure> {
    let fail = |retry, message| Failure { retry, message };
    let mut response = head
        .http
        .get(url(&head.base, source))
        .call()
        .map_err(|e| fail(true, format!("input {source} cannot be fetched: {e}")))?;
    if !response.status().is_success() {
        let retry = transient(response.status());
        return Err(fail(retry, format!("input {source} cannot be fetched: {}", error_of(&mut response))));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(dest)
        .map_err(|e| fail(false, format!("cannot write {}: {e}", dest.display())))?;
    std::io::copy(&mut response.body_mut().as_reader(), &mut file)
        .map_err(|e| fail(true, format!("input {source} broke off while it was fetched: {e}")))?;
    Ok(())
}

/// Fetches every input into `dir`, a directory the agent has just made and the task cannot
/// reach yet; the first that cannot be fetched is the error. The files and the directories
/// made for them are the agent's and readable by the task (0644 and 0755): the task may
/// delete, rename or copy them, but not write into them.
pub fn fetch_inputs(head: &Head, dir: &Path, inputs: &[(String, String)]) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    for (source, local) in inputs {
        // The head node checks this too.
        let inside = Path::new(local).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(format!("input {source} names {local}, which is not a path inside the task's directory"));
        }
        let dest = dir.join(local);
        if let Some(parent) = dest.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        with_retries(|| fetch_one(head, source, &dest))?;
    }
    Ok(())
}

/// Whether `path` (relative, `/`-separated) matches `pattern`: `*` matches within a directory,
/// `**` across directories, `?` one character.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            [b'*', b'*', rest @ ..] => {
                (0..=s.len()).any(|i| go(rest.strip_prefix(b"/").unwrap_or(rest), &s[i..]) || go(rest, &s[i..]))
            }
            [b'*', rest @ ..] => (0..=s.len()).take_while(|i| *i == 0 || s[i - 1] != b'/').any(|i| go(rest, &s[i..])),
            [b'?', rest @ ..] => !s.is_empty() && s[0] != b'/' && go(rest, &s[1..]),
            [c, rest @ ..] => !s.is_empty() && s[0] == *c && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

/// A prefix with a path appended, before any `?options` of the prefix's URI.
fn join_location(prefix: &str, rel: &str) -> String {
    match prefix.split_once('?') {
        Some((path, query)) => format!("{path}{rel}?{query}"),
        None => format!("{prefix}{rel}"),
    }
}

fn files_under(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files_under(root, &path, out),
            Ok(t) if t.is_file() => {
                if let Ok(rel) = path.strip_prefix(root) {
                    out.push(rel.to_path_buf());
                }
            }
            _ => {}
        }
    }
}

/// Opens the regular file `rel` under `dir` without following a symbolic link anywhere below
/// `dir`: a task's directory is the task's, which may have put links in it (to files only the
/// agent may read) or swapped a file for one after it was listed.
fn open_beneath(dir: &Path, rel: &Path) -> std::io::Result<std::fs::File> {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::Mode;
    let parts: Vec<Component> = rel.components().collect();
    let mut at: std::os::fd::OwnedFd = std::fs::File::open(dir)?.into();
    for (i, part) in parts.iter().enumerate() {
        let Component::Normal(name) = part else {
            return Err(std::io::Error::other("not a path inside the task's directory"));
        };
        // The file itself is opened without waiting (a FIFO would block), the directories on
        // the way as directories only.
        let kind = if i + 1 == parts.len() { OFlag::O_NONBLOCK } else { OFlag::O_DIRECTORY };
        at = openat(&at, *name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | kind, Mode::empty())?;
    }
    let file = std::fs::File::from(at);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Uploads the files of `dir` that match each output's glob under its prefix, keeping their
/// relative names. Returns how many were uploaded, or the first failure.
pub fn upload_outputs(head: &Head, dir: &Path, outputs: &[(String, String)]) -> Result<usize, String> {
    let mut files = Vec::new();
    files_under(dir, dir, &mut files);
    files.sort();
    let mut uploaded = 0;
    for (glob, prefix) in outputs {
        for rel in &files {
            let rel = rel.to_string_lossy();
            if !glob_match(glob, &rel) {
                continue;
            }
            let location = join_location(prefix, &rel);
            with_retries(|| {
                let fail = |retry, message| Failure { retry, message };
                let file = open_beneath(dir, Path::new(rel.as_ref()))
                    .map_err(|e| fail(false, format!("cannot read {rel}: {e}")))?;
                let mut response = head
                    .http
                    .put(url(&head.base, &location))
                    .send(file)
                    .map_err(|e| fail(true, format!("output {rel} cannot be uploaded to {location}: {e}")))?;
                if !response.status().is_success() {
                    let retry = transient(response.status());
                    let reason = error_of(&mut response);
                    return Err(fail(retry, format!("output {rel} cannot be uploaded to {location}: {reason}")));
                }
                let mut sink = Vec::new();
                let _ = response.body_mut().as_reader().read_to_end(&mut sink);
                Ok(())
            })?;
            uploaded += 1;
        }
    }
    Ok(uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell_with_double_stars() {
        assert!(glob_match("*.csv", "out.csv"));
        assert!(!glob_match("*.csv", "sub/out.csv"));
        assert!(glob_match("**/*.csv", "sub/deep/out.csv"));
        assert!(glob_match("**", "a/b/c"));
        assert!(glob_match("out?.txt", "out7.txt"));
        assert!(!glob_match("out?.txt", "out17.txt"));
        assert!(glob_match("results/*", "results/a.bin"));
        assert!(!glob_match("results/*", "results/x/a.bin"));
    }

    #[test]
    fn paths_go_before_a_uri_s_options() {
        assert_eq!(join_location("s3://b/r1/?endpoint=http://x:9", "out.txt"), "s3://b/r1/out.txt?endpoint=http://x:9");
        assert_eq!(join_location("thunderhead:jobs/1/1/", "a/b.txt"), "thunderhead:jobs/1/1/a/b.txt");
    }

    #[test]
    fn an_output_is_read_through_no_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let (task, secret) = (dir.path().join("task"), dir.path().join("secret"));
        std::fs::create_dir_all(task.join("sub")).unwrap();
        std::fs::write(&secret, "only the agent may read this").unwrap();
        std::fs::write(task.join("sub/out.txt"), "result").unwrap();
        std::os::unix::fs::symlink(&secret, task.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path(), task.join("up")).unwrap();
        let mut got = String::new();
        open_beneath(&task, Path::new("sub/out.txt")).unwrap().read_to_string(&mut got).unwrap();
        assert_eq!(got, "result");
        assert!(open_beneath(&task, Path::new("link.txt")).is_err(), "a link to a file is not followed");
        assert!(open_beneath(&task, Path::new("up/secret")).is_err(), "a link to a directory is not followed");
        assert!(open_beneath(&task, Path::new("../secret")).is_err());
        assert!(open_beneath(&task, Path::new("sub")).is_err(), "a directory is no output");
    }

    #[test]
    fn locations_are_encoded_for_the_query() {
        assert_eq!(encode_query("s3://b/k?endpoint=http://x:9"), "s3%3A//b/k%3Fendpoint%3Dhttp%3A//x%3A9");
    }
}
