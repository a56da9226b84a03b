//! How an agent reaches its head node: plain HTTP for a head node run with `--insecure-http`,
//! else TLS against the cluster's authority, showing the node certificate once the agent has
//! joined. The head node's certificate is checked for [`HEAD_NAME`] whatever address the agent
//! dials (the head node itself or a relay), so relays need no certificate of their own.

use std::sync::Arc;
use std::time::Duration;
use thunderhead_proto::HEAD_NAME;
use tokio::net::TcpStream;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The certificate a joined node proves itself with.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What an agent trusts and shows.
#[derive(Clone)]
pub struct Link {
    tls: Option<Tls>,
}

#[derive(Clone)]
struct Tls {
    ca_pem: String,
    identity: Option<Identity>,
    config: Arc<rustls::ClientConfig>,
}

/// The head node's HTTP side for transfers: where it is and the client to reach it with.
#[derive(Clone)]
pub struct Head {
    pub base: String,
    pub http: ureq::Agent,
}

/// `host:port` of an `http(s)://` or `ws(s)://` URL, and whether it is TLS.
pub fn authority(url: &str) -> Result<(String, bool), String> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("https://").or_else(|| url.strip_prefix("wss://")) {
        (r, true)
    } else if let Some(r) = url.strip_prefix("http://").or_else(|| url.strip_prefix("ws://")) {
        (r, false)
    } else {
        return Err(format!("URL \"{url}\" must start with http:// or https://"));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("URL \"{url}\" names no host"));
    }
    let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        host.to_string()
    } else {
        format!("{host}:{}", if tls { 443 } else { 80 })
    };
    Ok((with_port, tls))
}

impl Link {
    pub fn plain() -> Link {
        Link { tls: None }
    }

    /// TLS against the authority `ca_pem`, showing `identity` if the node has joined.
    pub fn tls(ca_pem: &str, identity: Option<Identity>) -> Result<Link, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        // The HTTP client takes the process's provider: the same one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| format!("the cluster's certificate (--ca) is not a PEM certificate: {e}"))?;
        roots.add(ca).map_err(|e| format!("the cluster's certificate (--ca) cannot be used: {e}"))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match &identity {
            Some(id) => {
                let cert = CertificateDer::from_pem_slice(id.cert_pem.as_bytes())
                    .map_err(|e| format!("the node certificate is damaged: {e} (remove it to join again)"))?;
                let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
                    .map_err(|e| format!("the node key is damaged: {e} (remove it to join again)"))?;
                builder
                    .with_client_auth_cert(vec![cert], key)
                    .map_err(|e| format!("the node certificate cannot be used: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Link { tls: Some(Tls { ca_pem: ca_pem.to_string(), identity, config: Arc::new(config) }) })
    }

    /// Opens the agent WebSocket at `url` (`ws(s)://HOST:PORT/agent/v1`).
    pub async fn websocket(&self, url: &str) -> Result<Ws, String> {
        let (addr, _) = authority(url)?;
        let tcp = TcpStream::connect(&addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(thunderhead_proto::MAX_MESSAGE_BYTES))
            .max_frame_size(Some(thunderhead_proto::MAX_MESSAGE_BYTES));
        let (request, connector) = match &self.tls {
            Some(tls) => {
                let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("443");
                (
                    format!("wss://{HEAD_NAME}:{port}{}", thunderhead_proto::AGENT_PATH),
                    Connector::Rustls(tls.config.clone()),
                )
            }
            None => (url.to_string(), Connector::Plain),
        };
        let (ws, _) = tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(config), Some(connector))
            .await
            .map_err(|e| format!("cannot open the agent connection to {addr}: {e}"))?;
        Ok(ws)
    }

    /// The HTTP side of the head node at `base` (`http(s)://HOST:PORT`).
    pub fn head(&self, base: &str) -> Result<Head, String> {
        let (addr, _) = authority(base)?;
        let builder = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60 * 60)))
            .http_status_as_error(false);
        let Some(tls) = &self.tls else {
            return Ok(Head { base: base.trim_end_matches('/').to_string(), http: builder.build().into() });
        };
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
        let ca = Certificate::from_pem(tls.ca_pem.as_bytes()).map_err(|e| e.to_string())?.to_owned();
        let mut tls_config =
            TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(RootCerts::Specific(Arc::new(vec![ca])));
        if let Some(id) = &tls.identity {
            let cert = Certificate::from_pem(id.cert_pem.as_bytes()).map_err(|e| e.to_string())?.to_owned();
            let key = PrivateKey::from_pem(id.key_pem.as_bytes()).map_err(|e| e.to_string())?.to_owned();
            tls_config = tls_config.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
        }
        let config = builder.tls_config(tls_config.build()).build();
        let resolver = ToHead { addr: addr.clone() };
        let http = ureq::Agent::with_parts(config, ureq::unversioned::transport::DefaultConnector::default(), resolver);
        let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("443");
        Ok(Head { base: format!("https://{HEAD_NAME}:{port}"), http })
    }
}

/// Resolves [`HEAD_NAME`] to the address the agent actually dials.
#[derive(Debug)]
struct ToHead {
    addr: String,
}

impl ureq::unversioned::resolver::Resolver for ToHead {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let real: ureq::http::Uri = format!("https://{}/", self.addr).parse().map_err(|_| ureq::Error::HostNotFound)?;
        ureq::unversioned::resolver::DefaultResolver::default().resolve(&real, config, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_come_from_urls_with_default_ports() {
        assert_eq!(authority("http://127.0.0.1:7998").unwrap(), ("127.0.0.1:7998".into(), false));
        assert_eq!(authority("https://head/x").unwrap(), ("head:443".into(), true));
        assert_eq!(authority("wss://head:9/agent/v1").unwrap(), ("head:9".into(), true));
        assert!(authority("ftp://x").unwrap_err().contains("http://"));
    }
}
