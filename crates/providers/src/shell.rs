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
