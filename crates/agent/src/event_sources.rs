//! Where the agent's events come from besides its tasks: each source is a task of its own
//! feeding the event loop. The connection to the head node (its URL, connecting after a delay,
//! reading its messages), the process's termination signals, and the heartbeat tick.

use crate::event_loop::{AgentError, Event};
use crate::link::{Link, Ws};
use futures_util::StreamExt;
use std::time::Duration;
use thunderhead_proto::{AGENT_PATH, ServerMsg};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// `ws://host:port/agent/v1` → `http://host:port`.
pub(crate) fn http_base(ws_url: &str) -> String {
    let http = ws_url.replacen("ws://", "http://", 1).replacen("wss://", "https://", 1);
    http.strip_suffix(AGENT_PATH).unwrap_or(&http).to_string()
}

pub(crate) fn websocket_url(server: &str) -> Result<String, AgentError> {
    let rest = server
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| server.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .ok_or_else(|| AgentError::Setup(format!("server URL \"{server}\" must start with http:// or https://")))?;
    Ok(format!("{}{AGENT_PATH}", rest.trim_end_matches('/')))
}

pub(crate) fn spawn_connector(link: Link, url: String, events: mpsc::UnboundedSender<Event>, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let connected = match link.websocket(&url).await {
            Ok(ws) => link.head(&http_base(&url)).map(|head| (ws, head)),
            Err(e) => Err(e),
        };
        let _ = match connected {
            Ok((ws, head)) => events.send(Event::Connected(Box::new(ws), Box::new(head))),
            Err(e) => events.send(Event::Disconnected(e)),
        };
    });
}

pub(crate) fn spawn_reader(mut stream: futures_util::stream::SplitStream<Ws>, events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            let text = match frame {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => {
                    let _ = events.send(Event::Disconnected(format!("connection error: {e}")));
                    return;
                }
            };
            match thunderhead_proto::decode::<ServerMsg>(text.as_str()) {
                Ok(msg) => {
                    let _ = events.send(Event::Message(msg));
                }
                Err(e) => {
                    let _ = events.send(Event::Disconnected(format!("bad message from the head node: {e}")));
                    return;
                }
            }
        }
        let _ = events.send(Event::Disconnected("the head node closed the connection".into()));
    });
}

pub(crate) fn spawn_signal_watch(events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = events.send(Event::Terminate);
    });
}

pub(crate) fn spawn_heartbeat(events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if events.send(Event::Heartbeat).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_websocket_urls() {
        assert_eq!(websocket_url("http://127.0.0.1:7998").unwrap(), "ws://127.0.0.1:7998/agent/v1");
        assert_eq!(websocket_url("https://head:443/").unwrap(), "wss://head:443/agent/v1");
        assert!(websocket_url("ftp://x").unwrap_err().to_string().contains("http://"));
    }
}
