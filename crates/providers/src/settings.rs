//! The settings a provider declares, and the checks every provider's settings go through.
//!
//! Each provider lists its settings in its [`crate::ProviderInfo`]: name, kind, default and a
//! one-line rule. [`check_declared`] refuses a setting the provider does not declare and a value
//! not of its kind; the provider then checks what only it knows (a GUID, a range, a storage
//! account's rules). Settings travel as a JSON object; a number or a truth value may come as text
//! (`--set capacity=10` sends `"10"`), and is accepted in either form.

use serde_json::{Map, Value};
use thunderhead_core::duration::parse_duration;
use thunderhead_core::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    Text,
    Number,
    Duration,
    Bool,
    /// A path on the head node's machine.
    File,
    /// Given apart from the settings, checked and sealed by the head node, never shown.
    Secret,
}

impl SettingKind {
    pub fn name(self) -> &'static str {
        match self {
            SettingKind::Text => "text",
            SettingKind::Number => "number",
            SettingKind::Duration => "duration",
            SettingKind::Bool => "bool",
            SettingKind::File => "file",
            SettingKind::Secret => "secret",
        }
    }
}

/// One setting a provider takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SettingSpec {
    pub name: &'static str,
    pub kind: SettingKind,
    /// What applies when the template does not set it (as people would write it).
    pub default: Option<&'static str>,
    /// The rule a value follows, in one line.
    pub rule: &'static str,
}

impl SettingSpec {
    pub const fn new(name: &'static str, kind: SettingKind, rule: &'static str) -> SettingSpec {
        SettingSpec { name, kind, default: None, rule }
    }

    pub const fn or(self, default: &'static str) -> SettingSpec {
        SettingSpec { default: Some(default), ..self }
    }
}

/// The text of a text-like setting.
pub fn text<'a>(settings: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    settings.get(key).and_then(Value::as_str)
}

/// A number given as a number or as text.
pub fn number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str().and_then(|t| t.trim().parse().ok()))
}

/// A whole number given as a number or as text.
pub fn whole(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_str().and_then(|t| t.trim().parse().ok()))
}

/// A truth value given as a bool or as `true` / `false`.
pub fn truth(value: &Value) -> Option<bool> {
    value.as_bool().or_else(|| value.as_str().and_then(|t| t.trim().parse().ok()))
}

/// Checks that every setting is one `provider` declares in `specs`, with a value of its kind.
pub fn check_declared(provider: &str, specs: &[SettingSpec], settings: &Map<String, Value>) -> Result<()> {
    for (key, value) in settings {
        let Some(spec) = specs.iter().find(|s| s.name == key) else {
            let names: Vec<&str> = specs.iter().filter(|s| s.kind != SettingKind::Secret).map(|s| s.name).collect();
            let listed = if names.is_empty() { "no settings".to_string() } else { names.join(", ") };
            return Err(Error::invalid(format!(
                "setting \"{}\" is not known to provider \"{provider}\" (it takes: {listed}; see thunderhead provider show {provider})",
                thunderhead_core::text::escape(key)
            )));
        };
        let fits = match spec.kind {
            SettingKind::Text => value.is_string(),
            SettingKind::Number => number(value).is_some_and(f64::is_finite),
            SettingKind::Duration => value.as_str().is_some_and(|t| parse_duration(t).is_ok()),
            SettingKind::Bool => truth(value).is_some(),
            SettingKind::File => value.as_str().is_some_and(|t| !t.trim().is_empty()),
            SettingKind::Secret => {
                return Err(Error::invalid(format!(
                    "setting {key} of provider \"{provider}\" is a secret: it is not given as a plain setting (give it with its own option, which the head node seals; see thunderhead provider show {provider})"
                )));
            }
        };
        if !fits {
            return Err(Error::invalid(format!(
                "setting {key} of provider \"{provider}\" is {}, not a {} ({}: {})",
                thunderhead_core::text::escape(&value.to_string()),
                spec.kind.name(),
                spec.name,
                spec.rule
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPECS: &[SettingSpec] = &[
        SettingSpec::new("root", SettingKind::File, "a directory"),
        SettingSpec::new("count", SettingKind::Number, "how many").or("1"),
        SettingSpec::new("wait", SettingKind::Duration, "how long"),
        SettingSpec::new("fast", SettingKind::Bool, "whether"),
        SettingSpec::new("key", SettingKind::Secret, "a secret"),
    ];

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn values_of_each_kind_are_taken_as_values_or_as_text() {
        let good = json!({"root": "/tmp/x", "count": "10", "wait": "2s", "fast": "true"});
        check_declared("p", SPECS, &map(good)).unwrap();
        check_declared("p", SPECS, &map(json!({"count": 3, "fast": false}))).unwrap();
    }

    #[test]
    fn a_bad_value_names_the_provider_the_key_and_the_rule() {
        for (key, bad) in [("root", json!("")), ("count", json!("many")), ("wait", json!("soon")), ("fast", json!(2))] {
            let mut m = Map::new();
            m.insert(key.into(), bad);
            let err = check_declared("p", SPECS, &m).unwrap_err();
            assert!(err.message.contains(key) && err.message.contains("\"p\""), "{err}");
        }
    }

    #[test]
    fn unknown_settings_list_the_known_ones_and_secrets_are_refused_as_plain_settings() {
        let err = check_declared("p", SPECS, &map(json!({"region": "eu"}))).unwrap_err();
        assert!(err.message.contains("\"region\"") && err.message.contains("root, count, wait, fast"), "{err}");
        let err = check_declared("p", SPECS, &map(json!({"key": "x"}))).unwrap_err();
        assert!(err.message.contains("is a secret"), "{err}");
    }
}
