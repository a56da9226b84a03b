//! The settings each provider takes in a node template, and their rules.
//!
//! Settings travel as a JSON object of strings, numbers and booleans; [`validate`] checks every
//! key against its provider's list when a template is created, so a provider never sees a
//! setting it cannot use.

use crate::{Error, Millis, Result};
use serde_json::{Map, Value};

/// The settings a provider takes: name and a one-line rule.
pub fn known(provider: &str) -> &'static [(&'static str, &'static str)] {
    match provider {
        "local" => &[("work_root", "a directory where node directories are created")],
        "sim" => &[
            ("work_root", "a directory where node directories are created"),
            ("deploy_time", "how long a deployment takes, MIN..MAX, e.g. 2s..8s"),
            ("failure_rate", "the probability that a deployment fails, 0 to 1"),
            ("capacity", "the most nodes the simulated cloud holds at once"),
            ("seed", "the seed that makes the simulation repeatable"),
            (
                "light",
                "run nodes as light agents inside the head node that finish each task at once (scale rehearsals)",
            ),
        ],
        "azure" => &[
            ("subscription_id", "the subscription's GUID, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"),
            ("service_name", "the cloud service: 3-63 letters, digits and hyphens"),
            ("storage_account", "the storage account: 3-24 lowercase letters and digits"),
            ("thumbprint", "the SHA-1 thumbprint of the management certificate, 40 hex digits"),
            ("certificate_subject", "the subject of the management certificate (set from the certificate)"),
            ("certificate_key_bits", "the RSA key size of the management certificate (set from the certificate)"),
        ],
        _ => &[],
    }
}

/// Puts settings into their one accepted form before they are checked: an Azure thumbprint
/// may be given with spaces and in any case.
pub fn normalize(provider: &str, settings: &mut Map<String, Value>) {
    if provider == "azure"
        && let Some(Value::String(t)) = settings.get_mut("thumbprint")
    {
        *t = normalize_thumbprint(t);
    }
}

/// `"ab cd …"` → `"ABCD…"`: spaces and colons removed, upper case.
pub fn normalize_thumbprint(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != ':').collect::<String>().to_ascii_uppercase()
}

fn text<'a>(settings: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    settings.get(key).and_then(Value::as_str)
}

/// Checks the settings of an `azure` template against Azure's rules.
fn validate_azure(settings: &Map<String, Value>) -> Result<()> {
    let required = |key: &str, flag: &str| {
        text(settings, key).ok_or_else(|| Error::invalid(format!("an azure template needs {flag} (give {flag} VALUE)")))
    };
    let id = required("subscription_id", "--subscription-id")?;
    let groups: Vec<&str> = id.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] || !groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(Error::invalid(format!(
            "subscription id \"{id}\" is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx with hex digits; copy it from the Azure portal)"
        )));
    }
    let service = required("service_name", "--service-name")?;
    let service_ok = (3..=63).contains(&service.len())
        && service.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && service.starts_with(|c: char| c.is_ascii_alphabetic())
        && !service.ends_with('-');
    if !service_ok {
        return Err(Error::invalid(format!(
            "service name \"{service}\" does not follow Azure's rules (3-63 letters, digits and hyphens, starting with a letter and not ending with a hyphen)"
        )));
    }
    let account = required("storage_account", "--storage-account")?;
    let account_ok =
        (3..=24).contains(&account.len()) && account.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !account_ok {
        return Err(Error::invalid(format!(
            "storage account \"{account}\" does not follow Azure's rules (3-24 lowercase letters and digits, e.g. {})",
            account.to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).take(24).collect::<String>()
        )));
    }
    if let Some(t) = text(settings, "thumbprint")
        && (t.len() != 40 || !t.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(Error::invalid(format!(
            "thumbprint \"{t}\" is not 40 hex digits (copy the SHA-1 thumbprint of the certificate; spaces are allowed)"
        )));
    }
    Ok(())
}

/// Checks every setting of a template for `provider`.
pub fn validate(provider: &str, settings: &Map<String, Value>) -> Result<()> {
    let keys = known(provider);
    for key in settings.keys() {
        if !keys.iter().any(|(k, _)| k == key) {
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            return Err(Error::invalid(format!(
                "setting \"{key}\" is not known to provider \"{provider}\" (it takes: {})",
                names.join(", ")
            )));
        }
    }
    if let Some(v) = settings.get("work_root") {
        v.as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::invalid(format!("work_root {v} is not a directory path (give an absolute path)")))?;
    }
    if provider == "sim" {
        SimSettings::from_map(settings)?;
    }
    if provider == "azure" {
        validate_azure(settings)?;
    }
    Ok(())
}

/// Parses a duration like `250ms`, `2s`, `1.5s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Millis> {
    let t = text.trim();
    let bad = || Error::invalid(format!("duration \"{text}\" is not a duration (write e.g. 500ms, 2s, 10m or 1h)"));
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err(bad()),
    };
    let ms = number * scale;
    if !ms.is_finite() || !(0.0..=1e12).contains(&ms) {
        return Err(bad());
    }
    Ok(ms.round() as Millis)
}

/// Settings of the `sim` provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimSettings {
    pub deploy_min: Millis,
    pub deploy_max: Millis,
    pub failure_rate: f64,
    pub capacity: Option<u32>,
    pub seed: u64,
    /// Nodes are light in-process agents rather than agent processes.
    pub light: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings { deploy_min: 1_000, deploy_max: 3_000, failure_rate: 0.0, capacity: None, seed: 0, light: false }
    }
}

impl SimSettings {
    pub fn from_map(settings: &Map<String, Value>) -> Result<SimSettings> {
        let mut s = SimSettings::default();
        if let Some(v) = settings.get("deploy_time") {
            let text =
                v.as_str().ok_or_else(|| Error::invalid(format!("deploy_time {v} is not text (write e.g. 2s..8s)")))?;
            let (min, max) = match text.split_once("..") {
                Some((a, b)) => (parse_duration(a)?, parse_duration(b)?),
                None => {
                    let d = parse_duration(text)?;
                    (d, d)
                }
            };
            if min > max {
                return Err(Error::invalid(format!(
                    "deploy_time \"{text}\" has its minimum above its maximum (write MIN..MAX)"
                )));
            }
            (s.deploy_min, s.deploy_max) = (min, max);
        }
        if let Some(v) = settings.get("failure_rate") {
            s.failure_rate = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    Error::invalid(format!("failure_rate {v} is not a probability (give a number from 0 to 1)"))
                })?;
        }
        if let Some(v) = settings.get("capacity") {
            let c = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .filter(|c| *c >= 1 && *c <= 1_000_000)
                .ok_or_else(|| {
                    Error::invalid(format!("capacity {v} is not a node count (give a whole number from 1)"))
                })?;
            s.capacity = Some(c as u32);
        }
        if let Some(v) = settings.get("light") {
            s.light = v
                .as_bool()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .ok_or_else(|| Error::invalid(format!("light {v} is not true or false")))?;
        }
        if let Some(v) = settings.get("seed") {
            s.seed = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                .ok_or_else(|| Error::invalid(format!("seed {v} is not a whole number")))?;
        }
        Ok(s)
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
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        assert_eq!(parse_duration("1.5s").unwrap(), 1_500);
        assert_eq!(parse_duration("10m").unwrap(), 600_000);
        assert_eq!(parse_duration("1h").unwrap(), 3_600_000);
        for bad in ["", "5", "s", "2 days", "-1s", "1e400s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.message.contains("500ms, 2s"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn sim_settings_parse_and_bad_values_are_named() {
        let s = SimSettings::from_map(&map(
            json!({"deploy_time": "2s..8s", "failure_rate": 0.25, "capacity": "10", "seed": 7}),
        ))
        .unwrap();
        assert_eq!(
            s,
            SimSettings {
                deploy_min: 2_000,
                deploy_max: 8_000,
                failure_rate: 0.25,
                capacity: Some(10),
                seed: 7,
                light: false
            }
        );
        let err = validate("sim", &map(json!({"failure_rate": 2}))).unwrap_err();
        assert!(err.message.contains("failure_rate 2") && err.message.contains("0 to 1"), "{err}");
        let err = validate("sim", &map(json!({"deploy_time": "8s..2s"}))).unwrap_err();
        assert!(err.message.contains("minimum above its maximum"), "{err}");
    }

    #[test]
    fn azure_settings_follow_azure_rules_and_errors_name_the_value() {
        let good = json!({"subscription_id": "0123abcd-4567-89ab-cdef-0123456789ab", "service_name": "th-burst", "storage_account": "thstore01"});
        validate("azure", &map(good.clone())).unwrap();
        for (key, bad, rule) in [
            ("subscription_id", "12ab", "is not a GUID"),
            ("service_name", "-bad", "Azure's rules"),
            ("storage_account", "My_Store", "3-24 lowercase"),
            ("thumbprint", "abc", "40 hex digits"),
        ] {
            let mut m = map(good.clone());
            m.insert(key.into(), json!(bad));
            let err = validate("azure", &m).unwrap_err();
            assert!(err.message.contains(&format!("\"{bad}\"")) && err.message.contains(rule), "{err}");
        }
        let mut m = map(good);
        m.remove("subscription_id");
        assert!(validate("azure", &m).unwrap_err().message.contains("--subscription-id"));
    }

    #[test]
    fn thumbprints_lose_spaces_and_case() {
        assert_eq!(normalize_thumbprint("ab cd:ef 01"), "ABCDEF01");
    }

    #[test]
    fn unknown_settings_list_the_known_ones() {
        let err = validate("local", &map(json!({"region": "eu"}))).unwrap_err();
        assert!(err.message.contains("\"region\"") && err.message.contains("work_root"), "{err}");
    }
}
