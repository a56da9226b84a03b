//! End-to-end: who may do what, with real tokens against a real head node.

mod common;

use common::Cluster;
use serde_json::Value;
use std::process::Output;

fn token_of(added: &Value) -> String {
    added["token"].as_str().expect("a token is shown when issued").to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn refused(out: &Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} should have been refused; it printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(out)
}

/// A raw API request with `token`; returns the status and the body.
fn api(c: &Cluster, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert", c.ca_file().to_str().unwrap(), "-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json"])
        .args(["--data-raw", body, &format!("{}{path}", c.url())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
    (status.parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn each_role_does_what_it_may_and_a_refusal_changes_nothing() {
    let mut c = Cluster::start();
    let alice = token_of(&c.json(&["user", "add", "alice", "--role", "User"]));
    let bob = token_of(&c.json(&["user", "add", "bob"]));
    let carol = token_of(&c.json(&["user", "add", "carol", "--role", "JobAdministrator"]));
    let bad_role = c.th_fails(&["user", "add", "dave", "--role", "root"]);
    assert!(bad_role.contains("\"root\"") && bad_role.contains("JobAdministrator"), "{bad_role}");
    let users = c.json(&["user", "list"]);
    let text = users.to_string();
    assert!(!text.contains(&alice) && !text.contains("token"), "a user list shows no token: {text}");
    assert_eq!(users.as_array().unwrap().len(), 4, "admin, alice, bob, carol");

    // A request without a token, or with a wrong one, is refused with 401.
    let url = c.url();
    let anonymous = std::process::Command::new(common::BIN)
        .env_remove("THUNDERHEAD_ACCESS")
        .env_remove("THUNDERHEAD_TOKEN")
        .env("HOME", c.dir.path())
        .args(["--server", &url, "--ca", c.ca_file().to_str().unwrap(), "job", "list"])
        .output()
        .unwrap();
    assert!(refused(&anonymous, "a request without a token").contains("carries no API token"));
    let forged = c.try_th_as("th1_000000000000_00", &["job", "list"]);
    assert!(refused(&forged, "a forged token").contains("not valid here"));

    // Alice submits; the job is hers.
    let submitted = c.try_th_as(&alice, &["--json", "job", "submit", "--sweep", "1-3", "--", "true"]);
    assert!(submitted.status.success(), "{}", stderr(&submitted));
    let id = serde_json::from_slice::<Value>(&submitted.stdout).unwrap()["id"].as_u64().unwrap().to_string();
    assert_eq!(c.json(&["job", "view", &id])["owner"], "alice");

    // Bob sees nothing of it and cannot touch it; the job is unchanged afterwards.
    let bobs_list = c.try_th_as(&bob, &["--json", "job", "list"]);
    assert_eq!(serde_json::from_slice::<Value>(&bobs_list.stdout).unwrap(), serde_json::json!([]));
    for args in [vec!["job", "view", &id], vec!["job", "cancel", &id], vec!["task", "list", &id]] {
        let out = c.try_th_as(&bob, &args);
        assert!(refused(&out, &args.join(" ")).contains(&format!("job {id} belongs to alice")), "{}", stderr(&out));
    }
    assert_eq!(c.json(&["job", "view", &id])["state"], "Queued");

    // A User does not manage the cluster, and nothing changes when refused.
    let templates_before = c.json(&["template", "list"]);
    let out = c.try_th_as(&bob, &["template", "create", "x", "--provider", "local"]);
    assert!(refused(&out, "a User creating a template").contains("needs the Administrator role"));
    assert_eq!(c.json(&["template", "list"]), templates_before);
    let out = c.try_th_as(&carol, &["user", "add", "eve"]);
    assert!(refused(&out, "a JobAdministrator adding a user").contains("carol is a JobAdministrator"));
    assert!(c.try_th_as(&bob, &["template", "list"]).status.success(), "a User reads the templates");

    // A job id Alice reserved (to stage her files first) is hers: Bob can neither upload into
    // its area nor submit as it.
    let (status, reserved) = api(&c, &alice, "POST", "/api/v1/jobs/reserve", "{}");
    assert_eq!(status, 200, "{reserved}");
    let rid = reserved["id"].as_u64().unwrap();
    let (status, answer) = api(&c, &bob, "PUT", &format!("/api/v1/jobs/{rid}/inputs/x.txt"), "data");
    assert_eq!(status, 403, "{answer}");
    let (status, answer) =
        api(&c, &bob, "POST", "/api/v1/jobs", &format!("{{\"command\": [\"true\"], \"reserved_id\": {rid}}}"));
    assert_eq!((status, answer["error"]["kind"].as_str()), (403, Some("forbidden")), "{answer}");
    let (status, answer) =
        api(&c, &alice, "POST", "/api/v1/jobs", &format!("{{\"command\": [\"true\"], \"reserved_id\": {rid}}}"));
    assert_eq!((status, answer["id"].as_u64()), (200, Some(rid)), "{answer}");
    let (status, answer) = api(&c, &bob, "GET", "/api/v1/jobs/abc", "");
    assert_eq!((status, answer["error"]["kind"].as_str()), (400, Some("invalid")), "refusals are JSON: {answer}");

    // A JobAdministrator manages every job.
    let out = c.try_th_as(&carol, &["job", "cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(c.json(&["job", "view", &id])["state"], "Canceled");

    // Users and their tokens survive a crash of the head node; the administrator's token too.
    let access_before = std::fs::read_to_string(c.access_file()).unwrap();
    c.kill_server();
    c.start_server();
    assert_eq!(std::fs::read_to_string(c.access_file()).unwrap(), access_before);
    let me = c.try_th_as(&alice, &["--json", "user", "whoami"]);
    assert_eq!(serde_json::from_slice::<Value>(&me.stdout).unwrap()["role"], "User", "{}", stderr(&me));

    // A new token replaces the old one; a removed user's token stops working.
    let alice2 = token_of(&c.json(&["user", "token", "alice"]));
    assert!(refused(&c.try_th_as(&alice, &["job", "list"]), "a replaced token").contains("not valid here"));
    assert!(c.try_th_as(&alice2, &["job", "list"]).status.success());
    c.th(&["user", "remove", "alice"]);
    assert!(refused(&c.try_th_as(&alice2, &["job", "list"]), "a removed user's token").contains("not valid here"));

    // No token appears in the head node's log.
    let log = c.server_log();
    for token in [&alice, &alice2, &bob, &carol] {
        assert!(!log.contains(token.as_str()), "the log holds a token");
    }
}

#[test]
fn any_user_reads_the_providers_of_the_build_and_the_settings_each_takes() {
    let c = Cluster::start();
    let alice = token_of(&c.json(&["user", "add", "alice", "--role", "User"]));
    let listed = c.try_th_as(&alice, &["--json", "provider", "list"]);
    assert!(listed.status.success(), "a User reads the providers: {}", stderr(&listed));
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["local", "sim", "azure", "ssh", "slurm"]);
    let deploys: Vec<bool> = list.as_array().unwrap().iter().map(|p| p["deployable"].as_bool().unwrap()).collect();
    assert_eq!(deploys, [true, true, false, true, true]);

    let sim = c.json(&["provider", "show", "sim"]);
    let failure_rate = sim["settings"].as_array().unwrap().iter().find(|s| s["name"] == "failure_rate");
    assert_eq!(failure_rate.map(|s| &s["kind"]), Some(&Value::from("number")), "{sim}");
    let shown = c.th(&["provider", "show", "sim"]);
    assert!(shown.contains("failure_rate") && shown.contains("--set KEY=VALUE"), "{shown}");
    let table = c.th(&["provider", "list"]);
    assert!(table.starts_with("NAME") && table.contains("failure_rate"), "{table}");

    let unknown = c.th_fails(&["provider", "show", "gcp"]);
    assert!(unknown.contains("\"gcp\"") && unknown.contains("local, sim, azure"), "{unknown}");
}

#[test]
fn a_lost_access_file_gets_a_new_administrator_token_and_the_old_one_stops_working() {
    let mut c = Cluster::start();
    let old: Value = serde_json::from_str(&std::fs::read_to_string(c.access_file()).unwrap()).unwrap();
    c.kill_server();
    std::fs::remove_file(c.access_file()).unwrap();
    c.start_server();
    let new: Value = serde_json::from_str(&std::fs::read_to_string(c.access_file()).unwrap()).unwrap();
    assert_ne!(old["token"], new["token"]);
    let out = c.try_th_as(old["token"].as_str().unwrap(), &["job", "list"]);
    assert!(refused(&out, "the lost token").contains("not valid here"));
    assert_eq!(c.json(&["user", "whoami"])["name"], "admin");
}

/// An agent process of `c` named `name` working in `dir`, with `token` if given; killed on drop.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(server: &str, ca: &std::path::Path, name: &str, dir: &std::path::Path, token: Option<&str>) -> Agent {
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(["agent", "--server", server, "--name", name, "--cores", "1", "--ca", ca.to_str().unwrap(), "--work-dir"])
        .arg(dir)
        .env_remove("THUNDERHEAD_JOIN_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(token) = token {
        cmd.env("THUNDERHEAD_JOIN_TOKEN", token);
    }
    Agent(cmd.spawn().unwrap())
}

/// Waits for an agent that must stop by itself; returns its standard error.
fn ends(mut agent: Agent, what: &str) -> String {
    let status = common::eventually(20, what, || agent.0.try_wait().unwrap());
    assert!(!status.success(), "{what}: the agent should have failed");
    let mut err = String::new();
    use std::io::Read;
    agent.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    err
}

/// Opens the agent WebSocket without a client certificate and says hello as `name`; returns
/// the head node's first frame.
fn hello_without_certificate(c: &Cluster, name: &str) -> String {
    let script = r#"
import base64, json, os, socket, ssl, struct, sys
port, ca, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /agent/v1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert b" 101 " in head.split(b"\r\n")[0], head
hello = json.dumps({"type": "hello", "protocol": 1, "agent_version": "x", "name": name, "cores": 1,
                    "running": [], "completed": []}).encode()
mask = os.urandom(4)
frame = bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(hello)) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(hello))
s.sendall(frame)
first = s.recv(2)
n = first[1] & 0x7f
if n == 126:
    n = struct.unpack(">H", s.recv(2))[0]
body = b""
while len(body) < n:
    body += s.recv(n - len(body))
print(body.decode())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &c.port.to_string(), c.ca_file().to_str().unwrap(), name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn agents_join_once_and_are_refused_without_a_valid_certificate() {
    let mut c = Cluster::start();
    let url = c.url();
    assert!(url.starts_with("https://"), "{url}");
    let access: Value = serde_json::from_str(&std::fs::read_to_string(c.access_file()).unwrap()).unwrap();
    assert!(access["ca"].as_str().unwrap().contains("BEGIN CERTIFICATE"), "the access file carries the authority");

    // A node joins with a token once; its certificate and key stay in its work directory.
    c.start_agent("n1", 1);
    common::eventually(20, "n1 to join", || {
        c.json(&["node", "list"]).as_array().unwrap().iter().any(|n| n["name"] == "n1").then_some(())
    });
    let n1_dir = c.dir.path().join("agent-n1");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(n1_dir.join("node.key")).unwrap().permissions().mode() & 0o777, 0o600);

    // A new machine joins into a work directory that does not exist yet.
    let join = c.join_token();
    let _n3 = agent(&url, &c.ca_file(), "n3", &c.dir.path().join("fresh/agent-n3"), Some(&join));
    common::eventually(20, "n3 to join", || {
        c.json(&["node", "list"]).as_array().unwrap().iter().any(|n| n["name"] == "n3").then_some(())
    });

    // An agent with no certificate: refused, and the refusal logged.
    let frame = hello_without_certificate(&c, "n1");
    assert!(frame.contains("showed no node certificate"), "{frame}");
    assert!(c.server_log().contains("refused an agent"), "the refusal is logged");

    // An expired token: refused at the join.
    let short = c.json(&["token", "create", "--expires", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let late = agent(&url, &c.ca_file(), "n2", &c.dir.path().join("agent-n2"), short["token"].as_str());
    let err = ends(late, "an agent with an expired token to be refused");
    assert!(err.contains("expired"), "{err}");
    assert!(c.server_log().contains("refused a join"), "the refused join is logged");

    // A template's token only admits that template's nodes.
    c.th(&["template", "create", "burst", "--provider", "local"]);
    let scoped = c.json(&["token", "create", "--template", "burst"]);
    let err = ends(
        agent(&url, &c.ca_file(), "laptop", &c.dir.path().join("agent-laptop"), scoped["token"].as_str()),
        "an agent outside the token's template to be refused",
    );
    assert!(err.contains("template burst") && err.contains("laptop"), "{err}");

    // A revoked node: its connection is closed, and it is refused from then on.
    c.th(&["node", "revoke", "n1"]);
    common::eventually(20, "the running agent of n1 to be refused", || {
        let log = std::fs::read_to_string(n1_dir.join("agent.log")).unwrap_or_default();
        log.contains("revoked").then_some(())
    });
    let err = ends(agent(&url, &c.ca_file(), "n1", &n1_dir, None), "a revoked node to be refused");
    assert!(err.contains("revoked"), "{err}");

    // A certificate of another cluster: the handshake fails, and the refusal is logged.
    let mut other = Cluster::start();
    other.start_agent("stranger", 1);
    let stranger_dir = other.dir.path().join("agent-stranger");
    common::eventually(20, "the stranger to join its own cluster", || {
        stranger_dir.join("node.pem").exists().then_some(())
    });
    let _stranger = agent(&url, &c.ca_file(), "stranger", &stranger_dir, None);
    common::eventually(20, "the foreign certificate to be refused", || {
        c.server_log()
            .lines()
            .any(|l| l.contains("refused a TLS connection") && l.contains("UnknownIssuer"))
            .then_some(())
    });
    let names: Vec<String> =
        c.json(&["node", "list"]).as_array().unwrap().iter().map(|n| n["name"].to_string()).collect();
    assert!(!names.iter().any(|n| n.contains("stranger") || n.contains("n2") || n.contains("laptop")), "{names:?}");
}

/// Every file under `dir` whose name ends in `.log`, read whole.
fn logs_under(dir: &std::path::Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            logs_under(&path, into);
        } else if path.extension().is_some_and(|e| e == "log") {
            into.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()));
        }
    }
}

/// Runs the CLI (as `token`'s user, or the administrator) and keeps everything it printed.
fn said(c: &Cluster, corpus: &mut String, token: Option<&str>, args: &[&str]) -> Output {
    let out = c.try_th_with(token, args);
    corpus.push_str(&String::from_utf8_lossy(&out.stdout));
    corpus.push_str(&String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn no_secret_of_a_full_run_shows_in_a_log_an_answer_or_a_stored_record() {
    let mut c = Cluster::start();
    let mut answers = String::new();
    let access: Value = serde_json::from_str(&std::fs::read_to_string(c.access_file()).unwrap()).unwrap();
    let admin = access["token"].as_str().unwrap().to_string();

    // Secrets are shown once, when issued, and only the one issued.
    let added = c.try_th(&["--json", "user", "add", "alice"]);
    let alice = token_of(&serde_json::from_slice(&added.stdout).unwrap());
    assert!(!String::from_utf8_lossy(&added.stdout).contains(&admin));
    let join = c.join_token();

    // A template with a certificate and its password.
    let password = "grep-me-if-you-can-7731";
    let (pfx, _) = common::make_pfx(c.dir.path(), 2048, password);
    let pw_file = c.dir.path().join("pw.txt");
    std::fs::write(&pw_file, password).unwrap();
    let sub = "0123abcd-4567-89ab-cdef-0123456789ab";
    let az = [
        "template",
        "create",
        "az",
        "--provider",
        "azure",
        "--subscription-id",
        sub,
        "--service-name",
        "th-burst",
        "--storage-account",
        "thstore",
        "--certificate",
        pfx.to_str().unwrap(),
        "--certificate-password-file",
        pw_file.to_str().unwrap(),
    ];
    assert!(said(&c, &mut answers, None, &az).status.success());
    said(&c, &mut answers, None, &["template", "validate", "az"]);

    // Burst nodes behind proxies, an on-premises node, and a user's sweep across them.
    for args in [
        vec!["template", "create", "burst", "--provider", "local"],
        vec!["node", "add", "--template", "burst", "--count", "2", "--size", "Small"],
        vec!["node", "start", "--template", "burst", "--wait"],
        vec!["node", "online", "--template", "burst"],
    ] {
        let out = said(&c, &mut answers, None, &args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    c.start_agent("onprem", 1);
    common::eventually(20, "the on-premises node to join", || {
        c.json(&["node", "list"]).as_array().unwrap().iter().any(|n| n["name"] == "onprem").then_some(())
    });
    said(&c, &mut answers, None, &["node", "online", "onprem"]);
    let out = said(&c, &mut answers, Some(&alice), &["--json", "job", "submit", "--sweep", "1-30", "--", "echo", "*"]);
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"].to_string();
    assert!(said(&c, &mut answers, Some(&alice), &["job", "wait", &id]).status.success());

    // A burst node got its token on its standard input at deployment: neither its environment
    // nor its command line (which every user can read) holds one. It got its key at joining.
    let node_dir = c.state_dir().join("nodes/LocalCN-0001");
    let pid = std::fs::read_to_string(node_dir.join("agent.pid")).unwrap();
    for place in ["environ", "cmdline"] {
        let text = std::fs::read(format!("/proc/{}/{place}", pid.trim())).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains("thj1_"), "a burst node's agent has a token in its {place}");
    }
    let node_key = std::fs::read_to_string(node_dir.join("node.key")).unwrap();
    let node_key_body = node_key.lines().nth(1).unwrap().to_string();

    // Every answer the API gives about the run.
    for args in [
        vec!["template", "list"],
        vec!["template", "show", "az"],
        vec!["template", "show", "burst"],
        vec!["node", "list"],
        vec!["node", "log", "LocalCN-0001"],
        vec!["node", "log", "onprem"],
        vec!["job", "list"],
        vec!["job", "view", &id],
        vec!["task", "list", &id],
        vec!["task", "output", &format!("{id}.7")],
        vec!["user", "list"],
        vec!["token", "list"],
        vec!["cost"],
        vec!["package", "list"],
        vec!["user", "whoami"],
    ] {
        let mut json = vec!["--json"];
        json.extend(args.iter().copied());
        said(&c, &mut answers, None, &json);
        said(&c, &mut answers, None, &args);
    }
    said(&c, &mut answers, Some(&alice), &["--json", "job", "list"]);
    said(&c, &mut answers, None, &["node", "stop", "--template", "burst"]);
    c.await_nodes("burst", "NotDeployed");
    c.kill_server();
    c.start_server();
    said(&c, &mut answers, None, &["--json", "node", "list"]);

    let mut logs = String::new();
    logs_under(c.dir.path(), &mut logs);
    let mut stored = Vec::new();
    for f in ["thunderhead.db", "thunderhead.db-wal", "ca.key.sealed"] {
        stored.extend(std::fs::read(c.state_dir().join(f)).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored).to_string();
    let pfx_hex: String = std::fs::read(&pfx).unwrap()[..32].iter().map(|b| format!("{b:02x}")).collect();
    let secret_key: String =
        std::fs::read(c.state_dir().join("secret.key")).unwrap().iter().map(|b| format!("{b:02x}")).collect();
    let secret_part = |t: &str| t.rsplit('_').next().unwrap().to_string();
    let secrets = [
        ("the administrator's token", secret_part(&admin)),
        ("a user's token", secret_part(&alice)),
        ("a join token", secret_part(&join)),
        // A burst node's token is never shown to the test: no join token shows at all.
        ("a join token of any node", "thj1_".to_string()),
        ("the certificate password", password.to_string()),
        ("the certificate", pfx_hex),
        ("a node's private key", node_key_body),
        ("the secret key", secret_key),
    ];
    assert!(logs.len() > 1000 && answers.len() > 1000, "the run left logs and answers to search");
    for (what, secret) in &secrets {
        for (place, text) in [("a log", &logs), ("an API answer", &answers), ("the stored state", &stored)] {
            assert!(!text.contains(secret.as_str()), "{what} shows in {place}");
        }
    }
}
