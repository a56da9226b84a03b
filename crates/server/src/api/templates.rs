//! Routes of templates: create, edit, check with their provider, resume, delete. Certificates
//! a client sends are checked and sealed here, before the actor sees them.

use super::{Answer, Api, ApiError, ask};
use crate::actor::Request;
use crate::secrets::unhex;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde_json::Value;
use thunderhead_core::Error;
use thunderhead_core::template::{NewTemplate, Secret, TemplateEdit};
use thunderhead_core::view::TemplateView;
use thunderhead_providers::azure_provider::inspect_certificate;

pub(super) async fn list_templates(State(api): State<Api>) -> Answer<Vec<TemplateView>> {
    ask(&api, Request::ListTemplates).await
}

pub(super) async fn create_template(
    State(api): State<Api>,
    body: Result<Json<NewTemplate>, JsonRejection>,
) -> Answer<TemplateView> {
    let mut t = body?.0;
    let f = &mut t.fields;
    let (cert, pw) = (f.certificate.take(), f.certificate_password.take());
    f.sealed = seal_certificate(&api, true, &t.provider, &mut f.settings, cert, pw).await?;
    ask(&api, |r| Request::CreateTemplate(t, r)).await
}

/// Checks a certificate a client sent and seals it with its password, so that only the sealed
/// form is ever stored; sets the certificate's thumbprint, subject and key size in `settings`.
pub(super) async fn seal_certificate(
    api: &Api,
    creating: bool,
    provider: &str,
    settings: &mut serde_json::Map<String, Value>,
    certificate: Option<Secret>,
    password: Option<Secret>,
) -> Result<Option<String>, ApiError> {
    let (certificate, password) = match (certificate, password) {
        (None, None) => {
            // What the certificate says of itself cannot be set apart from it.
            if let Some(key) = ["thumbprint", "certificate_subject", "certificate_key_bits"]
                .into_iter()
                .find(|k| settings.contains_key(*k) && (*k != "thumbprint" || !creating))
            {
                return Err(Error::invalid(format!(
                    "setting {key} comes from the certificate (give --certificate FILE.pfx --certificate-password-file FILE to change it)"
                ))
                .into());
            }
            return Ok(None);
        }
        (Some(c), Some(p)) => (c, p),
        _ => {
            return Err(Error::invalid(
                "give the certificate and its password together (--certificate FILE.pfx --certificate-password-file FILE)",
            )
            .into());
        }
    };
    if provider != "azure" {
        return Err(
            Error::invalid(format!("provider {provider} takes no certificate (only azure templates do)")).into()
        );
    }
    let pfx = unhex(&certificate.0).ok_or_else(|| {
        Error::invalid("the certificate is not hex-encoded PKCS#12 data (send the PFX file's bytes as hex)")
    })?;
    let given = settings.get("thumbprint").and_then(Value::as_str).map(str::to_string);
    // Opening a PKCS#12 file derives keys the file says how hard to derive: off the runtime.
    let pw = password.0.clone();
    let info = tokio::task::spawn_blocking(move || inspect_certificate(&pfx, &pw, given.as_deref()))
        .await
        .map_err(|e| Error::conflict(format!("the certificate check was interrupted: {e}")))?
        .map_err(|e| Error::invalid(e.message))?;
    settings.insert("thumbprint".into(), Value::from(info.thumbprint));
    settings.insert("certificate_subject".into(), Value::from(info.subject));
    settings.insert("certificate_key_bits".into(), Value::from(info.key_bits));
    let plain = serde_json::json!({"pfx": certificate.0, "password": password.0}).to_string();
    Ok(Some(api.secrets.seal(plain.as_bytes())))
}

pub(super) async fn show_template(State(api): State<Api>, Path(name): Path<String>) -> Answer<TemplateView> {
    ask(&api, |r| Request::ShowTemplate(name, r)).await
}

pub(super) async fn edit_template(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Result<Json<TemplateEdit>, JsonRejection>,
) -> Answer<TemplateView> {
    let mut edit = body?.0;
    if edit.certificate.is_some() || edit.certificate_password.is_some() {
        let current = api.handle.ask(|r| Request::TemplateForCheck(name.clone(), r)).await?;
        let mut settings = current.settings.clone();
        settings.extend(edit.settings.clone());
        let (cert, pw) = (edit.certificate.take(), edit.certificate_password.take());
        let sealed = seal_certificate(&api, false, &current.provider, &mut settings, cert, pw).await?;
        for key in ["thumbprint", "certificate_subject", "certificate_key_bits"] {
            edit.settings.insert(key.into(), settings[key].clone());
        }
        edit.sealed = sealed;
    } else {
        // Without a certificate, what it says of itself cannot change.
        seal_certificate(&api, false, "", &mut edit.settings.clone(), None, None).await?;
    }
    ask(&api, |r| Request::EditTemplate(name, edit, r)).await
}

pub(super) async fn resume_template(State(api): State<Api>, Path(name): Path<String>) -> Answer<TemplateView> {
    ask(&api, |r| Request::ResumeTemplate(name, r)).await
}

pub(super) async fn delete_template(State(api): State<Api>, Path(name): Path<String>) -> Answer<()> {
    ask(&api, |r| Request::DeleteTemplate(name, r)).await
}

pub(super) async fn validate_template(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Answer<Vec<thunderhead_providers::Check>> {
    let template = api.handle.ask(|r| Request::TemplateForCheck(name, r)).await?;
    let mut checks = match api.providers.get(&template.provider) {
        Some(p) => p.validate(&template).await,
        None => vec![thunderhead_providers::Check {
            name: "provider".into(),
            ok: false,
            detail: format!("provider {} is not available in this build", template.provider),
        }],
    };
    if let Some(sealed) = &template.sealed {
        let opens = api.secrets.open(sealed).is_some();
        checks.push(thunderhead_providers::Check {
            name: "stored secrets".into(),
            ok: opens,
            detail: if opens {
                "sealed at rest; they open with this head node's key".into()
            } else {
                "they do not open with this head node's key (was secret.key replaced?); give the certificate again with template edit".into()
            },
        });
    }
    Ok(Json(checks))
}
