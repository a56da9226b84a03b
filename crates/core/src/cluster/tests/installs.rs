//! Packages installed on nodes.

use super::*;

#[test]
fn a_burst_node_installs_its_packages_before_it_is_offline() {
    let mut env = Env::new();
    for (name, v) in [("solver", 1), ("solver", 2), ("data", 1)] {
        assert_eq!(env.c.reserve_package_version(name, &format!("{name}.tar.gz"), None).unwrap().0, v);
        env.c.register_package(&mut env.fx, package(name, v, None)).unwrap();
    }
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    let session = env.connect(&names[0], 1).unwrap();
    let fx = env.end();
    assert_eq!(installs(&fx), vec![(session, vec!["data@1".to_string(), "solver@2".to_string()])]);
    assert_eq!(env.state(&names[0]).0, "Provisioning", "not Offline before its packages are in");
    let ok = |name: &str, version| packages::Installed { name: name.into(), version, error: None };
    env.c.agent_installed(&mut env.fx, session, vec![ok("data", 1), ok("solver", 2)], env.now);
    env.end();
    assert_eq!(env.state(&names[0]).0, "Offline");
    assert_eq!(env.c.node(&names[0]).unwrap().packages, ["data@1", "solver@2"]);
}

#[test]
fn a_package_that_fails_to_install_leaves_the_node_unknown_with_the_reason() {
    let mut env = Env::new();
    env.c.register_package(&mut env.fx, package("solver", 1, Some("t"))).unwrap();
    let names = env.add(1, "Small");
    env.act(NodeAction::Start, &[&names[0]], false);
    env.end();
    env.c.deployed(&mut env.fx, &names[0], Ok(serde_json::json!(1)), env.now);
    let session = env.connect(&names[0], 1).unwrap();
    env.end();
    let failed = packages::Installed { name: "solver".into(), version: 1, error: Some("checksum mismatch".into()) };
    env.c.agent_installed(&mut env.fx, session, vec![failed], env.now);
    env.end();
    assert_eq!(env.state(&names[0]), ("Unknown".into(), "Unapproved".into()));
    assert!(
        env.c.node(&names[0]).unwrap().cause.unwrap().contains("package solver@1 failed to install: checksum mismatch")
    );
}

#[test]
fn pins_and_template_packages_choose_what_a_node_installs() {
    let mut env = Env::new();
    let t2 = NewTemplate { name: "t2".into(), provider: "lab".into(), ..Default::default() };
    env.c.create_template(&mut env.fx, t2, env.now).unwrap();
    for p in [package("a", 1, None), package("a", 2, None), package("b", 1, Some("t2"))] {
        env.c.register_package(&mut env.fx, p).unwrap();
    }
    let chosen = |env: &Env, t: &str| {
        env.c.packages_for(t).iter().map(|p| format!("{}@{}", p.name, p.version)).collect::<Vec<_>>()
    };
    assert_eq!(chosen(&env, "t"), ["a@2"]);
    assert_eq!(chosen(&env, "t2"), ["a@2", "b@1"]);
    let pin = TemplateEdit { pin: Some(vec!["a=1".into()]), ..Default::default() };
    env.c.edit_template(&mut env.fx, "t", pin, env.now).unwrap();
    assert_eq!(chosen(&env, "t"), ["a@1"]);
    let gone = env.c.remove_package(&mut env.fx, "a", Some(1)).unwrap();
    assert_eq!(gone.len(), 1);
    assert!(env.c.package_file("a", Some(1)).unwrap_err().message.contains("no version 1"));
    assert_eq!(env.c.reserve_package_version("a", "a.zip", None).unwrap().0, 3, "versions are never reused");
}

#[test]
fn packages_are_installed_on_running_nodes_on_request() {
    let mut env = Env::new();
    let names = env.online(2, "Small");
    env.c.register_package(&mut env.fx, package("tool", 1, None)).unwrap();
    let results = env.c.install_packages(&mut env.fx, "t", env.now).unwrap();
    assert!(results.iter().all(|r| r.ok), "{results:?}");
    let fx = env.end();
    assert_eq!(installs(&fx).len(), 2);
    let ok = packages::Installed { name: "tool".into(), version: 1, error: None };
    env.c.agent_installed(&mut env.fx, env.sessions[&names[0]], vec![ok], env.now);
    env.end();
    assert_eq!(env.c.node(&names[0]).unwrap().packages, ["tool@1"]);
    assert_eq!(env.state(&names[0]).0, "Online");
}
