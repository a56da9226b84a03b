//! `thunderhead package`: application files installed on burst nodes.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::show;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::PathBuf;
use thunderhead_core::view::{NodeActionResult, PackageView};

#[derive(Subcommand)]
pub enum PackageCommand {
    /// Upload a zip or tar.gz file, or a directory (packed), as a new version
    Upload {
        path: PathBuf,
        /// Package name [default: the file's name without its extension]
        #[arg(long)]
        name: Option<String>,
        /// Only nodes of this template install it [default: every template's]
        #[arg(long)]
        template: Option<String>,
    },
    /// List packages (latest versions)
    List,
    /// Show every version of a package
    View { name: String },
    /// Download a package's file
    Download {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        /// Where to write it [default: the file's own name, here]
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Remove a package (every version, or one)
    Remove {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Install the current packages on a set's running nodes
    Install {
        #[arg(long)]
        template: String,
    },
}

pub fn run(c: &Client, command: PackageCommand, out: Output) -> Result<i32> {
    match command {
        PackageCommand::Upload { path, name, template } => {
            let packed;
            let (file, file_name) = if path.is_dir() {
                packed = tempfile::Builder::new().suffix(".tar.gz").tempfile()?;
                thunderhead_agent::archive::pack_dir(&path, packed.path())
                    .with_context(|| format!("cannot pack the directory {}", path.display()))?;
                let base = path.file_name().map_or("package".into(), |n| n.to_string_lossy().into_owned());
                (packed.path().to_path_buf(), format!("{base}.tar.gz"))
            } else {
                let n =
                    path.file_name().map(|n| n.to_string_lossy().into_owned()).context("give a file or a directory")?;
                (path.clone(), n)
            };
            let name = name.unwrap_or_else(|| {
                let stem = file_name.trim_end_matches(".tar.gz").trim_end_matches(".tgz").trim_end_matches(".zip");
                stem.to_string()
            });
            let path = ApiPath::new("packages").segment(&name).query("file", file_name).query_opt("template", template);
            let p: PackageView = c.put_file(&path, &file)?;
            out.one(&p, |p| {
                println!("uploaded package {} version {} ({} bytes, sha256 {})", p.name, p.version, p.size, p.sha256);
            });
        }
        PackageCommand::List => {
            let list: Vec<PackageView> = c.get(&ApiPath::new("packages"))?;
            out.list(&list, &["name", "version", "versions", "template", "size", "uploaded"], |p| {
                vec![
                    p.name.clone(),
                    p.version.to_string(),
                    p.versions.to_string(),
                    p.template.clone().unwrap_or_else(|| "(all)".into()),
                    p.size.to_string(),
                    show::time(Some(p.uploaded_at)),
                ]
            });
        }
        PackageCommand::View { name } => {
            let versions: Vec<PackageView> = c.get_data(&ApiPath::new("packages").segment(&name))?;
            out.list(&versions, &["version", "file", "size", "sha256", "uploaded"], |p| {
                vec![
                    p.version.to_string(),
                    p.file_name.clone(),
                    p.size.to_string(),
                    p.sha256.clone(),
                    show::time(Some(p.uploaded_at)),
                ]
            });
        }
        PackageCommand::Download { name, version, to } => {
            let versions: Vec<PackageView> = c.get(&ApiPath::new("packages").segment(&name))?;
            let chosen = match version {
                Some(v) => versions
                    .iter()
                    .find(|p| p.version == v)
                    .with_context(|| format!("package {name} has no version {v}"))?,
                None => versions
                    .first()
                    .with_context(|| format!("package {name} has no versions (see thunderhead package list)"))?,
            };
            let to = to.unwrap_or_else(|| PathBuf::from(&chosen.file_name));
            let n = c.download(
                &ApiPath::new("packages").segment(&name).segment("download").query("version", chosen.version),
                &to,
            )?;
            out.note(format_args!("downloaded {name} version {} to {} ({n} bytes)", chosen.version, to.display()));
        }
        PackageCommand::Remove { name, version } => {
            let path = ApiPath::new("packages").segment(&name).query_opt("version", version);
            let removed: Value = c.delete_json(&path)?;
            out.one(&removed, |removed| println!("removed package {name} versions {}", removed["removed"]));
        }
        PackageCommand::Install { template } => {
            let results: Vec<NodeActionResult> =
                c.post(&ApiPath::new("packages").segment("install"), &json!({"template": template}))?;
            out.list(&results, &["node", "result", "detail"], |r| {
                vec![r.node.clone(), if r.ok { "OK" } else { "SKIPPED" }.into(), r.message.clone()]
            });
            out.note("each node's log and `node list --json` (packages) show when the installation is done");
        }
    }
    Ok(0)
}
