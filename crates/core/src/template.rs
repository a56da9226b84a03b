//! Node templates: which provider deploys a set of burst nodes, and how they are named.

use crate::{Error, Millis, Result};
use serde::{Deserialize, Serialize};

/// Providers this build can deploy nodes with.
pub const PROVIDERS: [&str; 2] = ["local", "sim"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub description: String,
    /// Settings for the provider, validated by it (e.g. `work_root` for `local`).
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub created_at: Millis,
}

/// What a user sends to create a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTemplate {
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// Checks a name for templates and nodes: 1–63 letters, digits, `-` and `_`, starting with a
/// letter or digit. Such names are safe as directory names and host names.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} name \"{name}\" is not allowed (use 1-63 letters, digits, '-' or '_', starting with a letter or digit)"
        )))
    }
}

impl NewTemplate {
    pub fn validate(self, now: Millis) -> Result<Template> {
        validate_name("template", &self.name)?;
        if !PROVIDERS.contains(&self.provider.as_str()) {
            return Err(Error::invalid(format!(
                "provider \"{}\" is not available in this build (choose one of: {})",
                self.provider,
                PROVIDERS.join(", ")
            )));
        }
        crate::template_settings::validate(&self.provider, &self.settings)?;
        Ok(Template {
            name: self.name,
            provider: self.provider,
            description: self.description,
            settings: self.settings,
            created_at: now,
        })
    }
}

/// The prefix of the naming series of a provider: `local` → `LocalCN-`, `azure` → `AzureCN-`.
pub fn series_prefix(provider: &str) -> String {
    let mut chars = provider.chars();
    let head: String = chars.next().map(|c| c.to_ascii_uppercase()).into_iter().collect();
    format!("{head}{}CN-", chars.as_str())
}

/// The `n`-th name of a series, 1-based, padded to four digits: `LocalCN-0001`.
pub fn series_name(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names_follow_the_2011_pattern() {
        assert_eq!(series_prefix("local"), "LocalCN-");
        assert_eq!(series_prefix("azure"), "AzureCN-");
        assert_eq!(series_name("LocalCN-", 1), "LocalCN-0001");
        assert_eq!(series_name("LocalCN-", 12345), "LocalCN-12345");
    }

    #[test]
    fn unknown_provider_is_refused_with_the_choices() {
        let err = NewTemplate {
            name: "t".into(),
            provider: "gcp".into(),
            description: String::new(),
            settings: Default::default(),
        }
        .validate(0)
        .unwrap_err();
        assert!(err.message.contains("\"gcp\"") && err.message.contains("local"), "{err}");
    }

    #[test]
    fn names_with_slashes_or_spaces_are_refused() {
        for bad in ["", "a b", "../x", "-x", &"x".repeat(64)] {
            assert!(validate_name("template", bad).is_err(), "{bad:?}");
        }
        validate_name("template", "burst-1_a").unwrap();
    }
}
