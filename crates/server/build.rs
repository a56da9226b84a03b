//! Embeds the dashboard: every file of `web/` becomes an entry of `ASSETS` (name, text), so a
//! file added there is served without a list to keep up to date.

use std::fmt::Write;

fn main() {
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("web");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("crates/server/web holds the dashboard")
        .map(|e| e.expect("a readable directory").path())
        .filter(|p| p.is_file() && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    files.sort();
    let mut out = String::from("&[\n");
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("file names are UTF-8");
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    out.push_str("]\n");
    let target = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets it")).join("web_assets.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
