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
}
