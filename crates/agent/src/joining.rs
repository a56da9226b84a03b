//! Joining the cluster: how an agent reaches its head node, plain or over TLS with its node
//! certificate, and how it trades a join token for that certificate the first time.

use crate::event_loop::{AgentConfig, AgentError};
use crate::event_sources::http_base;
use crate::link::{Head, Identity, Link};
use std::path::{Path, PathBuf};

const NODE_CERT: &str = "node.pem";
const NODE_KEY: &str = "node.key";

/// How this agent reaches its head node. Over TLS it shows the node certificate in its work
/// directory; without one it first trades its join token for one. The token is wiped after.
pub(crate) async fn connect_link(
    config: &AgentConfig,
    join_token: Option<String>,
    ws_urls: &[String],
) -> Result<Link, AgentError> {
    let files = (config.work_dir.join(NODE_CERT), config.work_dir.join(NODE_KEY));
    let link = establish(ws_urls, config.ca_pem.as_deref(), join_token.as_deref(), &config.name, Some(files)).await;
    if let Some(token) = join_token {
        crate::join_grant::wipe(token);
    }
    link
}

/// The link of an agent named `name`: plain for `ws://` head nodes; else TLS with the node
/// certificate in `files` (certificate, key), or a new one traded for `join_token` (and kept
/// in `files`, if given).
pub(crate) async fn establish(
    ws_urls: &[String],
    ca: Option<&str>,
    join_token: Option<&str>,
    name: &str,
    files: Option<(PathBuf, PathBuf)>,
) -> Result<Link, AgentError> {
    let tls = ws_urls.iter().any(|u| u.starts_with("wss://"));
    if !tls {
        return Ok(Link::plain());
    }
    let ca = ca.ok_or_else(|| {
        AgentError::Setup(
            "the head node speaks TLS: give its cluster certificate with --ca FILE (the ca.pem in its state directory)"
                .into(),
        )
    })?;
    if let Some((cert_path, key_path)) = &files
        && let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read_to_string(cert_path), std::fs::read_to_string(key_path))
    {
        return Link::tls(ca, Some(Identity { cert_pem, key_pem })).map_err(AgentError::Setup);
    }
    let token = join_token.map(str::to_string).ok_or_else(|| {
        AgentError::Setup(
            "this agent has no node certificate yet: give a join token with --join-token (an Administrator makes one with: thunderhead token create)"
                .to_string(),
        )
    })?;
    let anonymous = Link::tls(ca, None).map_err(AgentError::Setup)?;
    let request = thunderhead_proto::JoinRequest { token, name: name.to_string() };
    let mut last = String::new();
    for url in ws_urls {
        let head = anonymous.head(&http_base(url)).map_err(AgentError::Setup)?;
        let request = request.clone();
        let joined = tokio::task::spawn_blocking(move || join(&head, &request))
            .await
            .map_err(|e| AgentError::Setup(e.to_string()))?;
        match joined {
            Ok(reply) => {
                if let Some((cert_path, key_path)) = &files {
                    write_private(key_path, &reply.key)?;
                    std::fs::write(cert_path, &reply.certificate)
                        .map_err(|e| AgentError::Setup(format!("cannot write {}: {e}", cert_path.display())))?;
                    tracing::info!(certificate = %cert_path.display(), "joined the cluster");
                }
                let identity = Identity { cert_pem: reply.certificate, key_pem: reply.key };
                return Link::tls(ca, Some(identity)).map_err(AgentError::Setup);
            }
            Err(JoinError::Refused(reason)) => return Err(AgentError::refused(&reason)),
            Err(JoinError::Unreachable(e)) => last = e,
        }
    }
    Err(AgentError::Setup(format!("cannot join: {last}")))
}

enum JoinError {
    Refused(String),
    Unreachable(String),
}

fn join(head: &Head, request: &thunderhead_proto::JoinRequest) -> Result<thunderhead_proto::JoinReply, JoinError> {
    let url = format!("{}{}", head.base, thunderhead_proto::JOIN_PATH);
    let mut response = head
        .http
        .post(&url)
        .send_json(request)
        .map_err(|e| JoinError::Unreachable(format!("cannot reach the head node: {e}")))?;
    let body: serde_json::Value = response.body_mut().read_json().map_err(|e| JoinError::Unreachable(e.to_string()))?;
    if response.status().is_server_error() {
        // The head node is busy or shedding connections: the join did not happen; try again.
        return Err(JoinError::Unreachable(format!("the head node answered {}", response.status())));
    }
    if !response.status().is_success() {
        let reason = body.pointer("/error/message").and_then(|m| m.as_str()).unwrap_or("the join was refused");
        return Err(JoinError::Refused(reason.to_string()));
    }
    serde_json::from_value(body)
        .map_err(|e| JoinError::Unreachable(format!("the head node's answer is not a certificate: {e}")))
}

fn write_private(path: &Path, text: &str) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| AgentError::Setup(format!("cannot write {}: {e}", path.display())))
}
