//! Secrets at rest: provider credentials are sealed with AES-256-GCM under a key that the head
//! node creates in its state directory (`secret.key`, mode 0600) and that never leaves it.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const KEY_FILE: &str = "secret.key";

pub struct SecretKey {
    cipher: Aes256Gcm,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `path` readable by its owner only, with `bytes`, synced; refuses to replace a file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub use thunderhead_core::text::unhex;

impl SecretKey {
    /// Reads the key of `state_dir`, creating it on first start. A key file others can read
    /// is refused: it would unseal every stored credential.
    pub fn load_or_create(state_dir: &Path) -> Result<SecretKey, String> {
        let path = state_dir.join(KEY_FILE);
        let shown = path.display();
        let key = match std::fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "the key file {shown} can be read by others (mode {mode:o}); make it private: chmod 600 {shown}"
                    ));
                }
                let key = std::fs::read(&path).map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
                if key.len() != 32 {
                    return Err(format!(
                        "the key file {shown} is damaged (it must hold 32 bytes); restore it from a backup"
                    ));
                }
                key
            }
            Err(_) => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(|e| format!("cannot draw a random key: {e}"))?;
                write_private(&path, &key)?;
                key
            }
        };
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| format!("bad key: {e}"))?;
        Ok(SecretKey { cipher })
    }

    /// Seals `plain` as hex of a random nonce followed by the ciphertext.
    pub fn seal(&self, plain: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the system has randomness");
        let sealed = self.cipher.encrypt(&nonce.into(), plain).expect("sealing does not fail");
        format!("{}{}", hex(&nonce), hex(&sealed))
    }

    /// Opens what [`SecretKey::seal`] sealed; `None` if it was sealed with another key or altered.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let bytes = unhex(sealed)?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, body) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        self.cipher.decrypt(&nonce.into(), body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_same_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = key.seal(b"password123");
        assert!(!sealed.contains("password123") && !sealed.contains(&hex(b"password123")));
        assert_eq!(key.open(&sealed).as_deref(), Some(&b"password123"[..]));
        let again = SecretKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed).as_deref(), Some(&b"password123"[..]), "the key file is reused");
        let other = SecretKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(other.open(&sealed), None);
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        SecretKey::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretKey::load_or_create(dir.path()).err().unwrap();
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
    }
}
