//! Routes of templates: create, edit, check with their provider, resume, delete. Secret
//! settings a client sends are checked by the template's provider and sealed here, before the
//! actor sees them.

use super::{Answer, Api, ApiError, ask};
use crate::actor::Request;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde_json::Value;
use std::collections::BTreeMap;
use thunderhead_core::template::{NewTemplate, TemplateEdit};
use thunderhead_core::view::TemplateView;

pub(super) async fn list_templates(State(api): State<Api>) -> Answer<Vec<TemplateView>> {
    ask(&api, Request::ListTemplates).await
}

pub(super) async fn create_template(
    State(api): State<Api>,
    body: Result<Json<NewTemplate>, JsonRejection>,
) -> Answer<TemplateView> {
    let mut t = body?.0;
    let given = secrets_of(&mut t.fields);
    t.fields.sealed = seal_secrets(&api, true, &t.provider, &mut t.fields.settings, given).await?;
    ask(&api, |r| Request::CreateTemplate(t, r)).await
}

/// The secret settings a request gives, by name: its `secrets`, and the certificate fields that
/// give two of them by their own names. They are taken out of the request.
fn secrets_of(fields: &mut TemplateEdit) -> BTreeMap<String, String> {
    let mut given: BTreeMap<String, String> =
        std::mem::take(&mut fields.secrets).into_iter().map(|(k, v)| (k, v.0)).collect();
    if let Some(c) = fields.certificate.take() {
        given.insert("certificate".into(), c.0);
    }
    if let Some(p) = fields.certificate_password.take() {
        given.insert("certificate_password".into(), p.0);
    }
    given
}

/// Has the provider check the secret settings a client sent (and write what they say of
/// themselves into `settings`), then seals them, so that only the sealed form is ever stored.
/// `None` when none were given.
pub(super) async fn seal_secrets(
    api: &Api,
    creating: bool,
    provider: &str,
    settings: &mut serde_json::Map<String, Value>,
    given: BTreeMap<String, String>,
) -> Result<Option<String>, ApiError> {
    let providers = api.providers.clone();
    let provider = provider.to_string();
    let mut checked = settings.clone();
    // Opening a PKCS#12 file derives keys the file says how hard to derive: off the runtime.
    let given = super::blocking(move || {
        let given = (!given.is_empty()).then_some(given);
        providers.take_secrets(&provider, given.as_ref(), &mut checked, creating).map(|()| (given, checked))
    })
    .await??;
    let (given, checked) = given;
    *settings = checked;
    Ok(given.map(|g| api.secrets.seal(serde_json::to_string(&g).expect("text serialises").as_bytes())))
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
    let given = secrets_of(&mut edit);
    let current = api.handle.ask(|r| Request::TemplateForCheck(name.clone(), r)).await?;
    if given.is_empty() {
        // Settings that secrets set cannot be set apart from them.
        seal_secrets(&api, false, &current.provider, &mut edit.settings.clone(), given).await?;
    } else {
        let mut settings = current.settings.clone();
        settings.extend(edit.settings.clone());
        let before = settings.clone();
        edit.sealed = seal_secrets(&api, false, &current.provider, &mut settings, given).await?;
        for (key, value) in settings {
            if before.get(&key) != Some(&value) {
                edit.settings.insert(key, value);
            }
        }
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
