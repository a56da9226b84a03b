//! Light agents: many simulated nodes in one process, for rehearsing a cluster at scale.
//!
//! A light agent speaks the real protocol over a real WebSocket — hello, heartbeats, results,
//! acknowledgements — but runs no process: every task it is given ends at once with exit code
//! 0. A head node cannot tell it from a node whose tasks take no time.

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use thunderhead_proto::{AgentMsg, PROTOCOL_VERSION, ServerMsg, TaskResult};
use tokio_tungstenite::tungstenite::Message;

/// Runs one light agent until the head node shuts it down or `stop` fires.
/// Over TLS it first joins with `join` (the cluster's certificate and a join token) and keeps
/// its node certificate in memory.
pub async fn run_light(
    server: String,
    name: String,
    cores: u32,
    join: Option<(String, String)>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let urls: Vec<String> =
        server.split(',').map(str::trim).filter_map(|u| crate::event_sources::websocket_url(u).ok()).collect();
    if urls.is_empty() {
        return;
    }
    let (ca, token) = match &join {
        Some((ca, token)) => (Some(ca.as_str()), Some(token.as_str())),
        None => (None, None),
    };
    let link = loop {
        match crate::joining::establish(&urls, ca, token, &name, None).await {
            Ok(link) => break link,
            Err(crate::AgentError::Refused(reason)) => {
                tracing::warn!(%name, %reason, "a light agent was refused");
                return;
            }
            Err(e) => {
                tracing::debug!(%name, error = %e, "a light agent could not join or connect; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = &mut stop => return,
                }
            }
        }
    };
    // Joined: the token is wanted no more.
    if let Some((_, token)) = join {
        crate::join_grant::wipe(token);
    }
    let mut attempt = 0usize;
    loop {
        let url = &urls[attempt % urls.len()];
        attempt += 1;
        let session = async {
            let Ok(ws) = link.websocket(url).await else { return false };
            let (mut sink, mut stream) = ws.split();
            let hello = AgentMsg::Hello {
                protocol: PROTOCOL_VERSION,
                agent_version: env!("CARGO_PKG_VERSION").into(),
                name: name.clone(),
                cores,
                running: vec![],
                completed: vec![],
                leaves_at: None,
            };
            if sink.send(Message::text(thunderhead_proto::encode(&hello))).await.is_err() {
                return false;
            }
            let mut beat = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = beat.tick() => {
                        let beat = AgentMsg::Heartbeat {
                            // It runs on this machine, so it reports this machine's measurements.
                            metrics: crate::metrics::shared_sample(),
                        };
                        if sink.send(Message::text(thunderhead_proto::encode(&beat))).await.is_err() {
                            return false;
                        }
                    }
                    frame = stream.next() => {
                        let Some(Ok(Message::Text(text))) = frame else { return false };
                        match thunderhead_proto::decode::<ServerMsg>(text.as_str()) {
                            Ok(ServerMsg::Welcome { heartbeat_secs, .. }) => {
                                beat = tokio::time::interval(Duration::from_secs(heartbeat_secs.max(1) as u64));
                            }
                            Ok(ServerMsg::Assign { tasks }) => {
                                let now = crate::now_millis();
                                let results = tasks
                                    .into_iter()
                                    .map(|a| TaskResult {
                                        task: a.task,
                                        exit_code: Some(0),
                                        message: None,
                                        started_at: now,
                                        ended_at: now,
                                        stdout: String::new(),
                                        stderr: String::new(),
                                        staging_error: None,
                                    })
                                    .collect();
                                let msg = AgentMsg::Results { results };
                                if sink.send(Message::text(thunderhead_proto::encode(&msg))).await.is_err() {
                                    return false;
                                }
                            }
                            Ok(ServerMsg::Shutdown | ServerMsg::Refused { .. }) => return true,
                            Ok(ServerMsg::Cancel { .. } | ServerMsg::Ack { .. }) => {}
                            // A light agent has no disk: its packages count as installed.
                            Ok(ServerMsg::Install { packages }) => {
                                let results = packages
                                    .into_iter()
                                    .map(|p| thunderhead_proto::InstallResult { name: p.name, version: p.version, error: None })
                                    .collect();
                                let msg = AgentMsg::Installed { results };
                                if sink.send(Message::text(thunderhead_proto::encode(&msg))).await.is_err() {
                                    return false;
                                }
                            }
                            Err(_) => return false,
                        }
                    }
                }
            }
        };
        tokio::select! {
            finished = session => {
                if finished {
                    return;
                }
            }
            _ = &mut stop => return,
        }
        let pause = Duration::from_millis(if attempt < urls.len() { 50 } else { 500 });
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut stop => return,
        }
    }
}
