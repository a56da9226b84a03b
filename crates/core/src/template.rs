//! Node templates: which provider deploys a set of burst nodes, and how they are named.

use crate::availability::{Availability, Window};
use crate::provider_rules::ProviderRules;
use crate::{Error, Millis, Result};
use serde::{Deserialize, Serialize};

/// The core quota of a provider account when the template does not say (as in 2011).
pub const DEFAULT_QUOTA_CORES: u32 = 20;
/// Proxies a started set deploys when the template does not say (as in 2011).
pub const DEFAULT_PROXIES: u32 = 2;

fn default_quota() -> u32 {
    DEFAULT_QUOTA_CORES
}

fn default_proxies() -> u32 {
    DEFAULT_PROXIES
}

/// Deployments a set starts per minute when the template does not say (Slurm's `ResumeRate`).
pub const DEFAULT_DEPLOY_RATE: u32 = 300;
/// Times a failed deployment of a node is tried again before the node is `Unknown`.
pub const DEFAULT_DEPLOY_RETRIES: u32 = 2;
/// Consecutive failed deployments after which a template pauses itself.
pub const DEFAULT_PAUSE_AFTER: u32 = 5;
/// The longest a template lets a deployed node take to connect: a week.
pub const MAX_BOOT_TIMEOUT: Millis = 7 * 24 * 3_600_000;

fn default_deploy_rate() -> u32 {
    DEFAULT_DEPLOY_RATE
}

fn default_deploy_retries() -> u32 {
    DEFAULT_DEPLOY_RETRIES
}

fn default_pause_after() -> u32 {
    DEFAULT_PAUSE_AFTER
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub description: String,
    /// Settings for the provider, in the form its rules accept and checked by them; the core
    /// does not read them.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Cores the provider account may run at once: nodes and proxies together.
    #[serde(default = "default_quota")]
    pub quota_cores: u32,
    /// Small proxy instances deployed with a started set (at least 1).
    #[serde(default = "default_proxies")]
    pub proxies: u32,
    /// The prefix of the names of new nodes; `None` for the provider's `<Provider>CN-`.
    #[serde(default)]
    pub series_prefix: Option<String>,
    /// Deployments started per minute, at most.
    #[serde(default = "default_deploy_rate")]
    pub deploy_rate: u32,
    /// Times a failed deployment of a node is tried again.
    #[serde(default = "default_deploy_retries")]
    pub deploy_retries: u32,
    /// Consecutive failed deployments after which the template pauses itself.
    #[serde(default = "default_pause_after")]
    pub pause_after_failures: u32,
    /// Why the template paused itself; `None` while it deploys.
    #[serde(default)]
    pub paused: Option<String>,
    /// Hourly prices in millionths by size name, overriding the 2011 list prices.
    #[serde(default)]
    pub rates: std::collections::BTreeMap<String, u64>,
    /// The currency of the prices.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// When the set runs: by hand, or on a weekly schedule.
    #[serde(default)]
    pub availability: Availability,
    /// The provider's secret settings (a management certificate and its password), sealed with
    /// the head node's key. Never shown.
    #[serde(default)]
    pub sealed: Option<String>,
    /// Where the availability policy is, kept across restarts.
    #[serde(default)]
    pub policy_state: Option<crate::availability::PolicyState>,
    /// Package versions its nodes install instead of the latest.
    #[serde(default)]
    pub pins: std::collections::BTreeMap<String, u32>,
    /// The blob store its packages go to; `None` for the head node's (or the storage account
    /// its provider derives from its settings).
    #[serde(default)]
    pub blob_store: Option<String>,
    /// How long a deployed node may take until its agent connects before it is removed and
    /// `Unknown`; `None` for the head node's `--provision-timeout`.
    #[serde(default)]
    pub boot_timeout: Option<Millis>,
    pub created_at: Millis,
}

/// A secret given by a client: read once, never printed (its `Debug` is `***`).
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

fn default_currency() -> String {
    crate::cost::DEFAULT_CURRENCY.to_string()
}

impl Template {
    /// A template with every field at its default.
    pub fn new(name: &str, provider: &str) -> Template {
        Template {
            name: name.into(),
            provider: provider.into(),
            description: String::new(),
            settings: Default::default(),
            quota_cores: DEFAULT_QUOTA_CORES,
            proxies: DEFAULT_PROXIES,
            series_prefix: None,
            deploy_rate: DEFAULT_DEPLOY_RATE,
            deploy_retries: DEFAULT_DEPLOY_RETRIES,
            pause_after_failures: DEFAULT_PAUSE_AFTER,
            paused: None,
            rates: Default::default(),
            currency: default_currency(),
            availability: Availability::Manual,
            sealed: None,
            policy_state: None,
            pins: Default::default(),
            blob_store: None,
            boot_timeout: None,
            created_at: 0,
        }
    }

    /// The prefix new nodes of this template are named with.
    pub fn prefix(&self) -> String {
        self.series_prefix.clone().unwrap_or_else(|| series_prefix(&self.provider))
    }

    /// The hourly price of one instance of `size`, in millionths of [`Template::currency`].
    pub fn rate_micros(&self, size: crate::size::NodeSize) -> u64 {
        self.rates.get(size.name()).copied().unwrap_or_else(|| crate::cost::default_rate_micros(size))
    }

    /// Cores the set's proxies take (each is Small: one core).
    pub fn proxy_cores(&self) -> u32 {
        self.proxies
    }
}

/// What a user sends to create a template: its name and provider, and any field of an edit,
/// applied to a template of defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewTemplate {
    pub name: String,
    pub provider: String,
    #[serde(flatten)]
    pub fields: TemplateEdit,
}

/// Changes to a template. Settings are merged: a `null` value removes a setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TemplateEdit {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub quota_cores: Option<u32>,
    #[serde(default)]
    pub proxies: Option<u32>,
    #[serde(default)]
    pub series_prefix: Option<String>,
    #[serde(default)]
    pub deploy_rate: Option<u32>,
    #[serde(default)]
    pub deploy_retries: Option<u32>,
    #[serde(default)]
    pub pause_after_failures: Option<u32>,
    /// `Small=0.10,Large=0.40`: hourly prices overriding the 2011 list prices.
    #[serde(default)]
    pub rates: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(flatten)]
    pub availability: AvailabilityInput,
    /// Secret settings of the provider by name (a certificate, a password, a key), as text.
    /// The head node checks them with the provider and stores them only sealed.
    #[serde(default)]
    pub secrets: std::collections::BTreeMap<String, Secret>,
    /// The secret setting `certificate` as a field of its own: a PKCS#12 (PFX) file,
    /// hex-encoded. The head node checks it and seals it with the password before anything is
    /// stored.
    #[serde(default)]
    pub certificate: Option<Secret>,
    #[serde(default)]
    pub certificate_password: Option<Secret>,
    /// The sealed certificate, set by the head node, never by a client.
    #[serde(skip_deserializing)]
    pub sealed: Option<String>,
    /// `NAME=VERSION` pins a package version for the template's nodes; `NAME=latest` unpins.
    #[serde(default)]
    pub pin: Option<Vec<String>>,
    /// The blob store of the template's packages.
    #[serde(default)]
    pub blob_store: Option<String>,
    /// How long a deployed node may take to connect (`10m`); empty for the head node's
    /// `--provision-timeout`.
    #[serde(default)]
    pub boot_timeout: Option<String>,
}

/// The availability options of `template create` and `template edit`, as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AvailabilityInput {
    /// `manual` or `schedule`.
    #[serde(default)]
    pub availability: Option<String>,
    /// `Mon-Fri 08:00-18:00`, …; replaces the schedule's windows.
    #[serde(default)]
    pub windows: Option<Vec<String>>,
    /// An IANA time zone name; default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// How long before a window the set is started (`10m`); default 10 minutes.
    #[serde(default)]
    pub lead_time: Option<String>,
    /// How long before a window's end the set is drained (`15m`); default 0.
    #[serde(default)]
    pub drain_before_end: Option<String>,
}

impl AvailabilityInput {
    fn is_empty(&self) -> bool {
        *self == AvailabilityInput::default()
    }

    /// The policy these options make of `current`.
    pub fn apply(&self, current: &Availability) -> Result<Availability> {
        if self.is_empty() {
            return Ok(current.clone());
        }
        let kind = match (&self.availability, current) {
            (Some(k), _) => k.to_ascii_lowercase(),
            (None, Availability::Schedule { .. }) => "schedule".to_string(),
            (None, Availability::Manual) if self.windows.is_some() => "schedule".to_string(),
            (None, Availability::Manual) => "manual".to_string(),
        };
        // The schedule repeats every week: a longer lead or drain time means nothing.
        const WEEK: Millis = 7 * 24 * 3_600_000;
        let duration = |t: &Option<String>, default: Millis| -> Result<Millis> {
            let value = t.as_deref().map_or(Ok(default), crate::duration::parse_duration)?;
            if value > WEEK {
                return Err(Error::invalid(format!(
                    "lead or drain time \"{}\" is longer than the limit of 7 days, the length of the weekly schedule \
                     (give 7d or less)",
                    crate::text::escape(t.as_deref().unwrap_or_default())
                )));
            }
            Ok(value)
        };
        let policy = match kind.as_str() {
            "manual" => Availability::Manual,
            "schedule" => {
                let (windows, timezone, lead, drain) = match current {
                    Availability::Schedule { windows, timezone, lead_time, drain_before_end } => {
                        (windows.clone(), timezone.clone(), *lead_time, *drain_before_end)
                    }
                    Availability::Manual => (vec![], "UTC".to_string(), 10 * 60_000, 0),
                };
                let windows = match &self.windows {
                    Some(list) => list.iter().map(|w| Window::parse(w)).collect::<Result<Vec<_>>>()?,
                    None => windows,
                };
                Availability::Schedule {
                    windows,
                    timezone: self.timezone.clone().unwrap_or(timezone),
                    lead_time: duration(&self.lead_time, lead)?,
                    drain_before_end: duration(&self.drain_before_end, drain)?,
                }
            }
            other => {
                return Err(Error::invalid(format!(
                    "availability \"{other}\" is not a policy (choose manual or schedule)"
                )));
            }
        };
        policy.check()?;
        Ok(policy)
    }
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
            "{what} name \"{}\" is not allowed (use 1-63 letters, digits, '-' or '_', starting with a letter or digit)",
            crate::text::escape(name)
        )))
    }
}

impl NewTemplate {
    /// The template this request makes, its settings checked by its provider's `rules`.
    pub fn validate(self, now: Millis, rules: &dyn ProviderRules) -> Result<Template> {
        validate_name("template", &self.name)?;
        // Sets of a provider whose agents reach the head node directly run no proxies.
        let proxies = if rules.proxies(&self.provider) { DEFAULT_PROXIES } else { 0 };
        let blank = Template { created_at: now, proxies, ..Template::new(&self.name, &self.provider) };
        let mut template = blank.apply(self.fields)?;
        let derived = rules.check(&template.provider, &mut template.settings, template.sealed.is_some())?;
        if template.blob_store.is_none() {
            template.blob_store = derived.blob_store;
        }
        template.check_proxies(rules)?;
        template.check()?;
        Ok(template)
    }
}

impl Template {
    /// Checks every field but the provider's settings against its rule.
    pub fn check(&self) -> Result<()> {
        if self.quota_cores == 0 || self.quota_cores > 1_000_000 {
            return Err(Error::invalid(format!(
                "quota of {} cores is out of range (give a whole number of cores from 1 to 1000000)",
                self.quota_cores
            )));
        }
        if self.proxies > 100 {
            return Err(Error::invalid(format!(
                "{} proxies is out of range (a started set runs from 0 to 100 proxies)",
                self.proxies
            )));
        }
        if let Some(t) = self.boot_timeout
            && !(1_000..=MAX_BOOT_TIMEOUT).contains(&t)
        {
            return Err(Error::invalid(format!(
                "boot timeout of {} s is out of range (give from 1s to 168h, e.g. 10m)",
                t / 1000
            )));
        }
        if let Some(uri) = &self.blob_store
            && !["file:///", "az://", "s3://"].iter().any(|s| uri.starts_with(s))
        {
            return Err(Error::invalid(format!(
                "blob store \"{uri}\" is not a blob store URI (write file:///DIR, az://ACCOUNT/CONTAINER or s3://BUCKET)"
            )));
        }
        if self.deploy_rate == 0 || self.deploy_rate > 100_000 {
            return Err(Error::invalid(format!(
                "deploy rate {} is out of range (give from 1 to 100000 deployments per minute)",
                self.deploy_rate
            )));
        }
        if self.deploy_retries > 100 {
            return Err(Error::invalid(format!(
                "{} deploy retries is out of range (give from 0 to 100)",
                self.deploy_retries
            )));
        }
        let currency_ok = !self.currency.is_empty()
            && self.currency.len() <= 8
            && self.currency.chars().all(|c| c.is_ascii_alphabetic());
        if !currency_ok {
            return Err(Error::invalid(format!(
                "currency \"{}\" is not a currency code (use letters, e.g. USD or EUR)",
                self.currency
            )));
        }
        if self.pause_after_failures == 0 {
            return Err(Error::invalid(
                "pause after 0 failures would pause at once (give 1 or more consecutive failures)",
            ));
        }
        if let Some(p) = &self.series_prefix {
            let ok = !p.is_empty()
                && p.len() <= 40
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && p.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(Error::invalid(format!(
                    "series prefix \"{p}\" is not allowed (use 1-40 letters, digits, '-' or '_', starting with a letter or digit, e.g. Burst-)"
                )));
            }
        }
        Ok(())
    }

    /// The template after `edit`, checked, its settings by its provider's `rules`.
    pub fn edited(&self, edit: TemplateEdit, rules: &dyn ProviderRules) -> Result<Template> {
        let mut t = self.apply(edit)?;
        rules.check(&t.provider, &mut t.settings, t.sealed.is_some())?;
        t.check_proxies(rules)?;
        t.check()?;
        Ok(t)
    }

    /// A set runs proxies only if its provider's agents reach the head node through them: from
    /// 1 for those, 0 for the others.
    fn check_proxies(&self, rules: &dyn ProviderRules) -> Result<()> {
        match (rules.proxies(&self.provider), self.proxies) {
            (true, 0) => Err(Error::invalid(format!(
                "0 proxies is out of range for a set of provider {}: its agents reach the head node through them (give \
                 --proxies from 1 to 100)",
                self.provider
            ))),
            (false, n) if n > 0 => Err(Error::invalid(format!(
                "provider {} runs no proxies (its agents reach the head node directly): leave --proxies out or give 0",
                self.provider
            ))),
            _ => Ok(()),
        }
    }

    /// The template after `edit`, each field parsed but the whole not yet checked.
    fn apply(&self, edit: TemplateEdit) -> Result<Template> {
        let mut t = self.clone();
        if let Some(d) = edit.description {
            crate::text::check_line("template description", &d, 500)?;
            t.description = d;
        }
        for (key, value) in edit.settings {
            if value.is_null() {
                t.settings.remove(&key);
            } else {
                t.settings.insert(key, value);
            }
        }
        if edit.certificate.is_some() || edit.certificate_password.is_some() || !edit.secrets.is_empty() {
            return Err(Error::invalid("secret settings must be sealed by the head node before they are stored"));
        }
        if let Some(sealed) = edit.sealed {
            t.sealed = Some(sealed);
        }
        if let Some(b) = edit.blob_store {
            t.blob_store = (!b.is_empty()).then_some(b);
        }
        if let Some(text) = edit.boot_timeout {
            t.boot_timeout = match text.trim() {
                "" => None,
                given => Some(crate::duration::parse_duration(given)?),
            };
        }
        for pin in edit.pin.iter().flatten() {
            let bad = || Error::invalid(format!("pin \"{pin}\" is not NAME=VERSION or NAME=latest (e.g. solver=3)"));
            let (name, version) = pin.split_once('=').ok_or_else(bad)?;
            let (name, version) = (name.trim(), version.trim());
            if name.is_empty() {
                return Err(bad());
            }
            if version == "latest" {
                t.pins.remove(name);
            } else {
                t.pins.insert(name.to_string(), version.parse().map_err(|_| bad())?);
            }
        }
        if let Some(q) = edit.quota_cores {
            t.quota_cores = q;
        }
        if let Some(p) = edit.proxies {
            t.proxies = p;
        }
        if let Some(p) = edit.series_prefix {
            t.series_prefix = (!p.is_empty()).then_some(p);
        }
        if let Some(r) = edit.deploy_rate {
            t.deploy_rate = r;
        }
        if let Some(r) = edit.deploy_retries {
            t.deploy_retries = r;
        }
        if let Some(p) = edit.pause_after_failures {
            t.pause_after_failures = p;
        }
        if let Some(text) = &edit.rates {
            for (size, rate) in crate::cost::parse_rates(text)? {
                match rate {
                    Some(micros) => t.rates.insert(size, micros),
                    None => t.rates.remove(&size),
                };
            }
        }
        if let Some(c) = edit.currency {
            t.currency = c;
        }
        t.availability = edit.availability.apply(&t.availability)?;
        Ok(t)
    }
}

/// The prefix of the naming series of a provider: `lab` → `LabCN-`.
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
    use crate::provider_rules::Derived;

    #[test]
    fn series_names_follow_the_2011_pattern() {
        assert_eq!(series_prefix("lab"), "LabCN-");
        assert_eq!(series_prefix("cloud"), "CloudCN-");
        assert_eq!(series_name("LocalCN-", 1), "LocalCN-0001");
        assert_eq!(series_name("LocalCN-", 12345), "LocalCN-12345");
    }

    /// Rules of a build with one provider, `lab`, that takes any setting.
    #[derive(Debug)]
    struct Lab;

    impl ProviderRules for Lab {
        fn check(
            &self,
            provider: &str,
            _: &mut serde_json::Map<String, serde_json::Value>,
            _: bool,
        ) -> Result<Derived> {
            match provider {
                "lab" | "rack" => Ok(Derived::default()),
                other => Err(Error::invalid(format!("provider \"{other}\" is not available (choose lab)"))),
            }
        }
        fn deployable(&self, _: &str) -> bool {
            true
        }
        /// `lab` sets run proxies; `rack` nodes reach the head node directly.
        fn proxies(&self, provider: &str) -> bool {
            provider == "lab"
        }
    }

    #[test]
    fn sets_run_proxies_only_if_their_provider_s_agents_need_them() {
        let new = |provider: &str, proxies: Option<u32>| NewTemplate {
            name: "t".into(),
            provider: provider.into(),
            fields: TemplateEdit { proxies, ..Default::default() },
        };
        assert_eq!(new("lab", None).validate(0, &Lab).unwrap().proxies, DEFAULT_PROXIES);
        assert_eq!(new("rack", None).validate(0, &Lab).unwrap().proxies, 0);
        let err = new("rack", Some(2)).validate(0, &Lab).unwrap_err();
        assert!(err.message.contains("runs no proxies") && err.message.contains("give 0"), "{err}");
        let err = new("lab", Some(0)).validate(0, &Lab).unwrap_err();
        assert!(err.message.contains("0 proxies is out of range"), "{err}");
        let rack = new("rack", None).validate(0, &Lab).unwrap();
        let err = rack.edited(TemplateEdit { proxies: Some(1), ..Default::default() }, &Lab).unwrap_err();
        assert!(err.message.contains("runs no proxies"), "{err}");
    }

    #[test]
    fn a_boot_timeout_is_a_duration_within_a_week_and_empty_clears_it() {
        let t = Template::new("t", "lab");
        let edit = |text: &str| TemplateEdit { boot_timeout: Some(text.into()), ..Default::default() };
        let set = t.edited(edit("10m"), &Lab).unwrap();
        assert_eq!(set.boot_timeout, Some(600_000));
        assert_eq!(set.edited(edit(""), &Lab).unwrap().boot_timeout, None);
        let err = t.edited(edit("200h"), &Lab).unwrap_err();
        assert!(err.message.contains("from 1s to 168h"), "{err}");
        assert!(t.edited(edit("soon"), &Lab).is_err());
    }

    fn lab() -> Template {
        NewTemplate { name: "t".into(), provider: "lab".into(), ..Default::default() }.validate(0, &Lab).unwrap()
    }

    #[test]
    fn the_providers_rules_refuse_an_unknown_provider() {
        let err = NewTemplate { name: "t".into(), provider: "gcp".into(), ..Default::default() }
            .validate(0, &Lab)
            .unwrap_err();
        assert!(err.message.contains("\"gcp\""), "{err}");
    }

    #[test]
    fn quota_proxies_and_prefix_are_checked_on_create_and_edit() {
        let t = lab();
        assert_eq!((t.quota_cores, t.proxies, t.prefix()), (20, 2, "LabCN-".to_string()));
        let err = t.edited(TemplateEdit { proxies: Some(0), ..Default::default() }, &Lab).unwrap_err();
        assert!(err.message.contains("0 proxies") && err.message.contains("from 1"), "{err}");
        let err = t.edited(TemplateEdit { series_prefix: Some("a b".into()), ..Default::default() }, &Lab).unwrap_err();
        assert!(err.message.contains("\"a b\""), "{err}");
        let e = t.edited(
            TemplateEdit { series_prefix: Some("Burst-".into()), quota_cores: Some(64), ..Default::default() },
            &Lab,
        );
        let e = e.unwrap();
        assert_eq!((e.prefix(), e.quota_cores), ("Burst-".to_string(), 64));
    }

    #[test]
    fn a_rate_set_to_list_and_a_pin_set_to_latest_are_removed() {
        let t = lab();
        use crate::size::NodeSize;
        let price = |t: &Template| t.rate_micros(NodeSize::Small);
        let t = t
            .edited(
                TemplateEdit {
                    rates: Some("Small=0.10,Large=1".into()),
                    pin: Some(vec!["solver=3".into(), " mesh = 1".into()]),
                    ..Default::default()
                },
                &Lab,
            )
            .unwrap();
        assert_eq!((price(&t), t.rates.len(), t.pins.len()), (100_000, 2, 2));
        let t = t
            .edited(
                TemplateEdit {
                    rates: Some("Small=list".into()),
                    pin: Some(vec!["solver=latest".into()]),
                    ..Default::default()
                },
                &Lab,
            )
            .unwrap();
        assert_eq!(price(&t), crate::cost::default_rate_micros(NodeSize::Small));
        assert_eq!(t.rates.keys().collect::<Vec<_>>(), ["Large"]);
        assert_eq!(t.pins.keys().collect::<Vec<_>>(), ["mesh"]);
        let err = t.edited(TemplateEdit { pin: Some(vec!["=3".into()]), ..Default::default() }, &Lab).unwrap_err();
        assert!(err.message.contains("\"=3\"") && err.message.contains("NAME=VERSION"), "{err}");
    }

    #[test]
    fn names_with_slashes_or_spaces_are_refused() {
        for bad in ["", "a b", "../x", "-x", &"x".repeat(64)] {
            assert!(validate_name("template", bad).is_err(), "{bad:?}");
        }
        validate_name("template", "burst-1_a").unwrap();
    }
}
