//! The blob store over `object_store`.

use crate::{BlobError, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Uploads larger than this go in parts of this size.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// The public development key of the Azure storage emulator's account `devstoreaccount1`.
#[cfg(feature = "azure")]
const EMULATOR_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// Prefix of every key in the store.
    base: String,
    /// The URI it was opened with, for messages.
    uri: String,
}

/// What a transfer moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An account or bucket, the path after it, and the options of a URI.
type UriParts = (String, String, Vec<(String, String)>);

/// Splits `az://a/b/c?x=1&y=2` into (`a`, `b/c`, [(x, 1), (y, 2)]).
fn split(uri: &str, rest: &str) -> Result<UriParts> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (first, prefix) = path.split_once('/').unwrap_or((path, ""));
    if first.is_empty() {
        return Err(BlobError::BadUri { uri: uri.into(), rule: "names no account or bucket".into() });
    }
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| BlobError::BadUri {
            uri: uri.into(),
            rule: format!("has an option \"{pair}\" without a value"),
        })?;
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok((first.to_string(), prefix.trim_matches('/').to_string(), pairs))
}

fn option<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn check_options(uri: &str, pairs: &[(String, String)], known: &[&str]) -> Result<()> {
    match pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) => Err(BlobError::BadUri {
            uri: uri.into(),
            rule: format!("has an unknown option \"{k}\" (known: {})", known.join(", ")),
        }),
        None => Ok(()),
    }
}

#[cfg(any(feature = "azure", feature = "s3"))]
fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_timeout(std::time::Duration::from_secs(120))
        .with_connect_timeout(std::time::Duration::from_secs(10))
}

impl BlobStore {
    /// Opens the store a URI names; see the crate documentation for the forms.
    pub fn open(uri: &str) -> Result<BlobStore> {
        let bad = |rule: &str| BlobError::BadUri { uri: uri.into(), rule: rule.into() };
        let (store, base): (Arc<dyn ObjectStore>, String) = if let Some(dir) = uri.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(bad("is not an absolute directory (write file:///absolute/path)"));
            }
            std::fs::create_dir_all(dir).map_err(|e| BlobError::Local { path: dir.into(), reason: e.to_string() })?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| BlobError::Local { path: dir.into(), reason: e.to_string() })?;
            (Arc::new(local), String::new())
        } else if let Some(rest) = uri.strip_prefix("az://") {
            Self::azure(uri, rest)?
        } else if let Some(rest) = uri.strip_prefix("s3://") {
            Self::s3(uri, rest)?
        } else {
            return Err(bad("has a scheme this build does not know"));
        };
        Ok(BlobStore { store, base, uri: uri.to_string() })
    }

    #[cfg(feature = "azure")]
    fn azure(uri: &str, rest: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
        use object_store::azure::MicrosoftAzureBuilder;
        let (account, path, pairs) = split(uri, rest)?;
        check_options(uri, &pairs, &["endpoint"])?;
        let (container, prefix) = path.split_once('/').unwrap_or((&path, ""));
        if container.is_empty() {
            return Err(BlobError::BadUri {
                uri: uri.into(),
                rule: "names no container (az://ACCOUNT/CONTAINER)".into(),
            });
        }
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_account(&account)
            .with_container_name(container)
            .with_client_options(client_options());
        if let Some(endpoint) = option(&pairs, "endpoint") {
            builder = builder.with_endpoint(endpoint.to_string()).with_allow_http(endpoint.starts_with("http://"));
        }
        let has_credential = ["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_SAS_KEY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if account == "devstoreaccount1" && !has_credential {
            builder = builder.with_access_key(EMULATOR_KEY);
        }
        let store = builder
            .build()
            .map_err(|e| BlobError::BadUri { uri: uri.into(), rule: format!("cannot be opened: {e}") })?;
        Ok((Arc::new(store), prefix.to_string()))
    }

    #[cfg(not(feature = "azure"))]
    fn azure(uri: &str, _rest: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
        Err(BlobError::BadUri {
            uri: uri.into(),
            rule: "needs Azure support, which this build leaves out (build with the azure feature)".into(),
        })
    }

    #[cfg(feature = "s3")]
    fn s3(uri: &str, rest: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
        use object_store::aws::AmazonS3Builder;
        let (bucket, prefix, pairs) = split(uri, rest)?;
        check_options(uri, &pairs, &["endpoint", "region"])?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_region(option(&pairs, "region").unwrap_or("us-east-1"))
            .with_client_options(client_options());
        if let Some(endpoint) = option(&pairs, "endpoint") {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder
            .build()
            .map_err(|e| BlobError::BadUri { uri: uri.into(), rule: format!("cannot be opened: {e}") })?;
        Ok((Arc::new(store), prefix))
    }

    #[cfg(not(feature = "s3"))]
    fn s3(uri: &str, _rest: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
        Err(BlobError::BadUri {
            uri: uri.into(),
            rule: "needs S3 support, which this build leaves out (build with the s3 feature)".into(),
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn key(&self, key: &str) -> Key {
        let key = key.trim_start_matches('/');
        if self.base.is_empty() { Key::from(key) } else { Key::from(format!("{}/{key}", self.base)) }
    }

    fn sidecar(&self, key: &str) -> Key {
        self.key(&format!("{key}.sha256"))
    }

    fn transfer(&self, key: &str, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound { store: self.uri.clone(), key: key.into() },
            other => BlobError::Transfer { store: self.uri.clone(), key: key.into(), reason: other.to_string() },
        }
    }

    /// Uploads a file, streaming it in parts, and stores its checksum beside it.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<BlobInfo> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| BlobError::Local { path: path.display().to_string(), reason: e.to_string() })?;
        let shown = path.display().to_string();
        let chunks = futures_util::stream::unfold(Some(file), move |file| {
            let shown = shown.clone();
            async move {
                let mut file = file?;
                let mut buf = vec![0u8; 1024 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), Some(file)))
                    }
                    Err(e) => Some((Err(format!("cannot read {shown}: {e}")), None)),
                }
            }
        });
        self.put_stream(key, Box::pin(chunks)).await
    }

    /// Stores the checksum of a blob beside it.
    async fn put_checksum(&self, key: &str, sha256: &str) -> Result<()> {
        self.store
            .put(&self.sidecar(key), PutPayload::from(sha256.as_bytes().to_vec()))
            .await
            .map_err(|e| self.transfer(key, e))?;
        Ok(())
    }

    /// Uploads a stream of bytes (a request body), in parts once it is large, and stores its
    /// checksum beside it.
    pub async fn put_stream<E: std::fmt::Display>(
        &self,
        key: &str,
        mut stream: impl futures_util::Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    ) -> Result<BlobInfo> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut pending: Vec<u8> = Vec::new();
        let mut writer: Option<WriteMultipart> = None;
        let location = self.key(key);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BlobError::Transfer {
                store: self.uri.clone(),
                key: key.into(),
                reason: format!("the upload broke off: {e}"),
            })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            match &mut writer {
                Some(w) => {
                    w.wait_for_capacity(4).await.map_err(|e| self.transfer(key, e))?;
                    w.write(&chunk);
                }
                None => {
                    pending.extend_from_slice(&chunk);
                    if pending.len() > PART_BYTES {
                        let upload = self.store.put_multipart(&location).await.map_err(|e| self.transfer(key, e))?;
                        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                        w.write(&std::mem::take(&mut pending));
                        writer = Some(w);
                    }
                }
            }
        }
        match writer {
            Some(w) => {
                w.finish().await.map_err(|e| self.transfer(key, e))?;
            }
            None => {
                self.store.put(&location, PutPayload::from(pending)).await.map_err(|e| self.transfer(key, e))?;
            }
        }
        let sha256 = hex(&hasher.finalize());
        self.put_checksum(key, &sha256).await?;
        Ok(BlobInfo { size, sha256 })
    }

    /// A blob as a stream, with its size, for serving it on. The stream checks the blob
    /// against its stored checksum as it goes and ends in an error if they differ, so a damaged
    /// blob is never served whole.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<(u64, futures_util::stream::BoxStream<'static, std::result::Result<Bytes, String>>)> {
        let expected = self.expected_sha256(key).await?;
        let got = self.store.get(&self.key(key)).await.map_err(|e| self.transfer(key, e))?;
        let size = got.meta.size;
        let inner = got.into_stream().map(|r| r.map_err(|e| e.to_string()));
        let name = format!("blob {key} in {}", self.uri);
        let checked = futures_util::stream::unfold(
            (inner.boxed(), Some(Sha256::new()), expected, name),
            |(mut inner, hasher, expected, name)| async move {
                let mut hasher = hasher?;
                match inner.next().await {
                    Some(Ok(chunk)) => {
                        hasher.update(&chunk);
                        Some((Ok(chunk), (inner, Some(hasher), expected, name)))
                    }
                    Some(Err(e)) => Some((Err(e), (inner, None, expected, name))),
                    None => {
                        let actual = hex(&hasher.finalize());
                        match expected {
                            Some(e) if e != actual => Some((
                                Err(format!("{name} is damaged: its SHA-256 is {actual}, but {e} was stored with it")),
                                (inner, None, None, name),
                            )),
                            _ => None,
                        }
                    }
                }
            },
        );
        Ok((size, checked.boxed()))
    }

    /// Uploads bytes and stores their checksum beside them.
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<BlobInfo> {
        let sha256 = hex(&Sha256::digest(&data));
        let size = data.len() as u64;
        self.store.put(&self.key(key), PutPayload::from(data)).await.map_err(|e| self.transfer(key, e))?;
        self.put_checksum(key, &sha256).await?;
        Ok(BlobInfo { size, sha256 })
    }

    async fn expected_sha256(&self, key: &str) -> Result<Option<String>> {
        match self.store.get(&self.sidecar(key)).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| self.transfer(key, e))?;
                Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.transfer(key, e)),
        }
    }

    fn verify(&self, key: &str, expected: Option<String>, actual: String) -> Result<()> {
        match expected {
            Some(expected) if expected != actual => {
                Err(BlobError::Checksum { store: self.uri.clone(), key: key.into(), expected, actual })
            }
            _ => Ok(()),
        }
    }

    /// Downloads a blob to a file, streaming, and checks it against its stored checksum. The
    /// file appears only once the whole blob has arrived and checked out.
    pub async fn get_to_file(&self, key: &str, dest: &Path) -> Result<BlobInfo> {
        let expected = self.expected_sha256(key).await?;
        let got = self.store.get(&self.key(key)).await.map_err(|e| self.transfer(key, e))?;
        let tmp = dest.with_extension("part");
        let local =
            |p: &Path, e: std::io::Error| BlobError::Local { path: p.display().to_string(), reason: e.to_string() };
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| local(parent, e))?;
        }
        let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| local(&tmp, e))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transfer(key, e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| local(&tmp, e))?;
        }
        file.flush().await.map_err(|e| local(&tmp, e))?;
        drop(file);
        let sha256 = hex(&hasher.finalize());
        if let Err(e) = self.verify(key, expected, sha256.clone()) {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, dest).await.map_err(|e| local(dest, e))?;
        Ok(BlobInfo { size, sha256 })
    }

    /// Reads a small blob whole, checked against its stored checksum.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        let expected = self.expected_sha256(key).await?;
        let got = self.store.get(&self.key(key)).await.map_err(|e| self.transfer(key, e))?;
        let bytes = got.bytes().await.map_err(|e| self.transfer(key, e))?;
        self.verify(key, expected, hex(&Sha256::digest(&bytes)))?;
        Ok(bytes)
    }

    /// Keys and sizes of the blobs under `prefix`, checksums left out, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let full = self.key(prefix);
        let mut out = Vec::new();
        let mut listing = self.store.list(Some(&full));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.transfer(prefix, e))?;
            let key = meta.location.as_ref();
            let key =
                if self.base.is_empty() { key } else { key.strip_prefix(&format!("{}/", self.base)).unwrap_or(key) };
            if !key.ends_with(".sha256") {
                out.push((key.to_string(), meta.size));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a blob and its checksum; deleting what is not there succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        for location in [self.key(key), self.sidecar(key)] {
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.transfer(key, e)),
            }
        }
        Ok(())
    }

    /// Writes bytes without a checksum: for tests that damage a blob on purpose.
    #[doc(hidden)]
    pub async fn put_raw(&self, key: &str, data: Bytes) -> Result<()> {
        self.store.put(&self.key(key), PutPayload::from(data)).await.map_err(|e| self.transfer(key, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_uris_are_explained() {
        for (uri, rule) in [
            ("ftp://x", "scheme"),
            ("file://relative", "absolute"),
            ("az://", "no account"),
            ("s3://bucket?nope=1", "unknown option \"nope\""),
        ] {
            let err = BlobStore::open(uri).err().unwrap().to_string();
            assert!(err.contains(uri) && err.contains(rule), "{uri}: {err}");
        }
    }
}
