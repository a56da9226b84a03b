//! Packages: application files uploaded to blob storage and installed on burst nodes, as
//! `hpcpack upload` and `hpcsync` did in 2011.
//!
//! Each upload of a name is a new version (1, 2, …). A node installs, for each package name, the
//! latest version — or the version its template pins — of packages uploaded for every template
//! and of those uploaded for its own.

use crate::{Error, Millis, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: u32,
    /// The uploaded file's name (`tool.tar.gz`, `app.zip`).
    pub file_name: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// `None` for packages every template installs.
    pub template: Option<String>,
    /// The blob store it lives in: its template's, or `None` for the head node's.
    #[serde(default)]
    pub store: Option<String>,
    pub uploaded_at: Millis,
}

impl Package {
    /// Where the package's file lives in its blob store.
    pub fn key(&self) -> String {
        format!("packages/{}/{}/{}", self.name, self.version, self.file_name)
    }

    /// The package's file as a location: a key of the head node's store, or a blob URI.
    pub fn location(&self) -> String {
        match &self.store {
            None => format!("{}{}", crate::access::LOCAL_STORE, self.key()),
            Some(uri) => {
                let (path, query) = uri.split_once('?').map_or((uri.as_str(), None), |(p, q)| (p, Some(q)));
                let joined = format!("{}/{}", path.trim_end_matches('/'), self.key());
                match query {
                    Some(q) => format!("{joined}?{q}"),
                    None => joined,
                }
            }
        }
    }
}

/// Checks a package name: it becomes a directory under the package root.
pub fn validate_package_name(name: &str) -> Result<()> {
    crate::template::validate_name("package", name)
}

/// Checks an uploaded file's name: a zip or tar.gz archive, a plain file name.
pub fn validate_file_name(name: &str) -> Result<()> {
    let plain = !name.is_empty() && !name.contains('/') && !name.starts_with('.') && name.len() <= 200;
    let archive = name.ends_with(".zip") || name.ends_with(".tar.gz") || name.ends_with(".tgz");
    if plain && archive {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "package file \"{name}\" is not a zip or tar.gz archive name (upload a .zip, .tar.gz or .tgz file, or a directory, which is packed)"
        )))
    }
}

pub use crate::access::job_area;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_in_a_template_store_is_located_by_uri() {
        let mut p = Package {
            name: "solver".into(),
            version: 2,
            file_name: "s.zip".into(),
            size: 1,
            sha256: String::new(),
            template: Some("t".into()),
            store: None,
            uploaded_at: 0,
        };
        assert_eq!(p.location(), "thunderhead:packages/solver/2/s.zip");
        p.store = Some("az://acct/cont?endpoint=http://x:1/acct".into());
        assert_eq!(p.location(), "az://acct/cont/packages/solver/2/s.zip?endpoint=http://x:1/acct");
    }

    #[test]
    fn file_names_must_be_archives() {
        validate_file_name("tool.tar.gz").unwrap();
        validate_file_name("app.zip").unwrap();
        for bad in ["tool.exe", "../x.zip", "", ".zip"] {
            let err = validate_file_name(bad).unwrap_err();
            assert!(err.message.contains("zip or tar.gz"), "{bad}: {err}");
        }
    }
}
