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
    use thunderhead_providers::Check;
    let holdings = api.handle.ask(|r| Request::Holdings(name, r)).await?;
    let template = holdings.template.clone();
    let Some(provider) = api.providers.get(&template.provider) else {
        return Ok(Json(vec![Check {
            name: "provider".into(),
            ok: false,
            detail: format!("provider {} is not available in this build", template.provider),
        }]));
    };
    let secrets = crate::actor::open_secrets(&api.secrets, &template);
    let set = thunderhead_providers::Set { template, secrets: secrets.clone().unwrap_or_default() };
    let mut checks = provider.validate(&set).await;
    if set.template.sealed.is_some() {
        checks.push(Check {
            name: "stored secrets".into(),
            ok: secrets.is_ok(),
            detail: match &secrets {
                Ok(_) => "sealed at rest; they open with this head node's key".into(),
                Err(_) => {
                    "they do not open with this head node's key (was secret.key replaced?); give them again with \
                           template edit --secret KEY=FILE"
                        .into()
                }
            },
        });
    }
    if provider.info().deployable {
        checks.push(match leftovers(provider.as_ref(), &set, &holdings).await {
            Ok(found) if found.is_empty() => {
                Check { name: "leftovers".into(), ok: true, detail: "the provider holds nothing no node owns".into() }
            }
            Ok(found) => Check {
                name: "leftovers".into(),
                ok: false,
                detail: format!(
                    "the provider holds {} thing(s) no node owns (remove them: thunderhead node stop --template {} \
                     --orphans): {}",
                    found.len(),
                    set.template.name,
                    found.iter().map(|f| f.what.as_str()).collect::<Vec<_>>().join("; ")
                ),
            },
            Err(e) => Check { name: "leftovers".into(), ok: false, detail: format!("cannot look: {e}") },
        });
    }
    Ok(Json(checks))
}

/// What the provider holds of the set that no node or proxy owns.
async fn leftovers(
    provider: &dyn thunderhead_providers::Provider,
    set: &thunderhead_providers::Set,
    holdings: &thunderhead_core::cluster::Holdings,
) -> Result<Vec<thunderhead_providers::Found>, thunderhead_providers::ProviderError> {
    let found = tokio::time::timeout(LOOK_TIMEOUT, provider.inventory(set))
        .await
        .map_err(|_| thunderhead_providers::ProviderError::transient("the provider did not answer within 60 s"))??;
    Ok(found.into_iter().filter(|f| holdings.is_leftover(&f.handle, f.node.as_deref())).collect())
}

/// The longest the head node waits for a provider to list what it holds.
const LOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `node stop --template T --orphans`: removes what the provider holds of the set that no node
/// or proxy owns, and says what it removed (and what it could not).
pub(super) async fn remove_leftovers(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Answer<Vec<thunderhead_core::view::NodeActionResult>> {
    use thunderhead_core::view::NodeActionResult;
    let holdings = api.handle.ask(|r| Request::Holdings(name, r)).await?;
    let template = holdings.template.clone();
    let provider = api.providers.get(&template.provider).ok_or_else(|| {
        thunderhead_core::Error::invalid(format!("provider {} is not available in this build", template.provider))
    })?;
    let secrets =
        crate::actor::open_secrets(&api.secrets, &template).map_err(|e| thunderhead_core::Error::invalid(e.message))?;
    let set = thunderhead_providers::Set { template, secrets };
    let found = leftovers(provider.as_ref(), &set, &holdings).await.map_err(|e| {
        thunderhead_core::Error::conflict(format!(
            "the provider could not list the set (try again, or see template validate): {e}"
        ))
    })?;
    let mut results = Vec::new();
    for f in found {
        let removed = tokio::time::timeout(LOOK_TIMEOUT, provider.remove(&set, &f.handle)).await;
        let (ok, message) = match removed {
            Ok(Ok(())) => (true, format!("removed {}", f.what)),
            Ok(Err(e)) => (false, format!("cannot remove {}: {e}", f.what)),
            Err(_) => (false, format!("cannot remove {}: the provider did not answer within 60 s", f.what)),
        };
        tracing::info!(template = %set.template.name, ok, "{message}");
        results.push(NodeActionResult { node: f.node.unwrap_or_else(|| "(none)".into()), ok, message });
    }
    Ok(Json(results))
}
