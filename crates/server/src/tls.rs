//! TLS for the head node: the cluster's certificate authority, the head node's certificate, the
//! certificates of nodes, and who a peer is. The handshake itself happens in [`crate::connections`],
//! within a connection's time to deliver its first request.
//!
//! The authority's certificate is `ca.pem` in the state directory (public: clients and agents
//! verify the head node with it); its private key is `ca.key.sealed`, sealed with the state
//! directory's secret key. The head node's own key is made at each start and never written.

use crate::secrets::{SecretKey, hex, write_private};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

pub const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key.sealed";

/// The one crypto provider of the process; every TLS configuration is built with it.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The cluster's certificate authority.
pub struct ClusterCa {
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SealedCa {
    name: String,
    key: String,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationName, "Thunderhead");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// SHA-256 of a certificate's DER, in hex: how the head node knows the certificates it issued.
pub fn fingerprint(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// A certificate and its key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
}

impl ClusterCa {
    /// The authority of `state_dir`, created on first start.
    pub fn load_or_create(state_dir: &Path, secrets: &SecretKey) -> Result<ClusterCa, String> {
        let cert_path = state_dir.join(CA_FILE);
        let key_path = state_dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = std::fs::read_to_string(&cert_path)
                    .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
                let sealed = std::fs::read_to_string(&key_path)
                    .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
                let opened = secrets.open(sealed.trim()).ok_or_else(|| {
                    format!(
                        "{} cannot be opened with this state directory's secret.key (restore both from the same backup)",
                        key_path.display()
                    )
                })?;
                let sealed: SealedCa = serde_json::from_slice(&opened)
                    .map_err(|e| format!("{} is damaged: {e} (restore it from a backup)", key_path.display()))?;
                let key =
                    KeyPair::from_pem(&sealed.key).map_err(|e| format!("{} is damaged: {e}", key_path.display()))?;
                let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
                    format!("{} is not a certificate: {e} (restore it from a backup)", cert_path.display())
                })?;
                Ok(ClusterCa { cert_pem, cert_der, issuer: Issuer::new(ca_params(&sealed.name), key) })
            }
            (false, false) => {
                let mut id = [0u8; 6];
                getrandom::fill(&mut id).map_err(|e| format!("cannot draw randomness: {e}"))?;
                let name = format!("Thunderhead cluster {}", hex(&id));
                let key = KeyPair::generate().map_err(|e| format!("cannot make the cluster's key: {e}"))?;
                let params = ca_params(&name);
                let cert =
                    params.self_signed(&key).map_err(|e| format!("cannot make the cluster's certificate: {e}"))?;
                let sealed = serde_json::to_vec(&SealedCa { name, key: key.serialize_pem() }).expect("serialises");
                write_private(&key_path, secrets.seal(&sealed).as_bytes())?;
                let tmp = cert_path.with_extension("tmp");
                std::fs::write(&tmp, cert.pem())
                    .and_then(|()| std::fs::rename(&tmp, &cert_path))
                    .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
                tracing::info!(file = %cert_path.display(), "created the cluster's certificate authority");
                Ok(ClusterCa { cert_pem: cert.pem(), cert_der: cert.der().clone(), issuer: Issuer::new(params, key) })
            }
            (has_cert, _) => {
                let (present, missing) = if has_cert { (&cert_path, &key_path) } else { (&key_path, &cert_path) };
                Err(format!(
                    "the cluster's authority is incomplete: {} is there but {} is not (restore both from a backup, or remove both to make a new authority; every agent must then join again)",
                    present.display(),
                    missing.display()
                ))
            }
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).expect("the cluster's own certificate is valid");
        roots
    }

    /// A certificate for `params`, signed by the authority, with a fresh key.
    fn issue(&self, params: CertificateParams) -> Result<Issued, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| format!("cannot sign a certificate: {e}"))?;
        Ok(Issued { fingerprint: fingerprint(cert.der()), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A certificate an agent named `node` proves itself with (client authentication only).
    pub fn issue_node(&self, node: &str) -> Result<Issued, String> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, node);
        params.distinguished_name.push(DnType::OrganizationName, "Thunderhead node");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// The head node's TLS configuration: a new certificate for `names` (DNS names and
    /// addresses), and client certificates optional but, when given, verified against the
    /// authority (agents give theirs; API clients use tokens instead).
    pub fn server_config(&self, names: &[String]) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| format!("bad server name: {e}"))?;
        params.distinguished_name.push(DnType::CommonName, "Thunderhead head node");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issued = self.issue(params)?;
        let cert = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("cannot verify client certificates: {e}"))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert, self.cert_der.clone()], PrivateKeyDer::Pkcs8(key))
            .map_err(|e| format!("cannot use the head node's certificate: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The names the head node's certificate covers when it listens on `listen`: the agents' fixed
/// name, loopback, this machine's host name, the listening address (every interface's when it
/// listens on all), and `extra`.
pub fn server_names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names =
        vec![thunderhead_proto::HEAD_NAME.to_string(), "localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = nix::unistd::gethostname()
        && let Ok(host) = host.into_string()
    {
        names.push(host);
    }
    let ip = listen.ip();
    if ip.is_unspecified() {
        if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
            for a in interfaces.filter_map(|i| i.address) {
                if let Some(v4) = a.as_sockaddr_in() {
                    names.push(IpAddr::V4(v4.ip()).to_string());
                } else if let Some(v6) = a.as_sockaddr_in6() {
                    names.push(IpAddr::V6(v6.ip()).to_string());
                }
            }
        }
    } else {
        names.push(ip.to_string());
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Who is at the other end of a connection: its address and, if it showed one the authority
/// signed, the fingerprint of its certificate.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub certificate: Option<String>,
}

impl Peer {
    /// The peer at `addr` of a TLS connection, with the certificate it showed in `session`.
    pub fn of_tls(addr: SocketAddr, session: &rustls::ServerConnection) -> Peer {
        let certificate = session.peer_certificates().and_then(|c| c.first()).map(|c| fingerprint(c));
        Peer { addr, certificate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_is_made_once_and_its_key_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretKey::load_or_create(dir.path()).unwrap();
        let ca = ClusterCa::load_or_create(dir.path(), &secrets).unwrap();
        let sealed = std::fs::read_to_string(dir.path().join(CA_KEY_FILE)).unwrap();
        assert!(!sealed.contains("PRIVATE KEY"), "the key is sealed at rest");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = ClusterCa::load_or_create(dir.path(), &secrets).unwrap();
        assert_eq!(again.cert_pem, ca.cert_pem, "the authority is kept across starts");
        // A node certificate signed after a restart verifies against the first certificate.
        let node = again.issue_node("n1").unwrap();
        let der = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider())
            .build()
            .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        assert!(verifier.verify_client_cert(&der, &[], now).is_ok());
        let other_dir = tempfile::tempdir().unwrap();
        let other =
            ClusterCa::load_or_create(other_dir.path(), &SecretKey::load_or_create(other_dir.path()).unwrap()).unwrap();
        let foreign = CertificateDer::from_pem_slice(other.issue_node("n1").unwrap().cert_pem.as_bytes()).unwrap();
        assert!(verifier.verify_client_cert(&foreign, &[], now).is_err(), "another cluster's node is refused");
        assert!(ca.server_config(&server_names("127.0.0.1:0".parse().unwrap(), &[])).is_ok());
    }

    #[test]
    fn half_an_authority_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretKey::load_or_create(dir.path()).unwrap();
        ClusterCa::load_or_create(dir.path(), &secrets).unwrap();
        std::fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let e = ClusterCa::load_or_create(dir.path(), &secrets).err().unwrap();
        assert!(e.contains("incomplete") && e.contains("ca.key.sealed"), "{e}");
    }

    #[test]
    fn the_certificate_names_the_agents_name_and_the_listening_address() {
        let names = server_names("10.1.2.3:7998".parse().unwrap(), &["head.example.org".into()]);
        for n in [thunderhead_proto::HEAD_NAME, "127.0.0.1", "10.1.2.3", "head.example.org"] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
    }
}
