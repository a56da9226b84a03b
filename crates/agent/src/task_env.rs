//! What a task finds in its environment: exactly the variables listed in [`TASK_ENV`], nothing
//! of the agent's own environment (which may hold a join token, or, for an agent a head node
//! started, whatever the head node was started with).
//!
//! A task's variables come from three places:
//! - the **assignment**: the head node's variables of the task (`THUNDERHEAD_JOB_ID`,
//!   `THUNDERHEAD_TASK_ID`, `THUNDERHEAD_TASK_ATTEMPT`, `THUNDERHEAD_NODE_NAME` and, for sweeps,
//!   `THUNDERHEAD_SWEEP_INDEX`), and any a job sets for its tasks;
//! - the **agent**: where the node's packages are (`THUNDERHEAD_PACKAGE_ROOT`, and
//!   `CCP_PACKAGE_ROOT` for scripts written for HPC Pack);
//! - the **base**: `PATH` (the agent's, else [`DEFAULT_PATH`]), `HOME` (the task's working
//!   directory) and, when the agent has them, `LANG`, `LC_ALL` and `TZ`.

use std::path::Path;

/// Variables the agent passes on from its own environment, when they are set there.
pub const PASSED_ON: &[&str] = &["LANG", "LC_ALL", "TZ"];

/// A task's `PATH` when the agent has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Every variable a task of a job that sets none of its own may see.
pub const TASK_ENV: &[&str] = &[
    "THUNDERHEAD_JOB_ID",
    "THUNDERHEAD_TASK_ID",
    "THUNDERHEAD_TASK_ATTEMPT",
    "THUNDERHEAD_NODE_NAME",
    "THUNDERHEAD_SWEEP_INDEX",
    "THUNDERHEAD_PACKAGE_ROOT",
    "CCP_PACKAGE_ROOT",
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
];

/// The whole environment of a task running in `dir`, given the assignment's variables, the
/// node's package root and a lookup of the agent's own variables. The assignment's variables
/// replace the base's, and the package root replaces the assignment's: an assignment cannot
/// move it.
pub fn task_env(
    assigned: &[(String, String)],
    packages: &Path,
    dir: &Path,
    agent_var: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env = Vec::with_capacity(assigned.len() + 7);
    let path = agent_var("PATH").filter(|p| !p.is_empty()).unwrap_or_else(|| DEFAULT_PATH.to_string());
    set(&mut env, "PATH", path);
    set(&mut env, "HOME", dir.display().to_string());
    for name in PASSED_ON {
        if let Some(value) = agent_var(name) {
            set(&mut env, name, value);
        }
    }
    for (name, value) in assigned {
        set(&mut env, name, value.clone());
    }
    let packages = packages.display().to_string();
    set(&mut env, "THUNDERHEAD_PACKAGE_ROOT", packages.clone());
    set(&mut env, "CCP_PACKAGE_ROOT", packages);
    env
}

/// The file a task's program names, found in the task's own `PATH` as `execvp` would find it
/// (relative `PATH` entries from the task's directory `cwd`); a name with a `/` is taken as it is,
/// and one found nowhere is left for the start to report. Found here, the process can be started
/// with `posix_spawn`: a program looked up in a `PATH` of the child's own makes the standard library
/// fork the agent instead, at several times the cost.
pub fn find_program(program: &str, env: &[(String, String)], cwd: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') || program.is_empty() {
        return program.into();
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    for dir in path.split(':') {
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(dir) };
        let candidate = if dir.is_absolute() { dir.join(program) } else { cwd.join(dir).join(program) };
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return candidate;
        }
    }
    program.into()
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn assigned() -> Vec<(String, String)> {
        [
            ("THUNDERHEAD_JOB_ID", "7"),
            ("THUNDERHEAD_TASK_ID", "7.3"),
            ("THUNDERHEAD_TASK_ATTEMPT", "1"),
            ("THUNDERHEAD_NODE_NAME", "LocalCN-0001"),
            ("THUNDERHEAD_SWEEP_INDEX", "3"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    #[test]
    fn a_task_sees_exactly_the_documented_variables_and_nothing_of_the_agent() {
        // An agent's environment as a head node or an operator may have left it.
        let agent = |name: &str| match name {
            "PATH" => Some("/opt/bin:/usr/bin".to_string()),
            "LANG" | "LC_ALL" | "TZ" => Some(format!("{name}-value")),
            "THUNDERHEAD_JOIN_TOKEN" => Some("thj1_abc_secret".to_string()),
            "THUNDERHEAD_ACCESS" => Some("/var/lib/thunderhead/access.json".to_string()),
            _ => None,
        };
        let env = task_env(&assigned(), Path::new("/n/packages"), Path::new("/n/tasks/slot-1"), agent);
        let names: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, TASK_ENV.iter().copied().collect(), "{env:?}");
        assert_eq!(names.len(), env.len(), "no variable twice: {env:?}");
        let value = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(value("PATH"), Some("/opt/bin:/usr/bin"));
        assert_eq!(value("HOME"), Some("/n/tasks/slot-1"));
        assert_eq!(value("CCP_PACKAGE_ROOT"), Some("/n/packages"));
        assert!(env.iter().all(|(_, v)| !v.contains("thj1_")), "{env:?}");
    }

    #[test]
    fn an_agent_without_a_path_or_a_locale_gives_the_default_path_and_no_locale() {
        let env = task_env(&assigned()[..4], Path::new("/p"), Path::new("/d"), |_| None);
        let names: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!names.contains("LANG") && !names.contains("TZ") && !names.contains("THUNDERHEAD_SWEEP_INDEX"));
        assert!(names.iter().all(|n| TASK_ENV.contains(n)), "{names:?}");
        assert!(env.contains(&("PATH".to_string(), DEFAULT_PATH.to_string())));
    }

    #[test]
    fn an_assignment_cannot_move_the_package_root() {
        let mut assigned = assigned();
        assigned.push(("THUNDERHEAD_PACKAGE_ROOT".into(), "/elsewhere".into()));
        let env = task_env(&assigned, Path::new("/p"), Path::new("/d"), |_| None);
        let roots: Vec<&str> =
            env.iter().filter(|(k, _)| k == "THUNDERHEAD_PACKAGE_ROOT").map(|(_, v)| v.as_str()).collect();
        assert_eq!(roots, ["/p"]);
    }

    #[test]
    fn a_program_is_found_in_the_tasks_own_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(bin.join("data"), "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = vec![("PATH".to_string(), format!("/nonexistent:{}", bin.display()))];
        assert_eq!(find_program("tool", &env, dir.path()), bin.join("tool"));
        assert_eq!(find_program("data", &env, dir.path()), std::path::PathBuf::from("data"), "not executable");
        assert_eq!(find_program("./tool", &env, dir.path()), std::path::PathBuf::from("./tool"));
        let relative = vec![("PATH".to_string(), "bin".to_string())];
        assert_eq!(find_program("tool", &relative, dir.path()), dir.path().join("bin").join("tool"));
        assert_eq!(find_program("missing", &env, dir.path()), std::path::PathBuf::from("missing"));
    }
}
