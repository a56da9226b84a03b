//! Routes of providers: what each provider of this build declares (its settings, whether this
//! build deploys it). The answer is static, read from the registry; the actor is not asked.

use super::{Answer, Api};
use axum::Json;
use axum::extract::{Path, State};
use thunderhead_core::Result;
use thunderhead_core::view::ProviderView;
use thunderhead_providers::{ProviderInfo, Providers};

pub(super) async fn list_providers(State(api): State<Api>) -> Json<Vec<ProviderView>> {
    Json(views(&api.providers))
}

pub(super) async fn show_provider(State(api): State<Api>, Path(name): Path<String>) -> Answer<ProviderView> {
    Ok(Json(view(&api.providers, &name)?))
}

/// Every provider of this build, in registration order.
fn views(providers: &Providers) -> Vec<ProviderView> {
    providers.infos().into_iter().map(ProviderInfo::view).collect()
}

/// Provider `name`; an unknown name is not found, with the choices named.
fn view(providers: &Providers, name: &str) -> Result<ProviderView> {
    Ok(providers.info(name)?.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use thunderhead_core::ErrorKind;

    fn standard() -> Providers {
        Providers::standard(PathBuf::from("/nonexistent/state"), PathBuf::from("/nonexistent/thunderhead"))
    }

    #[test]
    fn every_provider_is_listed_in_registration_order() {
        let names: Vec<String> = views(&standard()).into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["local", "sim", "azure", "ssh", "slurm"]);
    }

    #[test]
    fn one_provider_shows_its_settings_and_an_unknown_one_is_not_found_with_the_choices() {
        let sim = view(&standard(), "sim").unwrap();
        assert!(sim.deployable && sim.sizes.is_none());
        assert!(sim.settings.iter().any(|s| s.name == "failure_rate" && s.kind == "number"), "{sim:?}");
        let err = view(&standard(), "gcp").unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(err.message.contains("\"gcp\"") && err.message.contains("local, sim, azure"), "{}", err.message);
    }

    #[test]
    fn the_answer_has_the_documented_fields() {
        let json = serde_json::to_value(view(&standard(), "azure").unwrap()).unwrap();
        let mut fields: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["deployable", "handle_version", "name", "proxies", "settings", "sizes", "summary"]);
        let setting = json["settings"].as_array().unwrap().iter().find(|s| s["name"] == "certificate").unwrap();
        let mut keys: Vec<&str> = setting.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["default", "kind", "name", "rule"]);
        assert_eq!((setting["kind"].as_str(), setting["default"].is_null()), (Some("secret"), true));
    }
}
