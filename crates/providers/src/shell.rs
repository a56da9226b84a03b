//! What the providers that run commands elsewhere (`ssh`, `slurm`) share: quoting for a POSIX
//! shell, and the tag that tells this head node's things on a shared machine from another's.

use std::path::Path;

/// Quotes `text` as one word for a POSIX shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `th-` and 12 hex digits of the SHA-256 of the head node's state directory: the same across
/// restarts of one head node, different between two head nodes on one machine.
pub fn cluster_tag(state_dir: &Path) -> String {
    use sha2::Digest;
    let digest =
        sha2::Sha256::digest(std::path::absolute(state_dir).unwrap_or_default().as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("th-{hex}")
}

/// The directory setting `key` (`remote_dir`, `work_dir`) as the shell on the other side gets it:
/// absolute or from the login directory, of characters no shell reads specially, without `..`.
pub fn checked_dir(key: &str, value: Option<&str>) -> thunderhead_core::Result<String> {
    let dir = value.unwrap_or(".thunderhead").trim().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-".contains(c);
    if dir.is_empty() || !dir.chars().all(safe) || dir.split('/').any(|p| p == "..") {
        return Err(thunderhead_core::Error::invalid(format!(
            "{key} \"{}\" is not allowed (use letters, digits, '/', '.', '_' and '-', without '..', e.g. .thunderhead)",
            thunderhead_core::text::escape(&dir)
        )));
    }
    Ok(dir)
}

/// `call`, tried again twice (after 1 s, then 2 s) while it fails in a way that may pass (a host
/// or controller that is busy or unreachable for a moment); `what` names it in the debug log.
pub async fn retrying<T, F, Fut>(what: &str, call: F) -> crate::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    let mut delay = std::time::Duration::from_secs(1);
    for _ in 0..2 {
        match call().await {
            Err(e) if e.transient => {
                tracing::debug!(error = %e, "{what} failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    call().await
}

/// The last line of `text` that says something, for an error message.
pub fn last_line(text: &str) -> String {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_tag_is_stable_for_a_directory_and_differs_between_directories() {
        assert_eq!(cluster_tag(Path::new("/srv/th")), cluster_tag(Path::new("/srv/th")));
        assert_ne!(cluster_tag(Path::new("/srv/th")), cluster_tag(Path::new("/srv/th2")));
        assert_eq!(cluster_tag(Path::new("/x")).len(), 15);
    }
}
