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
        .args(["--server", &url, "job", "list"])
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
