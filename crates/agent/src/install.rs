//! Installing packages on a node: each is fetched from the head node into the agent's work
//! directory, checked against its size and SHA-256, and unpacked into
//! `TASK_ROOT/packages/NAME` (the task root is the work directory unless `--task-root` says
//! otherwise), replacing the version before.

use crate::archive::{self, Limits};
use crate::link::Head;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use thunderhead_proto::{BLOB_PATH, InstallResult, PackageRef};

/// Where a node's packages are installed; tasks see it as `THUNDERHEAD_PACKAGE_ROOT` (and
/// `CCP_PACKAGE_ROOT`, for scripts written for HPC Pack).
pub fn package_root(task_root: &Path) -> PathBuf {
    task_root.join("packages")
}

/// Installs every package into `package_root`, one after another; a failure of one does not
/// stop the others.
pub fn install_all(head: &Head, work_dir: &Path, package_root: &Path, packages: Vec<PackageRef>) -> Vec<InstallResult> {
    packages
        .into_iter()
        .map(|p| {
            let error = install(head, work_dir, package_root, &p).err();
            if let Some(e) = &error {
                tracing::warn!(package = %p.name, version = p.version, error = %e, "package not installed");
            }
            InstallResult { name: p.name, version: p.version, error }
        })
        .collect()
}

fn install(head: &Head, work_dir: &Path, package_root: &Path, p: &PackageRef) -> Result<(), String> {
    let downloads = work_dir.join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| format!("cannot create {}: {e}", downloads.display()))?;
    let file = downloads.join(format!("{}-{}", p.name, p.version));
    let result = crate::staging::with_retries(|| download(head, p, &file)).and_then(|()| {
        let into = package_root.join(&p.name);
        std::fs::create_dir_all(package_root).map_err(|e| e.to_string())?;
        archive::unpack(&file, &into, Limits::default()).map_err(|e| e.to_string())
    });
    let _ = std::fs::remove_file(&file);
    result
}

fn download(head: &Head, p: &PackageRef, dest: &Path) -> Result<(), crate::staging::Failure> {
    let fail = |retry, message| crate::staging::Failure { retry, message };
    fetch_package(head, p, dest).map_err(|(retry, m)| fail(retry, m))
}

fn fetch_package(head: &Head, p: &PackageRef, dest: &Path) -> Result<(), (bool, String)> {
    // Newer head nodes name where a package lives; older ones serve it by key.
    let url = if p.location.is_empty() {
        format!("{}{BLOB_PATH}/{}", head.base, p.key)
    } else {
        format!("{}{BLOB_PATH}?location={}", head.base, crate::staging::encode_query(&p.location))
    };
    let mut response = head.http.get(&url).call().map_err(|e| (true, format!("cannot fetch {url}: {e}")))?;
    if !response.status().is_success() {
        let status = response.status();
        return Err((status.is_server_error(), format!("fetching {} answered {status}", p.key)));
    }
    let mut reader = response.body_mut().as_reader();
    let mut out = std::fs::File::create(dest).map_err(|e| (false, format!("cannot write {}: {e}", dest.display())))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| (true, format!("the download of {} broke off: {e}", p.key)))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| (false, format!("cannot write {}: {e}", dest.display())))?;
    }
    let sha256: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if size != p.size || sha256 != p.sha256 {
        return Err((
            true,
            format!(
                "{} arrived damaged: {size} bytes with SHA-256 {sha256}, expected {} bytes with {}",
                p.key, p.size, p.sha256
            ),
        ));
    }
    Ok(())
}
