//! The `azure` provider's checks of a template: the management certificate the 2011 system
//! needed, validated the way Azure validated it. Deploying Azure nodes is not in this build.

use crate::{BoxFuture, Check, DeployRequest, ExternalStatus, Provider, ProviderError, ProxyRequest, Result};
use crate::{SettingKind, SettingSpec};
use serde_json::{Map, Value};
use sha1::Digest;
use thunderhead_core::provider_rules::Derived;

/// The smallest RSA key Azure accepted for a management certificate.
pub const MIN_KEY_BITS: usize = 2048;

/// What a valid management certificate tells about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// SHA-1 of the certificate's DER, 40 upper-case hex digits (as `openssl x509 -fingerprint`).
    pub thumbprint: String,
    pub subject: String,
    pub key_bits: usize,
}

/// The number of significant bits of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    (bytes.len() - 1) * 8 + (8 - bytes[0].leading_zeros() as usize)
}

/// Checks a PKCS#12 file: it opens with `password` and not without one, holds a private key
/// with an X.509 certificate whose RSA key has at least 2048 bits, and matches `thumbprint` if
/// one is given. Every refusal says what is wrong and what to do.
pub fn inspect_certificate(pfx: &[u8], password: &str, thumbprint: Option<&str>) -> Result<CertificateInfo> {
    let fail = |m: String| ProviderError::fatal(m);
    if password.is_empty() {
        return Err(fail("the certificate password is empty (the private key must be protected by a password; export the PFX with one)".into()));
    }
    use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
    let store = KeyStore::from_pkcs12(pfx, password, Pkcs12ImportPolicy::Strict).map_err(|e| {
        fail(format!("the certificate file is not a PKCS#12 (PFX) file that opens with this password ({e}); check the file and the password"))
    })?;
    if KeyStore::from_pkcs12(pfx, "", Pkcs12ImportPolicy::Strict).is_ok_and(|s| s.private_key_chain().is_some()) {
        return Err(fail(
            "the private key in the certificate file is not protected by a password (export the PFX with a password)"
                .into(),
        ));
    }
    let (_, chain) = store.private_key_chain().ok_or_else(|| {
        fail("the certificate file holds no private key with its certificate (export the certificate together with its private key)".into())
    })?;
    let cert = chain
        .certs()
        .first()
        .ok_or_else(|| fail("the certificate file holds a private key but no certificate".into()))?;
    let der = cert.as_der();
    let (_, x509) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| fail(format!("the certificate is not a valid X.509 certificate: {e}")))?;
    let key_bits = match x509.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => bit_length(rsa.modulus),
        Ok(_) => {
            return Err(fail("the certificate's key is not an RSA key (Azure needs RSA of at least 2048 bits)".into()));
        }
        Err(e) => return Err(fail(format!("the certificate's public key cannot be read: {e}"))),
    };
    if key_bits < MIN_KEY_BITS {
        return Err(fail(format!(
            "the certificate's RSA key has {key_bits} bits, fewer than the {MIN_KEY_BITS} Azure requires (create a new certificate with a 2048-bit key or larger)"
        )));
    }
    let digest = sha1::Sha1::digest(der);
    let computed: String = digest.iter().map(|b| format!("{b:02X}")).collect();
    if let Some(given) = thumbprint {
        let given = normalize_thumbprint(given);
        if given != computed {
            return Err(fail(format!(
                "thumbprint {given} does not match the certificate, whose thumbprint is {computed} (give that one, or the right certificate)"
            )));
        }
    }
    Ok(CertificateInfo { thumbprint: computed, subject: x509.subject().to_string(), key_bits })
}

/// The settings a management certificate sets from itself.
const DERIVED: [&str; 3] = ["thumbprint", "certificate_subject", "certificate_key_bits"];

/// What the `azure` provider declares.
pub static INFO: crate::ProviderInfo = crate::ProviderInfo {
    name: "azure",
    summary: "Azure worker nodes as the 2011 system added them: templates are checked and kept; deploying is not in this build",
    settings: &[
        SettingSpec::new(
            "subscription_id",
            SettingKind::Text,
            "the subscription's GUID, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        ),
        SettingSpec::new("service_name", SettingKind::Text, "the cloud service: 3-63 letters, digits and hyphens"),
        SettingSpec::new(
            "storage_account",
            SettingKind::Text,
            "the storage account: 3-24 lowercase letters and digits",
        ),
        SettingSpec::new(
            "thumbprint",
            SettingKind::Text,
            "the SHA-1 thumbprint of the management certificate, 40 hex digits",
        ),
        SettingSpec::new(
            "certificate_subject",
            SettingKind::Text,
            "the subject of the management certificate (set from the certificate)",
        ),
        SettingSpec::new(
            "certificate_key_bits",
            SettingKind::Number,
            "the RSA key size of the management certificate (set from the certificate)",
        ),
        SettingSpec::new(
            "certificate",
            SettingKind::Secret,
            "the management certificate, a PKCS#12 (PFX) file with an RSA key of 2048 bits or more (--certificate FILE.pfx)",
        ),
        SettingSpec::new(
            "certificate_password",
            SettingKind::Secret,
            "the certificate's password (--certificate-password-file FILE)",
        ),
    ],
    deployable: false,
    proxies: true,
    sizes: None,
    handle_version: crate::HANDLE_VERSION,
    gone: "Azure nodes are not deployed by this build",
};

/// `"ab cd …"` → `"ABCD…"`: spaces and colons removed, upper case.
pub fn normalize_thumbprint(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != ':').collect::<String>().to_ascii_uppercase()
}

use crate::settings::text;

/// Checks the settings of an `azure` template against Azure's rules.
fn validate_azure(settings: &Map<String, Value>) -> thunderhead_core::Result<()> {
    let required = |key: &str, flag: &str| {
        text(settings, key).ok_or_else(|| {
            thunderhead_core::Error::invalid(format!("an azure template needs {flag} (give {flag} VALUE)"))
        })
    };
    let id = required("subscription_id", "--subscription-id")?;
    let groups: Vec<&str> = id.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] || !groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(thunderhead_core::Error::invalid(format!(
            "subscription id \"{id}\" is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx with hex digits; copy it from the Azure portal)"
        )));
    }
    let service = required("service_name", "--service-name")?;
    let service_ok = (3..=63).contains(&service.len())
        && service.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && service.starts_with(|c: char| c.is_ascii_alphabetic())
        && !service.ends_with('-');
    if !service_ok {
        return Err(thunderhead_core::Error::invalid(format!(
            "service name \"{service}\" does not follow Azure's rules (3-63 letters, digits and hyphens, starting with a letter and not ending with a hyphen)"
        )));
    }
    let account = required("storage_account", "--storage-account")?;
    let account_ok =
        (3..=24).contains(&account.len()) && account.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !account_ok {
        return Err(thunderhead_core::Error::invalid(format!(
            "storage account \"{account}\" does not follow Azure's rules (3-24 lowercase letters and digits, e.g. {})",
            account.to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).take(24).collect::<String>()
        )));
    }
    if let Some(t) = text(settings, "thumbprint")
        && (t.len() != 40 || !t.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(thunderhead_core::Error::invalid(format!(
            "thumbprint \"{t}\" is not 40 hex digits (copy the SHA-1 thumbprint of the certificate; spaces are allowed)"
        )));
    }
    Ok(())
}

/// Validates Azure templates; cannot deploy in this build.
pub struct AzureProvider;

const FOREIGN: &str = "this handle is not one of the azure provider's: this build deploys no Azure nodes";

const NOT_AVAILABLE: &str = "deploying Azure nodes is not available in this build (the template is validated and kept)";

impl Provider for AzureProvider {
    fn info(&self) -> &'static crate::ProviderInfo {
        &INFO
    }

    /// The certificate and its password are checked together, as Azure checked them; its
    /// thumbprint, subject and key size become settings. Without a certificate, what it says of
    /// itself cannot be set apart from it (a thumbprint may be given on create, to be checked).
    fn take_secrets(
        &self,
        given: Option<&std::collections::BTreeMap<String, String>>,
        settings: &mut Map<String, Value>,
        creating: bool,
    ) -> thunderhead_core::Result<()> {
        let invalid = |m: String| thunderhead_core::Error::invalid(m);
        let Some(given) = given else {
            if let Some(key) =
                DERIVED.into_iter().find(|k| settings.contains_key(*k) && (*k != "thumbprint" || !creating))
            {
                return Err(invalid(format!(
                    "setting {key} comes from the certificate (give --certificate FILE.pfx --certificate-password-file FILE to change it)"
                )));
            }
            return Ok(());
        };
        let (Some(certificate), Some(password)) = (given.get("certificate"), given.get("certificate_password")) else {
            return Err(invalid(
                "give the certificate and its password together (--certificate FILE.pfx --certificate-password-file FILE)"
                    .into(),
            ));
        };
        let pfx = thunderhead_core::text::unhex(certificate).ok_or_else(|| {
            invalid("the certificate is not hex-encoded PKCS#12 data (send the PFX file's bytes as hex)".into())
        })?;
        let given_thumbprint = text(settings, "thumbprint").map(str::to_string);
        let info = inspect_certificate(&pfx, password, given_thumbprint.as_deref()).map_err(|e| invalid(e.message))?;
        settings.insert("thumbprint".into(), Value::from(info.thumbprint));
        settings.insert("certificate_subject".into(), Value::from(info.subject));
        settings.insert("certificate_key_bits".into(), Value::from(info.key_bits));
        Ok(())
    }

    fn check_settings(&self, settings: &mut Map<String, Value>, sealed: bool) -> thunderhead_core::Result<Derived> {
        if let Some(Value::String(t)) = settings.get_mut("thumbprint") {
            *t = normalize_thumbprint(t);
        }
        validate_azure(settings)?;
        if !sealed {
            return Err(thunderhead_core::Error::invalid(
                "an azure template needs its management certificate (give --certificate FILE.pfx --certificate-password-file FILE)",
            ));
        }
        // The 2011 template's storage account holds its packages.
        let blob_store = text(settings, "storage_account").map(|account| format!("az://{account}/thunderhead"));
        Ok(Derived { blob_store })
    }

    fn validate<'a>(&'a self, set: &'a crate::Set) -> BoxFuture<'a, Vec<Check>> {
        let template = &set.template;
        Box::pin(async move {
            let setting = |k: &str| template.settings.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let key_bits = template.settings.get("certificate_key_bits").and_then(|v| v.as_u64()).unwrap_or(0);
            vec![
                Check { name: "subscription id".into(), ok: true, detail: setting("subscription_id") },
                Check {
                    name: "service name and storage account".into(),
                    ok: true,
                    detail: format!("{}, {}", setting("service_name"), setting("storage_account")),
                },
                Check {
                    name: "management certificate".into(),
                    ok: template.sealed.is_some(),
                    detail: format!(
                        "thumbprint {}, RSA {key_bits} bits, {}",
                        setting("thumbprint"),
                        setting("certificate_subject")
                    ),
                },
                Check { name: "connection to Azure".into(), ok: false, detail: NOT_AVAILABLE.into() },
            ]
        })
    }

    fn deploy<'a>(&'a self, _request: &'a DeployRequest) -> BoxFuture<'a, Result<serde_json::Value>> {
        Box::pin(async { Err(ProviderError::fatal(NOT_AVAILABLE)) })
    }

    fn deploy_proxy<'a>(&'a self, _request: &'a ProxyRequest) -> BoxFuture<'a, Result<(serde_json::Value, String)>> {
        Box::pin(async { Err(ProviderError::fatal(NOT_AVAILABLE)) })
    }

    // This build makes no Azure deployment: any handle comes from elsewhere.
    fn status<'a>(
        &'a self,
        _set: &'a crate::Set,
        handles: &'a [serde_json::Value],
    ) -> BoxFuture<'a, Vec<Result<ExternalStatus>>> {
        Box::pin(async move { handles.iter().map(|_| Err(ProviderError::fatal(FOREIGN))).collect() })
    }

    fn remove<'a>(&'a self, _set: &'a crate::Set, _handle: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Err(ProviderError::fatal(FOREIGN)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn azure_settings_follow_azure_rules_and_errors_name_the_value() {
        let good = json!({"subscription_id": "0123abcd-4567-89ab-cdef-0123456789ab", "service_name": "th-burst", "storage_account": "thstore01"});
        validate_azure(&map(good.clone())).unwrap();
        for (key, bad, rule) in [
            ("subscription_id", "12ab", "is not a GUID"),
            ("service_name", "-bad", "Azure's rules"),
            ("storage_account", "My_Store", "3-24 lowercase"),
            ("thumbprint", "abc", "40 hex digits"),
        ] {
            let mut m = map(good.clone());
            m.insert(key.into(), json!(bad));
            let err = validate_azure(&m).unwrap_err();
            assert!(err.message.contains(&format!("\"{bad}\"")) && err.message.contains(rule), "{err}");
        }
        let mut m = map(good);
        m.remove("subscription_id");
        assert!(validate_azure(&m).unwrap_err().message.contains("--subscription-id"));
    }

    #[test]
    fn thumbprints_lose_spaces_and_case() {
        assert_eq!(normalize_thumbprint("ab cd:ef 01"), "ABCDEF01");
    }

    use std::process::Command;

    /// Makes a self-signed certificate with an RSA key of `bits` in a PFX with `password`,
    /// using the real `openssl`; returns the PFX and openssl's own SHA-1 fingerprint.
    fn pfx(dir: &std::path::Path, bits: u32, password: &str) -> (Vec<u8>, String) {
        let key = dir.join(format!("key{bits}.pem"));
        let cert = dir.join(format!("cert{bits}.pem"));
        let out = dir.join(format!("cert{bits}-{}.pfx", password.len()));
        let run = |args: &[&str]| {
            let status = Command::new("openssl").args(args).output().expect("openssl runs");
            assert!(status.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&status.stderr));
            String::from_utf8_lossy(&status.stdout).into_owned()
        };
        let (k, c, o) = (key.to_str().unwrap(), cert.to_str().unwrap(), out.to_str().unwrap());
        run(&[
            "req",
            "-x509",
            "-newkey",
            &format!("rsa:{bits}"),
            "-nodes",
            "-keyout",
            k,
            "-out",
            c,
            "-days",
            "30",
            "-subj",
            "/CN=thunderhead-test",
        ]);
        run(&["pkcs12", "-export", "-inkey", k, "-in", c, "-out", o, "-passout", &format!("pass:{password}")]);
        let fingerprint = run(&["x509", "-in", c, "-noout", "-fingerprint", "-sha1"]);
        let fingerprint = fingerprint.trim().rsplit('=').next().unwrap().replace(':', "");
        (std::fs::read(&out).unwrap(), fingerprint)
    }

    #[test]
    fn a_good_certificate_gives_openssls_thumbprint_and_its_key_size() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, fingerprint) = pfx(dir.path(), 2048, "s3cret");
        let info = inspect_certificate(&bytes, "s3cret", None).unwrap();
        assert_eq!(info.thumbprint, fingerprint);
        assert_eq!(info.key_bits, 2048);
        assert!(info.subject.contains("thunderhead-test"), "{info:?}");
        // A thumbprint given with spaces and in lower case matches.
        let spaced: String = fingerprint
            .to_lowercase()
            .chars()
            .collect::<Vec<_>>()
            .chunks(2)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        inspect_certificate(&bytes, "s3cret", Some(&spaced)).unwrap();
        let err = inspect_certificate(&bytes, "s3cret", Some(&"0".repeat(40))).unwrap_err();
        assert!(err.message.contains("does not match") && err.message.contains(&fingerprint), "{err}");
    }

    #[test]
    fn weak_keys_wrong_passwords_and_unprotected_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (small, _) = pfx(dir.path(), 1024, "pw");
        let err = inspect_certificate(&small, "pw", None).unwrap_err();
        assert!(err.message.contains("1024 bits") && err.message.contains("2048"), "{err}");
        let (good, _) = pfx(dir.path(), 2048, "pw");
        let err = inspect_certificate(&good, "wrong", None).unwrap_err();
        assert!(err.message.contains("opens with this password"), "{err}");
        let (open, _) = pfx(dir.path(), 2048, "");
        let err = inspect_certificate(&open, "anything", None).unwrap_err();
        assert!(err.message.contains("password"), "{err}");
        assert!(inspect_certificate(b"not a pfx", "pw", None).unwrap_err().message.contains("PKCS#12"));
    }

    #[test]
    fn bit_lengths_count_significant_bits() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x7f, 0xff]), 15);
        assert_eq!(bit_length(&[0, 0]), 0);
    }

    crate::provider_contract_tests!(checks_only, |_dir: &std::path::Path| AzureProvider);
}
