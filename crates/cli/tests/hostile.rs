//! End-to-end: a hostile user of a running head node. A `User` token, a join token and raw
//! requests try what the head node must refuse, against the real binary; each refusal changes
//! nothing and the head node goes on answering.

mod common;

use common::Cluster;
use serde_json::Value;
use std::process::{Command, Output};

fn token_of(added: &Value) -> String {
    added["token"].as_str().expect("a token is shown when issued").to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A raw request with `token` (none when empty); returns the status and the body.
fn api(c: &Cluster, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--cacert", c.ca_file().to_str().unwrap(), "-X", method, "-w", "\n%{http_code}"]).args([
        "-H",
        "Content-Type: application/json",
        "--data-raw",
        body,
    ]);
    if !token.is_empty() {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd.arg(format!("{}{path}", c.url())).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
    (status.parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The head node still answers, within a second.
fn still_answers(c: &Cluster) {
    let started = std::time::Instant::now();
    c.th(&["node", "list"]);
    assert!(started.elapsed().as_secs_f64() < 5.0, "node list took {:?}", started.elapsed());
}

#[test]
fn a_request_that_once_panicked_the_head_node_is_refused_with_the_limit_named() {
    let mut c = Cluster::start();
    let alice = token_of(&c.json(&["user", "add", "alice", "--role", "User"]));
    let stars = "*".repeat(70_000);
    // Sweep substitution of a 70,000-asterisk run panicked inside the actor; every later request
    // then got "the head node is shutting down".
    let body = serde_json::json!({"command": ["echo", stars], "sweep": "1-3"}).to_string();
    let (status, answer) = api(&c, &alice, "POST", "/api/v1/jobs", &body);
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("70000") && message.contains("limit of 20"), "{message}");
    // The same through the CLI, and other limits of a submission, each named.
    let out = c.try_th_as(&alice, &["job", "submit", "--sweep", "1-2", "--", "echo", &"*".repeat(21)]);
    assert!(stderr(&out).contains("limit of 20"), "{}", stderr(&out));
    for (body, rule) in [
        (
            serde_json::json!({"command": ["true"], "sweep": "9223372036854775800-18446744073709551615"}),
            "9223372036854775807",
        ),
        (serde_json::json!({"command": ["true"], "cores_per_task": 4_000_000_000u32}), "65536"),
        (serde_json::json!({"command": ["true"], "retries": 4_000_000_000u32}), "limit of 1000"),
        (serde_json::json!({"command": vec!["x"; 5000]}), "4096"),
        (
            serde_json::json!({"command": ["true"], "inputs": [format!("thunderhead:jobs/1/{}", "*".repeat(30))]}),
            "limit of 20",
        ),
    ] {
        let (status, answer) = api(&c, &alice, "POST", "/api/v1/jobs", &body.to_string());
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(rule), "{rule}: {answer}");
    }
    still_answers(&c);
    assert!(!c.server_log().contains("panicked"), "no handler panicked:\n{}", c.server_log());

    // Indices up to the largest the store holds run, and are listed exactly.
    c.start_agent("box", 2);
    common::eventually(20, "box to join", || {
        c.json(&["node", "list"]).as_array().map(|a| !a.is_empty()).and_then(|ok| ok.then_some(()))
    });
    c.th(&["node", "online", "box"]);
    let id = c.submit(&["--sweep", "9223372036854775800-9223372036854775807", "--", "echo", "*"]);
    assert!(c.try_th(&["job", "wait", &id.to_string()]).status.success());
    let tasks = c.json(&["task", "list", &id.to_string()]);
    let mut indices: Vec<u64> = tasks.as_array().unwrap().iter().map(|t| t["index"].as_u64().unwrap()).collect();
    indices.sort_unstable();
    assert_eq!(indices, (9223372036854775800..=9223372036854775807).collect::<Vec<u64>>());
    let out = c.th(&["task", "output", &format!("{id}.9223372036854775807")]);
    assert_eq!(out.trim(), "9223372036854775807");
}

#[test]
fn a_user_reaches_no_other_users_job_by_any_route_or_staging_form() {
    let c = Cluster::start();
    let alice = token_of(&c.json(&["user", "add", "alice", "--role", "User"]));
    let bob = token_of(&c.json(&["user", "add", "bob", "--role", "User"]));
    // Bob's job has an input file staged into its area.
    let data = c.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("secret1.txt"), "bob's data\n").unwrap();
    let input = format!("{}:in.txt", data.join("secret*.txt").display());
    let out =
        c.try_th_as(&bob, &["--json", "job", "submit", "--sweep", "1-1", "--input", &input, "--", "cat", "in.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bobs: u64 = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"].as_u64().unwrap();
    let stored = c.state_dir().join(format!("blobs/jobs/{bobs}/inputs/secret1.txt"));
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "bob's data\n");

    // Every job route on bob's job.
    for (method, path) in [
        ("GET", format!("/api/v1/jobs/{bobs}")),
        ("POST", format!("/api/v1/jobs/{bobs}/cancel")),
        ("POST", format!("/api/v1/jobs/{bobs}/requeue")),
        ("GET", format!("/api/v1/jobs/{bobs}/tasks")),
        ("GET", format!("/api/v1/jobs/{bobs}/tasks/1")),
        ("GET", format!("/api/v1/jobs/{bobs}/outputs")),
        ("PUT", format!("/api/v1/jobs/{bobs}/inputs/secret1.txt")),
        ("GET", format!("/api/v1/blobs?location=thunderhead:jobs/{bobs}/inputs/secret1.txt")),
        ("GET", "/api/v1/blobs?location=thunderhead:jobs/%2A/inputs/secret1.txt".to_string()),
    ] {
        let (status, answer) = api(&c, &alice, method, &path, "{}");
        assert!(status == 403 || status == 400, "{method} {path}: {status} {answer}");
    }
    // Every staging form that names bob's files, or another store, at submission.
    let area = format!("thunderhead:jobs/{bobs}");
    for args in [
        vec!["--input".to_string(), format!("{area}/inputs/secret1.txt:in.txt")],
        vec!["--input".into(), format!("{area}/inputs/secret*.txt:in.txt")],
        vec!["--input".into(), "thunderhead:jobs/*/inputs/secret1.txt:in.txt".into()],
        vec!["--input".into(), format!("thunderhead:jobs/0{bobs}/inputs/secret1.txt:in.txt")],
        vec!["--input".into(), format!("thunderhead:jobs/{bobs}/../{bobs}/inputs/secret1.txt:in.txt")],
        vec!["--input".into(), "thunderhead:shared/anything:in.txt".into()],
        vec!["--output".into(), format!("out.txt:{area}/inputs/")],
        vec!["--output".into(), format!("out.txt:{area}/1/")],
        vec!["--output".into(), "out*.txt:thunderhead:jobs/*/".into()],
        vec!["--output".into(), "out.txt:thunderhead:packages/".into()],
        // A prefix that is not closed by a / would run on into jobs 40, 41, …
        vec!["--output".into(), "out.txt:thunderhead:jobs/4".into()],
        vec!["--input".into(), "file:///etc/passwd:in.txt".into()],
        vec!["--input".into(), "s3://bucket/key?endpoint=http://127.0.0.1:9:in.txt".into()],
        vec!["--input".into(), "az://account/container/key:in.txt".into()],
    ] {
        let mut all = vec!["job", "submit", "--sweep", "1-2"];
        all.extend(args.iter().map(String::as_str));
        all.extend(["--", "true"]);
        let out = c.try_th_as(&alice, &all);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("not yours")
                || err.contains("outside your jobs")
                || err.contains("names no job")
                || err.contains("package area")
                || err.contains("--file-root")
                || err.contains("not in a blob store")
                || err.contains("not a key")
                || err.contains("not its area"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(c.json(&["job", "list"]).as_array().unwrap().len(), 1, "nothing was submitted");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "bob's data\n", "bob's file is untouched");
    // Alice's own area works as before.
    std::fs::write(data.join("mine1.txt"), "alice's\n").unwrap();
    let mine = format!("{}:in.txt", data.join("mine*.txt").display());
    assert!(c.try_th_as(&alice, &["job", "submit", "--sweep", "1-1", "--input", &mine, "--", "true"]).status.success());
}

#[test]
fn a_join_token_cannot_take_the_name_of_a_node_that_has_one() {
    let mut c = Cluster::start();
    c.burst("burst", 1, "Small");
    c.start_agent("onprem", 1);
    common::eventually(20, "onprem to join", || {
        c.json(&["node", "list"]).as_array().unwrap().iter().any(|n| n["name"] == "onprem").then_some(())
    });
    let token = c.join_token();
    for name in ["LocalCN-0001", "onprem"] {
        let body = serde_json::json!({"token": token, "name": name}).to_string();
        let (status, answer) = api(&c, "", "POST", "/agent/v1/join", &body);
        assert_eq!(status, 403, "{name}: {answer}");
        assert!(answer.get("certificate").is_none());
    }
    // The nodes keep their agents and their work.
    let id = c.submit(&["--sweep", "1-20", "--", "true"]);
    assert!(c.try_th(&["job", "wait", &id.to_string()]).status.success());
    let nodes = c.json(&["node", "list"]);
    for n in nodes.as_array().unwrap() {
        assert_eq!(n["connected"], true, "{n}");
    }
    // A node's certificate reaches only the files its own tasks name: not another job's input,
    // nor any area of the store.
    let data = c.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("private1.txt"), "private\n").unwrap();
    let input = format!("{}:in.txt", data.join("private*.txt").display());
    let staged = c.submit(&["--sweep", "1-1", "--input", &input, "--", "cat", "in.txt"]);
    assert!(c.try_th(&["job", "wait", &staged.to_string()]).status.success());
    let agent_dir = c.dir.path().join("agent-onprem");
    for (method, location) in [
        ("GET", format!("thunderhead:jobs/{staged}/inputs/private1.txt")),
        ("PUT", format!("thunderhead:jobs/{staged}/1/planted.txt")),
        ("PUT", "thunderhead:shared/planted.txt".to_string()),
    ] {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, "--data-raw", "x"])
            .args(["--cacert", c.ca_file().to_str().unwrap()])
            .args(["--cert", agent_dir.join("node.pem").to_str().unwrap()])
            .args(["--key", agent_dir.join("node.key").to_str().unwrap()])
            .arg(format!("{}/agent/v1/blobs?location={}", c.url(), location.replace(':', "%3A").replace('/', "%2F")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{method} {location}: {}", stderr(&out));
    }
    assert!(!c.state_dir().join(format!("blobs/jobs/{staged}/1/planted.txt")).exists());

    // Once an administrator revokes the on-premises node, its name may join again.
    c.th(&["node", "revoke", "onprem"]);
    let body = serde_json::json!({"token": token, "name": "onprem"}).to_string();
    let (status, answer) = api(&c, "", "POST", "/agent/v1/join", &body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer["certificate"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
}

#[test]
fn untrusted_text_never_reaches_a_terminal_or_a_log_raw() {
    let c = Cluster::start();
    let alice = token_of(&c.json(&["user", "add", "alice", "--role", "User"]));
    // Names refuse control characters at the API.
    for body in [
        serde_json::json!({"name": "ok\n2026-12-07T00:00:00Z INFO forged", "command": ["true"]}),
        serde_json::json!({"name": "\u{1b}[2Jclear", "command": ["true"]}),
        serde_json::json!({"tasks": [{"name": "t\r1", "command": ["true"]}]}),
    ] {
        let (status, answer) = api(&c, &alice, "POST", "/api/v1/jobs", &body.to_string());
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("control character"), "{answer}");
    }
    // A command may hold them; the CLI prints them spelled out.
    let id = c.submit(&["--sweep", "1-1", "--", "echo", "\u{1b}[31mred\nnext"]);
    for args in [vec!["job", "view", &*id.to_string()], vec!["job", "list"]] {
        let shown = c.th(&args);
        assert!(!shown.contains('\u{1b}'), "{args:?} printed an escape code: {shown:?}");
    }
    let shown = c.th(&["job", "view", &id.to_string()]);
    assert!(shown.contains("\\u{1b}[31mred\\nnext"), "{shown}");
    // Names from unauthenticated requests are logged escaped: no forged line.
    let body =
        serde_json::json!({"token": "thj1_x_y", "name": "n1\n2026-12-07T00:00:00Z  INFO forged line"}).to_string();
    let (status, _) = api(&c, "", "POST", "/agent/v1/join", &body);
    assert!(status == 400 || status == 401, "{status}");
    let log = c.server_log();
    assert!(log.lines().all(|l| !l.starts_with("2026-12-07T00:00:00Z")), "a forged log line:\n{log}");
    assert!(!log.contains('\u{1b}'), "no escape codes in the log");
}

#[test]
fn the_cli_ends_quietly_when_its_reader_goes_away() {
    let c = Cluster::start();
    c.th(&["template", "create", "many", "--provider", "local", "--quota-cores", "2000"]);
    c.th(&["node", "add", "--template", "many", "--count", "1500", "--size", "Small"]);
    // More than a pipe holds, read by a reader that leaves after 10 bytes.
    let script = format!("set -o pipefail; '{}' node list | head -c 10 >/dev/null", common::BIN);
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("THUNDERHEAD_ACCESS", c.access_file())
        .env_remove("THUNDERHEAD_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn user_names_differ_by_more_than_case_and_a_big_cancel_answers_a_summary() {
    let c = Cluster::start();
    let err = c.th_fails(&["user", "add", "ADMIN", "--role", "User"]);
    assert!(err.contains("admin exists"), "{err}");
    c.json(&["user", "add", "Alice", "--role", "User"]);
    assert!(c.th_fails(&["user", "add", "alice"]).contains("Alice exists"));
    c.json(&["user", "token", "ALICE"]);
    let users = c.json(&["user", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 2, "one Alice, whatever the case: {users}");

    // A job file of 20,000 tasks: its cancel answers counts, not the task list.
    let tasks: Vec<Value> =
        (0..20_000).map(|i| serde_json::json!({"name": format!("t{i}"), "command": ["true"]})).collect();
    let file = c.dir.path().join("job.json");
    std::fs::write(&file, serde_json::json!({"tasks": tasks}).to_string()).unwrap();
    let id = c.json(&["job", "submit", "--file", file.to_str().unwrap()])["id"].as_u64().unwrap();
    let answer = c.th(&["--json", "job", "cancel", &id.to_string()]);
    assert!(answer.len() < 8_000, "{} bytes", answer.len());
    let view: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(view["tasks"]["Canceled"], 20_000);
    assert_eq!(view["spec"]["tasks"]["count"], 20_000);
}
