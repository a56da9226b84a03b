//! The proxy: a relay between a set's agents and the head node.
//!
//! It accepts TCP connections and copies bytes both ways to the head node, so agents that
//! cannot reach the head node directly reach it through their set's proxies. It knows nothing
//! of the protocol: the agent and head node speak to each other end to end through it (over
//! TLS, the proxy sees only ciphertext).

use crate::event_loop::AgentError;
use std::path::PathBuf;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The head node's URL, e.g. `http://127.0.0.1:7998`.
    pub server: String,
    /// Where to listen, e.g. `127.0.0.1:0` for a free port.
    pub listen: String,
    /// A file to write the URL agents use to reach this proxy, once it listens.
    pub address_file: Option<PathBuf>,
}

/// The `host:port` of an `http(s)://` URL, and its scheme.
fn authority(url: &str) -> Result<(String, &'static str), AgentError> {
    let (addr, tls) = crate::link::authority(url).map_err(AgentError::Setup)?;
    Ok((addr, if tls { "https" } else { "http" }))
}

/// Relays connections until the process is ended.
pub async fn run_proxy(config: ProxyConfig) -> Result<(), AgentError> {
    let (target, scheme) = authority(&config.server)?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| AgentError::Setup(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener.local_addr().map_err(|e| AgentError::Setup(e.to_string()))?;
    if let Some(file) = &config.address_file {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, format!("{scheme}://{addr}\n"))
            .and_then(|()| std::fs::rename(&tmp, file))
            .map_err(|e| AgentError::Setup(format!("cannot write {}: {e}", file.display())))?;
    }
    tracing::info!(listen = %addr, to = %target, "proxy relaying");
    loop {
        let (mut inbound, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let target = target.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&target).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::warn!(%peer, error = %e, "cannot reach the head node"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn authorities_come_from_http_urls() {
        assert_eq!(authority("http://127.0.0.1:7998").unwrap(), ("127.0.0.1:7998".into(), "http"));
        assert_eq!(authority("https://head:80/x").unwrap(), ("head:80".into(), "https"));
        assert!(authority("ftp://x").is_err());
    }

    #[test]
    fn bytes_go_both_ways_through_the_relay() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let echo_addr = echo.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = echo.accept().await.unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            });
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("address");
            let config = ProxyConfig {
                server: format!("http://{echo_addr}"),
                listen: "127.0.0.1:0".into(),
                address_file: Some(file.clone()),
            };
            tokio::spawn(run_proxy(config));
            let url = loop {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    break text.trim().to_string();
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            };
            let mut client = TcpStream::connect(url.trim_start_matches("http://")).await.unwrap();
            client.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 5];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello");
        });
    }
}
