//! The HTTP client of the head node's API, and how a client finds the head node. Requests are
//! addressed by [`ApiPath`], which escapes what goes into a path.

use crate::api_path::ApiPath;
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thunderhead_server::{ACCESS_FILE, Access};

pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// `Bearer TOKEN`, sent with every request.
    authorization: Option<String>,
}

/// The default state directory: `$XDG_DATA_HOME/thunderhead`, else `~/.local/share/thunderhead`.
pub fn default_state_dir() -> PathBuf {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(data).join("thunderhead");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/thunderhead")
}

fn read_access(path: &Path) -> Result<Access> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the access file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("the access file {} is not valid", path.display()))
}

impl Client {
    /// Finds the head node and the token to use there. The head node: `--server`, else the
    /// access file (`--access` / `THUNDERHEAD_ACCESS`, else the one of the default state
    /// directory). The token: `--token` / `THUNDERHEAD_TOKEN`, else the access file's, if the
    /// file is of that same head node.
    pub fn resolve(
        server: Option<&str>,
        access: Option<&Path>,
        token: Option<&str>,
        ca: Option<&Path>,
    ) -> Result<Client> {
        let path = access.map(Path::to_path_buf).unwrap_or_else(|| default_state_dir().join(ACCESS_FILE));
        let file = if access.is_some() || path.exists() { Some(read_access(&path)?) } else { None };
        let url = match (server, &file) {
            (Some(url), _) => url.to_string(),
            (None, Some(file)) => file.url.clone(),
            (None, None) => bail!(
                "no head node given and none found at {} (start one with `thunderhead server`, or pass --server URL or --access FILE)",
                path.display()
            ),
        };
        let ours = file.filter(|f| same_server(&f.url, &url));
        let token = match (token, &ours) {
            (Some(token), _) => Some(token.to_string()),
            (None, Some(file)) if !file.token.is_empty() => Some(file.token.clone()),
            (None, _) => None,
        };
        let ca = match (ca, &ours) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the cluster's certificate {} (--ca)", path.display()))?,
            ),
            (None, Some(file)) if !file.ca.is_empty() => Some(file.ca.clone()),
            (None, _) => None,
        };
        Client::new(&url, token.as_deref(), ca.as_deref())
    }

    /// The head node an access file names, with its token and certificate.
    pub fn from_access(path: &Path) -> Result<Client> {
        let access = read_access(path)?;
        Client::new(&access.url, Some(&access.token), Some(&access.ca).filter(|c| !c.is_empty()).map(|c| c.as_str()))
    }

    /// A client of the head node at `url`; an `https://` head node is verified against the
    /// cluster's certificate `ca` (PEM) only.
    pub fn new(url: &str, token: Option<&str>, ca: Option<&str>) -> Result<Client> {
        let mut config =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60)));
        if url.starts_with("https://") {
            use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
            let pem = ca.with_context(|| {
                format!(
                    "the head node at {url} speaks TLS: give its cluster certificate with --ca FILE (the ca.pem in its state directory), or use its access file"
                )
            })?;
            let cert = Certificate::from_pem(pem.as_bytes())
                .map_err(|e| anyhow!("the cluster's certificate is not a PEM certificate: {e}"))?
                .to_owned();
            config = config.tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::Rustls)
                    .root_certs(RootCerts::Specific(Arc::new(vec![cert])))
                    .build(),
            );
        }
        Ok(Client {
            base: url.trim_end_matches('/').to_string(),
            agent: config.build().into(),
            authorization: token.map(|t| format!("Bearer {t}")),
        })
    }

    fn with_token<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    fn answer(&self, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value> {
        let mut body = self.answer_as_sent(result)?;
        crate::terminal::for_display(&mut body);
        Ok(body)
    }

    /// An answer as the head node sent it, for data the CLI uses rather than shows (names of
    /// files to write, locations to fetch): escaping would change them.
    fn answer_as_sent(&self, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value> {
        let mut response = result.map_err(|e| {
            anyhow!("cannot reach the head node at {}: {e} (is `thunderhead server` running there?)", self.base)
        })?;
        let status = response.status();
        let body: Value = response.body_mut().with_config().limit(1 << 30).read_json().with_context(|| {
            format!("the head node at {} sent an answer that is not JSON (status {status})", self.base)
        })?;
        if status.is_success() {
            return Ok(body);
        }
        match body.pointer("/error/message").and_then(Value::as_str) {
            Some(message) => Err(anyhow!("{}", thunderhead_core::text::escape(message))),
            None => Err(anyhow!("the head node answered {status}: {body}")),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &ApiPath) -> Result<T> {
        let value = self.answer(self.with_token(self.agent.get(format!("{}{path}", self.base))).call())?;
        Ok(serde_json::from_value(value)?)
    }

    /// Like [`Client::get`], with the answer as sent: for names and locations the CLI uses.
    pub fn get_data<T: DeserializeOwned>(&self, path: &ApiPath) -> Result<T> {
        let value = self.answer_as_sent(self.with_token(self.agent.get(format!("{}{path}", self.base))).call())?;
        Ok(serde_json::from_value(value)?)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &ApiPath, body: &impl Serialize) -> Result<T> {
        let value = self.answer(self.with_token(self.agent.post(format!("{}{path}", self.base))).send_json(body))?;
        Ok(serde_json::from_value(value)?)
    }

    pub fn patch<T: DeserializeOwned>(&self, path: &ApiPath, body: &impl Serialize) -> Result<T> {
        let value = self.answer(self.with_token(self.agent.patch(format!("{}{path}", self.base))).send_json(body))?;
        Ok(serde_json::from_value(value)?)
    }

    /// Sends a file as the body of a PUT, streamed.
    pub fn put_file<T: DeserializeOwned>(&self, path: &ApiPath, file: &Path) -> Result<T> {
        let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        // The head node refuses a bad upload before its body: it is not sent until the head node
        // says to go on.
        let request = self.with_token(self.agent.put(format!("{}{path}", self.base))).header("Expect", "100-continue");
        let value = self.answer(request.send(f))?;
        Ok(serde_json::from_value(value)?)
    }

    /// Downloads the body of a GET into a file, streamed.
    pub fn download(&self, path: &ApiPath, to: &Path) -> Result<u64> {
        let mut response = self
            .with_token(self.agent.get(format!("{}{path}", self.base)))
            .call()
            .map_err(|e| anyhow!("cannot reach the head node at {}: {e}", self.base))?;
        if !response.status().is_success() {
            let mut body: Value = response.body_mut().read_json().unwrap_or(Value::Null);
            crate::terminal::for_display(&mut body);
            let message = body.pointer("/error/message").and_then(Value::as_str).unwrap_or("the download failed");
            return Err(anyhow!("{message}"));
        }
        let mut out = std::fs::File::create(to).with_context(|| format!("cannot write {}", to.display()))?;
        let n = std::io::copy(&mut response.body_mut().as_reader(), &mut out)?;
        Ok(n)
    }

    pub fn delete_json<T: DeserializeOwned>(&self, path: &ApiPath) -> Result<T> {
        let value = self.answer(self.with_token(self.agent.delete(format!("{}{path}", self.base))).call())?;
        Ok(serde_json::from_value(value)?)
    }

    pub fn delete(&self, path: &ApiPath) -> Result<()> {
        self.answer(self.with_token(self.agent.delete(format!("{}{path}", self.base))).call())?;
        Ok(())
    }
}

/// Whether two URLs name the same head node (so an access file's token may go to it).
fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}
