//! The contract every [`crate::Provider`] passes. A provider's tests invoke
//! [`provider_contract_tests!`] with a function that builds the provider in a directory.

use thunderhead_core::size::NodeSize;
use thunderhead_core::template::Template;

pub fn template(provider: &str) -> Template {
    // Deployments in contract tests are immediate and never fail.
    let settings = match provider {
        "sim" => serde_json::json!({"deploy_time": "0ms", "failure_rate": 0}),
        "azure" => serde_json::json!({
            "subscription_id": "0123abcd-4567-89ab-cdef-0123456789ab",
            "service_name": "th-burst",
            "storage_account": "thstore",
        }),
        "slurm" => serde_json::json!({
            "command_prefix": slurm_prefix(),
            "partition": std::env::var("THUNDERHEAD_TEST_SLURM_PARTITION").unwrap_or_else(|_| "main".into()),
            "time_limit": "10m",
            "work_dir": std::env::temp_dir().join("thunderhead-slurm-tests").display().to_string(),
        }),
        "ssh" => {
            let peer = ssh_peer();
            serde_json::json!({
                "hosts": peer.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(","),
                "user": peer.user,
                "known_hosts": peer.dir.join("known_hosts").display().to_string(),
                "remote_dir": peer.remote_dir,
            })
        }
        _ => serde_json::json!({}),
    };
    let settings = settings.as_object().unwrap().clone();
    // A provider with secret settings gets a template that holds them (sealed, as stored).
    Template { settings, sealed: Some("sealed".into()), ..Template::new("t", provider) }
}

/// The secret settings of a usable template of `provider`.
pub fn secrets(provider: &str) -> crate::Secrets {
    match provider {
        "ssh" => {
            let key = std::fs::read_to_string(ssh_peer().dir.join("id_ed25519")).expect("the peer's client key");
            [("identity".to_string(), crate::Secret(key))].into()
        }
        _ => crate::Secrets::new(),
    }
}

pub fn set(provider: &str) -> crate::Set {
    crate::Set { template: template(provider), secrets: secrets(provider) }
}

/// The real OpenSSH servers that `scripts/peers/sshd.sh` starts on loopback for the tests.
pub struct SshPeer {
    /// Its directory: the client key `id_ed25519`, `known_hosts`, `known_hosts.wrong`.
    pub dir: std::path::PathBuf,
    pub user: String,
    /// Servers that take the client key.
    pub ports: Vec<u16>,
    /// A server that refuses it.
    pub refusing_port: u16,
    /// The good server whose key `known_hosts.wrong` gets wrong.
    pub wrong_key_port: u16,
    /// A port where nothing listens.
    pub down_port: u16,
    /// A directory the login user owns, for node directories.
    pub remote_dir: String,
}

/// The command prefix that reaches the real Slurm cluster `scripts/peers/slurm.sh` starts.
pub fn slurm_prefix() -> String {
    std::env::var("THUNDERHEAD_TEST_SLURM").expect("THUNDERHEAD_TEST_SLURM: run the tests with scripts/test.sh")
}

pub fn ssh_peer() -> SshPeer {
    let dir = std::path::PathBuf::from(
        std::env::var("THUNDERHEAD_TEST_SSH").expect("THUNDERHEAD_TEST_SSH: run the tests with scripts/test.sh"),
    );
    let env = std::fs::read_to_string(dir.join("hosts.env")).expect("the peer's hosts.env");
    let get = |key: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{key} in hosts.env"))
            .to_string()
    };
    let port = |key: &str| get(key).parse::<u16>().expect("a port");
    SshPeer {
        user: get("SSH_USER"),
        ports: get("SSH_PORTS").split(',').map(|p| p.parse().expect("a port")).collect(),
        refusing_port: port("SSH_REFUSING_PORT"),
        wrong_key_port: port("SSH_WRONG_KEY_PORT"),
        down_port: port("SSH_DOWN_PORT"),
        remote_dir: get("SSH_REMOTE_DIR"),
        dir,
    }
}

pub fn request(provider: &str, node: &str) -> crate::DeployRequest {
    crate::DeployRequest {
        node: node.into(),
        template: template(provider),
        secrets: secrets(provider),
        size: NodeSize::Small,
        server_url: "http://127.0.0.1:9".into(),
        join: None,
    }
}

/// The status of `handle` once `done` holds for it, or after 30 s: a batch queue takes a moment
/// to start a job and to end one.
pub async fn settled(
    p: &impl crate::Provider,
    handle: &serde_json::Value,
    done: impl Fn(&crate::ExternalStatus) -> bool,
) -> crate::Result<crate::ExternalStatus> {
    let start = std::time::Instant::now();
    loop {
        let status = p.status(&set(p.name()), std::slice::from_ref(handle)).await.remove(0);
        if status.as_ref().is_ok_and(&done) || start.elapsed() > std::time::Duration::from_secs(30) {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A stand-in for the `thunderhead` program: it sleeps as an agent does, and as a proxy it
/// writes the address file first.
pub fn stand_in(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("stand-in");
    let text = "#!/bin/sh\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = --address-file ]; then echo http://127.0.0.1:9 > \"$2\"; fi\n  shift\ndone\nexec sleep 300\n";
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

pub fn proxy_request(provider: &str, proxy: &str) -> crate::ProxyRequest {
    crate::ProxyRequest {
        proxy: proxy.into(),
        template: template(provider),
        server_url: "http://127.0.0.1:9".into(),
        address: None,
    }
}

#[macro_export]
macro_rules! provider_contract_tests {
    // A provider this build deploys with: the whole cycle.
    (deploys, $build:expr) => {
        $crate::provider_contract_tests!(@common $build, true, {
            #[test]
            fn deploy_then_status_then_remove_twice() {
                let dir = tempfile::tempdir().unwrap();
                let p = build(dir.path());
                runtime().block_on(async {
                    let handle = p.deploy(&request(p.name(), "Node-0001")).await.unwrap();
                    let status = settled(&p, &handle, |s| !matches!(s, $crate::ExternalStatus::Waiting(_))).await;
                    assert_eq!(status, Ok($crate::ExternalStatus::Running));
                    p.remove(&set(p.name()), &handle).await.unwrap();
                    let status = settled(&p, &handle, |s| *s == $crate::ExternalStatus::Gone).await;
                    assert_eq!(status, Ok($crate::ExternalStatus::Gone));
                    p.remove(&set(p.name()), &handle).await.expect("removing twice succeeds");
                });
            }

            #[test]
            fn a_proxy_deploys_with_an_address_and_is_removed() {
                let dir = tempfile::tempdir().unwrap();
                let p = build(dir.path());
                if !p.info().proxies {
                    // Its agents reach the head node directly: a proxy is refused, plainly.
                    let err = runtime().block_on(p.deploy_proxy(&proxy_request(p.name(), "t-proxy-1"))).unwrap_err();
                    assert!(!err.transient && err.message.contains("no proxies"), "{err:?}");
                    return;
                }
                runtime().block_on(async {
                    let (handle, url) = p.deploy_proxy(&proxy_request(p.name(), "t-proxy-1")).await.unwrap();
                    assert!(url.starts_with("http://"), "{url}");
                    assert_eq!(p.status(&set(p.name()), std::slice::from_ref(&handle)).await, vec![Ok($crate::ExternalStatus::Running)]);
                    p.remove(&set(p.name()), &handle).await.unwrap();
                    assert_eq!(p.status(&set(p.name()), std::slice::from_ref(&handle)).await, vec![Ok($crate::ExternalStatus::Gone)]);
                });
            }

            #[test]
            fn validate_passes_for_a_usable_template() {
                let dir = tempfile::tempdir().unwrap();
                let p = build(dir.path());
                let checks = runtime().block_on(p.validate(&set(p.name())));
                assert!(!checks.is_empty());
                assert!(checks.iter().all(|c| c.ok), "{checks:?}");
            }
        });
    };
    // A provider whose templates this build only checks: it refuses to deploy, plainly.
    (checks_only, $build:expr) => {
        $crate::provider_contract_tests!(@common $build, false, {
            #[test]
            fn a_provider_this_build_does_not_deploy_refuses_plainly() {
                let dir = tempfile::tempdir().unwrap();
                let p = build(dir.path());
                runtime().block_on(async {
                    let err = p.deploy(&request(p.name(), "Node-0001")).await.unwrap_err();
                    assert!(!err.transient && err.message.contains("not available"), "{err:?}");
                    let err = p.deploy_proxy(&proxy_request(p.name(), "t-proxy-1")).await.unwrap_err();
                    assert!(!err.transient && err.message.contains("not available"), "{err:?}");
                    let checks = p.validate(&set(p.name())).await;
                    assert!(checks.iter().any(|c| !c.ok && c.detail.contains("not available")), "{checks:?}");
                });
            }
        });
    };
    (@common $build:expr, $deployable:expr, { $($tests:tt)* }) => {
        mod contract {
            use super::*;
            use $crate::contract::*;
            use $crate::Provider;

            fn build(dir: &std::path::Path) -> impl Provider {
                let f = $build;
                f(dir)
            }

            fn runtime() -> tokio::runtime::Runtime {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
            }

            #[test]
            fn a_usable_template_passes_the_providers_own_rules() {
                let dir = tempfile::tempdir().unwrap();
                let p = build(dir.path());
                let mut t = template(p.name());
                $crate::settings::check_declared(p.name(), p.info().settings, &t.settings).unwrap();
                p.check_settings(&mut t.settings, t.sealed.is_some()).unwrap();
            }

            #[test]
            fn it_declares_whether_this_build_deploys_it() {
                let dir = tempfile::tempdir().unwrap();
                assert_eq!(build(dir.path()).info().deployable, $deployable);
            }

            #[test]
            fn a_handle_from_elsewhere_is_an_error_not_a_panic() {
                let dir = tempfile::tempdir().unwrap();
                let p = build(dir.path());
                let bogus = serde_json::json!({"something": "else"});
                runtime().block_on(async {
                    assert!(p.remove(&set(p.name()), &bogus).await.is_err());
                    assert!(p.status(&set(p.name()), std::slice::from_ref(&bogus)).await[0].is_err());
                });
            }

            $($tests)*
        }
    };
}
