use super::*;
use serde_json::json;

fn read(v: Value) -> thunderhead_core::Result<SshSettings> {
    SshSettings::read(v.as_object().unwrap())
}

#[test]
fn hosts_take_their_own_port_or_the_template_s_and_the_user() {
    let s = read(json!({"hosts": "a.lab, b.lab:2222 ,10.0.0.7", "port": "2200", "user": "hpc"})).unwrap();
    let hosts: Vec<String> = s.hosts.iter().map(Host::to_string).collect();
    assert_eq!(hosts, ["hpc@a.lab:2200", "hpc@b.lab:2222", "hpc@10.0.0.7:2200"]);
    assert_eq!((s.nodes_per_host, s.remote_dir.as_str()), (1, ".thunderhead"));
    assert_eq!(s.connect_timeout, Duration::from_secs(10));
}

#[test]
fn a_host_file_adds_hosts_without_comments() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, "# the rack\nnode1\nnode2:2022  # spare port\n\n").unwrap();
    let s = read(json!({"host_file": file.display().to_string()})).unwrap();
    let hosts: Vec<String> = s.hosts.iter().map(Host::to_string).collect();
    assert_eq!(hosts, ["node1:22", "node2:2022"]);
}

#[test]
fn bad_settings_name_the_value_the_rule_and_the_fix() {
    for (settings, says) in [
        (json!({}), "needs its hosts"),
        (json!({"hosts": "a,a"}), "listed twice"),
        (json!({"hosts": "a:99999"}), "HOST or HOST:PORT"),
        (json!({"hosts": "-oProxyCommand=x"}), "HOST or HOST:PORT"),
        (json!({"hosts": "a", "port": 0}), "TCP port"),
        (json!({"hosts": "a", "user": "root;rm"}), "login name"),
        (json!({"hosts": "a", "nodes_per_host": 0}), "from 1 to 1000"),
        (json!({"hosts": "a", "remote_dir": "../x"}), "without '..'"),
        (json!({"hosts": "a", "remote_dir": "a b"}), "not allowed"),
        (json!({"hosts": "a", "host_file": "/nonexistent/hosts"}), "cannot be read"),
    ] {
        let err = read(settings.clone()).unwrap_err();
        assert!(err.message.contains(says), "{settings}: {err}");
    }
}

#[test]
fn handles_of_a_newer_build_or_another_provider_are_refused() {
    let host = Host { host: "h".into(), port: 22, user: None };
    let handle = SshHandle {
        v: SSH_HANDLE_VERSION,
        host,
        pid: 7,
        start: 99,
        dir: ".thunderhead/x/t/n".into(),
        node: "n".into(),
    };
    let value = serde_json::to_value(&handle).unwrap();
    assert_eq!(parse(&value).unwrap(), handle);
    let mut newer = value.clone();
    newer["v"] = json!(SSH_HANDLE_VERSION + 1);
    assert!(parse(&newer).unwrap_err().message.contains("newer than this build reads"));
    assert!(parse(&json!({"pid": 1, "dir": "/x"})).is_err());
}

crate::provider_contract_tests!(deploys, |dir: &std::path::Path| {
    SshProvider::new(crate::contract::stand_in(dir), dir)
});

/// A template of the peer's servers with `hosts` and `known_hosts` in place of the good ones.
fn peer_request(hosts: &str, known_hosts: &str, node: &str) -> DeployRequest {
    let peer = crate::contract::ssh_peer();
    let mut request = crate::contract::request("ssh", node);
    request.template.settings.insert("hosts".into(), json!(hosts));
    request.template.settings.insert("known_hosts".into(), json!(peer.dir.join(known_hosts).display().to_string()));
    request
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_refused_key_a_wrong_host_key_and_a_host_that_is_down_fail_in_openssh_s_words() {
    let dir = tempfile::tempdir().unwrap();
    let p = SshProvider::new(crate::contract::stand_in(dir.path()), dir.path());
    let peer = crate::contract::ssh_peer();
    let cases = [
        (format!("127.0.0.1:{}", peer.refusing_port), "known_hosts", "Permission denied", false),
        (format!("127.0.0.1:{}", peer.wrong_key_port), "known_hosts.wrong", "Host key verification failed", false),
        (format!("127.0.0.1:{}", peer.down_port), "known_hosts", "Connection refused", true),
    ];
    runtime().block_on(async {
        for (hosts, known, says, transient) in cases {
            let err = p.deploy(&peer_request(&hosts, known, "SshCN-0001")).await.unwrap_err();
            assert!(err.message.contains(says) && err.transient == transient, "{hosts}: {err:?}");
            assert!(err.message.contains(&hosts), "the host is named: {err:?}");
            let set =
                Set { template: peer_request(&hosts, known, "x").template, secrets: crate::contract::secrets("ssh") };
            let checks = p.validate(&set).await;
            assert!(checks.iter().any(|c| !c.ok && c.detail.contains(says)), "{hosts}: {checks:?}");
        }
    });
}

#[test]
fn nodes_spread_over_the_hosts_and_a_full_set_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let p = SshProvider::new(crate::contract::stand_in(dir.path()), dir.path());
    let set = crate::contract::set("ssh");
    runtime().block_on(async {
        let mut handles = Vec::new();
        for n in 1..=3 {
            let h = p.deploy(&crate::contract::request("ssh", &format!("SshCN-000{n}"))).await.unwrap();
            handles.push(parse(&h).unwrap());
        }
        let hosts: HashSet<Host> = handles.iter().map(|h| h.host.clone()).collect();
        assert_eq!(hosts.len(), 3, "one node a host: {handles:?}");
        let err = p.deploy(&crate::contract::request("ssh", "SshCN-0004")).await.unwrap_err();
        assert!(err.message.contains("nodes_per_host") && !err.transient, "{err:?}");
        // What runs is what the inventory finds, handle for handle: no leftovers.
        let found = p.inventory(&set).await.unwrap();
        let mut found: Vec<SshHandle> = found.iter().map(|f| parse(&f.handle).unwrap()).collect();
        found.sort_by(|a, b| a.node.cmp(&b.node));
        assert_eq!(found, handles);
        for h in &handles {
            p.remove(&set, &serde_json::to_value(h).unwrap()).await.unwrap();
        }
        assert!(p.inventory(&set).await.unwrap().is_empty(), "removed with their directories");
    });
}

#[test]
fn an_agent_killed_on_its_host_is_gone_and_its_directory_a_leftover_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let p = SshProvider::new(crate::contract::stand_in(dir.path()), dir.path());
    let set = crate::contract::set("ssh");
    runtime().block_on(async {
        let value = p.deploy(&crate::contract::request("ssh", "SshCN-0001")).await.unwrap();
        let handle = parse(&value).unwrap();
        // Killed on its host by someone else.
        let settings = SshProvider::settings(&set).unwrap();
        let options = p.options(&set, &settings).await.unwrap();
        let kill = format!("kill -KILL -{}", handle.pid);
        remote::run(&handle.host, &options, &kill, Input::Bytes(b""), COMMAND_TIMEOUT).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(p.status(&set, std::slice::from_ref(&value)).await, vec![Ok(ExternalStatus::Gone)]);
        let found = p.inventory(&set).await.unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].what.contains("no agent runs there"), "{found:?}");
        assert_eq!(found[0].handle, value, "the same handle: the node still owns its directory");
        p.remove(&set, &value).await.unwrap();
        assert!(p.inventory(&set).await.unwrap().is_empty());
    });
}
