//! Package archives: packing a directory, and unpacking zip and tar.gz files safely.
//!
//! Unpacking refuses, naming the entry: paths that are absolute or climb out of the target
//! (`..`), links that point outside it, and archives that would unpack to more than
//! [`Limits::max_bytes`] or hold more than [`Limits::max_entries`] entries (counted while
//! unpacking, so a lying header does not help). A refused archive leaves nothing behind.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 16 * 1024 * 1024 * 1024, max_entries: 1_000_000 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("archive entry \"{entry}\" {rule}; the archive was not unpacked")]
    Refused { entry: String, rule: String },
    #[error("the archive is not a zip or tar.gz file ({0})")]
    Format(String),
    #[error("the archive unpacks to more than {0} bytes, the limit; the archive was not unpacked")]
    TooLarge(u64),
    #[error("the archive holds more than {0} entries, the limit; the archive was not unpacked")]
    TooMany(u64),
    #[error("cannot write {path}: {reason}")]
    Io { path: String, reason: String },
}

type Result<T> = std::result::Result<T, ArchiveError>;

fn io(path: &Path, e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// The relative path an entry may be written to, or why not.
fn safe_path(entry: &str) -> Result<PathBuf> {
    let refuse = |rule: &str| ArchiveError::Refused { entry: entry.to_string(), rule: rule.to_string() };
    let path = Path::new(entry);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("climbs out of the target directory with \"..\"")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is an absolute path")),
        }
    }
    Ok(out)
}

/// Refuses writing entry `name` at `rel` (relative to `root`) through a link an earlier entry
/// made: each step of its path, itself included, must not be a link. A link's own target may
/// lie anywhere inside the root, but no chain of links leads an entry out of it.
fn no_link_on_the_way(root: &Path, rel: &Path, name: &str) -> Result<()> {
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ArchiveError::Refused {
                    entry: name.to_string(),
                    rule: format!(
                        "would be written through the link \"{}\" an earlier entry made",
                        at.strip_prefix(root).unwrap_or(&at).display()
                    ),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// Whether a link at `at` (relative to the root) pointing to `target` stays inside the root.
fn link_stays_inside(at: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = at.parent().map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Counts what is unpacked against the limits.
struct Budget {
    limits: Limits,
    bytes: u64,
    entries: u64,
}

impl Budget {
    fn entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooMany(self.limits.max_entries));
        }
        Ok(())
    }

    /// Copies `from` into a new file at `dest`, counting every byte.
    fn copy(&mut self, from: &mut impl Read, dest: &Path, mode: Option<u32>) -> Result<()> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let mut out = File::create(dest).map_err(|e| io(dest, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).map_err(|e| ArchiveError::Format(e.to_string()))?;
            if n == 0 {
                break;
            }
            self.bytes += n as u64;
            if self.bytes > self.limits.max_bytes {
                return Err(ArchiveError::TooLarge(self.limits.max_bytes));
            }
            out.write_all(&buf[..n]).map_err(|e| io(dest, e))?;
        }
        if let Some(mode) = mode {
            // No one but the agent may change a package: tasks of other jobs run it. No setuid
            // or setgid bit either.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode & 0o755)).map_err(|e| io(dest, e))?;
        }
        Ok(())
    }
}

fn unpack_tar_gz(file: File, into: &Path, budget: &mut Budget) -> Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = archive.entries().map_err(|e| ArchiveError::Format(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Format(e.to_string()))?;
        budget.entry()?;
        let name = entry.path().map_err(|e| ArchiveError::Format(e.to_string()))?.to_string_lossy().into_owned();
        let rel = safe_path(&name)?;
        no_link_on_the_way(into, &rel, &name)?;
        let dest = into.join(&rel);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| io(&dest, e))?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| ArchiveError::Format(e.to_string()))?
                .ok_or_else(|| ArchiveError::Refused {
                    entry: name.clone(),
                    rule: "is a link without a target".into(),
                })?
                .into_owned();
            let inside = if kind.is_hard_link() {
                safe_path(&target.to_string_lossy()).is_ok()
            } else {
                link_stays_inside(&rel, &target)
            };
            if !inside {
                return Err(ArchiveError::Refused {
                    entry: name,
                    rule: format!("is a link to \"{}\", outside the target directory", target.display()),
                });
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            if kind.is_hard_link() {
                let original = safe_path(&target.to_string_lossy())?;
                no_link_on_the_way(into, &original, &name)?;
                std::fs::hard_link(into.join(original), &dest).map_err(|e| io(&dest, e))?;
            } else {
                std::os::unix::fs::symlink(&target, &dest).map_err(|e| io(&dest, e))?;
            }
        } else if kind.is_file() {
            let mode = entry.header().mode().ok();
            budget.copy(&mut entry, &dest, mode)?;
        }
        // Other kinds (devices, fifos) are skipped: a package has no use for them.
    }
    Ok(())
}

fn unpack_zip(file: File, into: &Path, budget: &mut Budget) -> Result<()> {
    let mut archive = zip::ZipArchive::new(file).map_err(|e| ArchiveError::Format(e.to_string()))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| ArchiveError::Format(e.to_string()))?;
        budget.entry()?;
        let name = entry.name().map_err(|e| ArchiveError::Format(e.to_string()))?.to_string();
        let rel = safe_path(&name)?;
        no_link_on_the_way(into, &rel, &name)?;
        let dest = into.join(&rel);
        let mode = entry.unix_mode();
        let is_link = mode.is_some_and(|m| m & 0o170000 == 0o120000);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| io(&dest, e))?;
        } else if is_link {
            let mut target = String::new();
            entry.read_to_string(&mut target).map_err(|e| ArchiveError::Format(e.to_string()))?;
            if !link_stays_inside(&rel, Path::new(&target)) {
                return Err(ArchiveError::Refused {
                    entry: name,
                    rule: format!("is a link to \"{target}\", outside the target directory"),
                });
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| io(&dest, e))?;
        } else {
            budget.copy(&mut entry, &dest, mode)?;
        }
    }
    Ok(())
}

/// Unpacks `archive` (zip or tar.gz, told apart by their first bytes) into `into`, replacing
/// what was there only once everything unpacked.
pub fn unpack(archive: &Path, into: &Path, limits: Limits) -> Result<()> {
    let mut magic = [0u8; 4];
    let mut file = File::open(archive).map_err(|e| io(archive, e))?;
    let read = file.read(&mut magic).map_err(|e| io(archive, e))?;
    let file = File::open(archive).map_err(|e| io(archive, e))?;
    let partial = into.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| io(&partial, e))?;
    let mut budget = Budget { limits, bytes: 0, entries: 0 };
    let outcome = match &magic[..read] {
        [0x50, 0x4b, ..] => unpack_zip(file, &partial, &mut budget),
        [0x1f, 0x8b, ..] => unpack_tar_gz(file, &partial, &mut budget),
        _ => Err(ArchiveError::Format("it starts with neither a zip nor a gzip signature".into())),
    };
    if let Err(e) = outcome {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    let old = into.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if into.exists() {
        std::fs::rename(into, &old).map_err(|e| io(into, e))?;
    }
    std::fs::rename(&partial, into).map_err(|e| io(into, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Packs a directory into a tar.gz file, its contents at the archive's top.
pub fn pack_dir(dir: &Path, out: &Path) -> std::io::Result<()> {
    let file = File::create(out)?;
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()?.finish()?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(path: &Path, entries: &[(&str, &[u8])], links: &[(&str, &str)]) {
        let file = File::create(path).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_entry_type(tar::EntryType::Regular);
            // Names are set raw so that hostile ones can be written.
            let raw = h.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }

    /// Every path under `root`, relative to it.
    fn tree(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(path.clone());
                }
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
        out.sort();
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// Hostile names, links and damaged bytes: an archive unpacks whole or is refused, never
        /// panics, and writes nothing outside its target directory.
        #[test]
        fn any_archive_unpacks_inside_its_directory_or_is_refused(
            names in proptest::collection::vec("(\\.\\./|/|\\./|[a-c]/){0,3}[a-c.]{1,3}", 1..4),
            links in proptest::collection::vec(("[a-c]{1,2}", "(\\.\\./|/|[a-c]/){0,3}[a-c]{0,2}"), 0..3),
            damage in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..4),
            cut in proptest::option::of(proptest::prelude::any::<usize>()),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let archive = dir.path().join("a.tar.gz");
            let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), b"x" as &[u8])).collect();
            let links: Vec<(&str, &str)> = links.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            tar_gz(&archive, &entries, &links);
            let mut bytes = std::fs::read(&archive).unwrap();
            for (at, byte) in damage {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            std::fs::write(&archive, &bytes).unwrap();
            let into = dir.path().join("box/into");
            std::fs::create_dir_all(dir.path().join("box")).unwrap();
            let outcome = unpack(&archive, &into, Limits { max_bytes: 1 << 20, max_entries: 100 });
            let outside: Vec<PathBuf> =
                tree(dir.path()).into_iter().filter(|p| !p.starts_with("box/into") && p != Path::new("box") && p != Path::new("a.tar.gz")).collect();
            proptest::prop_assert!(outside.is_empty(), "{outcome:?} wrote outside: {outside:?}");
            if outcome.is_err() {
                proptest::prop_assert!(!into.exists(), "a refused archive leaves nothing");
            }
        }
    }

    #[test]
    fn a_package_file_unpacks_writable_by_its_owner_only_and_without_setuid() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("tool"), std::fs::Permissions::from_mode(0o6777)).unwrap();
        let archive = dir.path().join("p.tar.gz");
        pack_dir(&src, &archive).unwrap();
        let into = dir.path().join("installed");
        unpack(&archive, &into, Limits::default()).unwrap();
        let mode = std::fs::metadata(into.join("tool")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "tasks run a package but cannot change it");
    }

    #[test]
    fn a_packed_directory_unpacks_with_its_executable_bit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(src.join("data.txt"), "x").unwrap();
        let archive = dir.path().join("p.tar.gz");
        pack_dir(&src, &archive).unwrap();
        let into = dir.path().join("installed");
        unpack(&archive, &into, Limits::default()).unwrap();
        assert_eq!(std::fs::read_to_string(into.join("data.txt")).unwrap(), "x");
        let mode = std::fs::metadata(into.join("bin/tool")).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);
    }

    #[test]
    fn a_zip_unpacks_and_replaces_the_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("p.zip");
        let mut z = zip::ZipWriter::new(File::create(&archive).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("app/run.sh", opts).unwrap();
        z.write_all(b"echo zip").unwrap();
        z.finish().unwrap();
        let into = dir.path().join("installed");
        std::fs::create_dir_all(&into).unwrap();
        std::fs::write(into.join("stale"), "old").unwrap();
        unpack(&archive, &into, Limits::default()).unwrap();
        assert_eq!(std::fs::read_to_string(into.join("app/run.sh")).unwrap(), "echo zip");
        assert!(!into.join("stale").exists());
    }

    /// A case name, file entries, symlink entries, and the refusal expected.
    type HostileCase<'a> = (&'a str, &'a [(&'a str, &'a [u8])], &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn hostile_archives_are_refused_by_entry_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("installed");
        let cases: [HostileCase; 4] = [
            ("climb", &[("../../etc/evil", b"x")], &[], "\"../../etc/evil\" climbs out"),
            ("absolute", &[("/etc/evil", b"x")], &[], "\"/etc/evil\" is an absolute path"),
            (
                "link",
                &[],
                &[("escape", "../../../../etc/passwd")],
                "\"escape\" is a link to \"../../../../etc/passwd\"",
            ),
            ("abslink", &[], &[("abs", "/etc/passwd")], "outside the target directory"),
        ];
        for (name, entries, links, expected) in cases {
            let archive = dir.path().join(format!("{name}.tar.gz"));
            tar_gz(&archive, entries, links);
            let err = unpack(&archive, &into, Limits::default()).unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
            assert!(!into.exists() && !into.with_extension("partial").exists(), "{name}: nothing is left");
        }
        let archive = dir.path().join("inside-link.tar.gz");
        tar_gz(&archive, &[("lib/real.so", b"x")], &[("lib/alias.so", "real.so")]);
        unpack(&archive, &into, Limits::default()).expect("a link that stays inside is fine");
    }

    #[test]
    fn no_entry_is_written_through_a_chain_of_links() {
        // `d -> .` and `e -> d/d/d/../../..` each look inside on their own; together `e` is the
        // directory above the target, and `e/x` would land outside it.
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("chain.tar.gz");
        let file = File::create(&archive).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
        for (name, target) in [("d", "."), ("e", "d/d/d/../../..")] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "e/x", &b"x"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
        let into = dir.path().join("box/installed");
        std::fs::create_dir_all(dir.path().join("box")).unwrap();
        let err = unpack(&archive, &into, Limits::default()).unwrap_err().to_string();
        assert!(err.contains("\"e/x\"") && err.contains("through the link"), "{err}");
        assert!(!dir.path().join("box/x").exists() && !dir.path().join("x").exists());
    }

    #[test]
    fn a_bomb_is_stopped_by_the_byte_limit_while_unpacking() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("bomb.tar.gz");
        let zeros = vec![0u8; 4 * 1024 * 1024];
        tar_gz(&archive, &[("zeros", &zeros)], &[]);
        assert!(std::fs::metadata(&archive).unwrap().len() < 64 * 1024, "compresses well");
        let err =
            unpack(&archive, &dir.path().join("x"), Limits { max_bytes: 1024 * 1024, max_entries: 10 }).unwrap_err();
        assert_eq!(err, ArchiveError::TooLarge(1024 * 1024));
        let err = unpack(&dir.path().join("nope"), &dir.path().join("y"), Limits::default()).unwrap_err();
        assert!(err.to_string().contains("cannot write") || err.to_string().contains("nope"));
    }
}
