//! The agent gateway: one WebSocket per agent at `/agent/v1`.
//!
//! The first frame must be a `hello` of a protocol version this head node speaks. A malformed
//! frame closes that agent's connection (the agent reconnects); it never affects the server.
//! Over TLS the agent must have shown a node certificate this head node issued to the node it
//! names and has not revoked; a refusal is logged and tells the agent why.

use crate::actor::{Event, Handle, Outbound, task_attempt};
use crate::enrol::Enrolment;
use crate::tls::Peer;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thunderhead_core::TaskKey;
use thunderhead_core::cluster::{Hello, TaskResult};
use thunderhead_proto::{AGENT_PATH, AgentMsg, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, ServerMsg};
use tokio::sync::mpsc;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
struct Gateway {
    handle: Handle,
    enrolment: Option<Arc<Enrolment>>,
}

pub fn router(handle: Handle, enrolment: Option<Arc<Enrolment>>) -> Router {
    Router::new().route(AGENT_PATH, get(upgrade)).with_state(Gateway { handle, enrolment })
}

/// Whether the agent at `peer` may act as node `name`.
pub fn admit(enrolment: Option<&Enrolment>, peer: &Peer, name: &str) -> Result<(), String> {
    let Some(enrolment) = enrolment else { return Ok(()) };
    let owner = enrolment.node_of_peer(peer)?;
    if owner != name {
        return Err(format!("its certificate is node {owner}'s, and it claims to be {name}"));
    }
    Ok(())
}

async fn upgrade(
    State(Gateway { handle, enrolment }): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    ws: WebSocketUpgrade,
) -> Response {
    // Small buffers: most agents send a heartbeat now and then, and a head node holds thousands
    // of them (the default of 128 KiB each would cost over 600 MiB for 5,000 agents).
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(8 << 10)
        .write_buffer_size(8 << 10)
        .on_upgrade(move |socket| session(socket, handle, enrolment, peer))
}

fn refuse_frame(reason: &str) -> Message {
    Message::Text(thunderhead_proto::encode(&ServerMsg::Refused { reason: reason.to_string() }).into())
}

async fn session(socket: WebSocket, handle: Handle, enrolment: Option<Arc<Enrolment>>, peer: Peer) {
    let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    let hello = match first {
        Ok(Some(Ok(Message::Text(text)))) => match thunderhead_proto::decode::<AgentMsg>(text.as_str()) {
            Ok(AgentMsg::Hello { protocol, name, cores, running, completed, leaves_at, .. }) => {
                if protocol != PROTOCOL_VERSION {
                    let reason = format!(
                        "agent protocol {protocol} is not supported by this head node (it speaks {PROTOCOL_VERSION}); run the same thunderhead version on both"
                    );
                    let _ = sink.send(refuse_frame(&reason)).await;
                    return;
                }
                if let Err(why) = admit(enrolment.as_deref(), &peer, &name) {
                    tracing::warn!(peer = %peer.addr, node = %name, reason = %why, "refused an agent");
                    let _ = sink.send(refuse_frame(&format!("the head node refused this agent: {why}"))).await;
                    return;
                }
                Hello {
                    name,
                    cores,
                    running: running.into_iter().map(task_attempt).collect(),
                    completed: completed.into_iter().map(task_attempt).collect(),
                    leaves_at,
                }
            }
            Ok(_) => {
                let _ = sink.send(refuse_frame("the first message must be hello")).await;
                return;
            }
            Err(e) => {
                tracing::warn!(session, error = %e, "malformed hello; closing the connection");
                let _ = sink.send(refuse_frame(&e.to_string())).await;
                return;
            }
        },
        _ => return,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    handle.send(Event::AgentHello { session, hello, tx });
    let mut writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Outbound::Msg(msg) => {
                    if sink.send(Message::Text(thunderhead_proto::encode(&msg).into())).await.is_err() {
                        break;
                    }
                }
                Outbound::Close(reason) => {
                    tracing::info!(session, %reason, "closing agent connection");
                    let _ = sink.close().await;
                    break;
                }
            }
        }
    });
    loop {
        // A connection the head node closes (replaced, silent) ends its reader too.
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = &mut writer => break,
        };
        let Some(frame) = frame else { break };
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        match thunderhead_proto::decode::<AgentMsg>(text.as_str()) {
            Ok(AgentMsg::Results { results }) => {
                let results = results
                    .into_iter()
                    .map(|r| TaskResult {
                        key: TaskKey { job: r.task.job, index: r.task.index },
                        attempt: r.task.attempt,
                        exit_code: r.exit_code,
                        message: r.message,
                        started_at: r.started_at,
                        ended_at: r.ended_at,
                        stdout: r.stdout,
                        stderr: r.stderr,
                        staging_error: r.staging_error,
                    })
                    .collect();
                handle.send(Event::AgentResults { session, results });
            }
            Ok(AgentMsg::Heartbeat { metrics }) => handle.send(Event::AgentHeard {
                session,
                metrics: metrics.map(|m| thunderhead_core::view::NodeMetrics {
                    cpu_percent: m.cpu_percent.min(100),
                    memory_used_mb: m.memory_used_mb,
                    memory_total_mb: m.memory_total_mb,
                }),
            }),
            Ok(AgentMsg::Installed { results }) => {
                let results = results
                    .into_iter()
                    .map(|r| thunderhead_core::cluster::packages::Installed {
                        name: r.name,
                        version: r.version,
                        error: r.error,
                    })
                    .collect();
                handle.send(Event::AgentInstalled { session, results });
            }
            Ok(AgentMsg::Hello { .. }) => {
                tracing::warn!(session, "a second hello on one connection; closing it");
                break;
            }
            Err(e) => {
                tracing::warn!(session, error = %e, "malformed agent message; closing the connection");
                break;
            }
        }
    }
    writer.abort();
    handle.send(Event::AgentGone { session });
}
