//! What burst nodes cost: rates per size, usage intervals, and summaries.
//!
//! A node costs from the moment it is started until its removal completes (a cloud bills a VM
//! until it is deleted, whether or not it ever worked), and a set's proxies cost while any node
//! of the set is deployed. Each stretch is a [`Usage`] record that carries the rate in force
//! when it began, so a rate changed later applies from the next start. Money is kept in
//! millionths of the currency unit, so sums are exact.

use crate::size::NodeSize;
use crate::{Error, Millis, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The 2011 list prices per hour, in USD: ExtraSmall 0.04, Small 0.12, Medium 0.24, Large 0.48,
/// ExtraLarge 0.96.
pub fn default_rate_micros(size: NodeSize) -> u64 {
    match size {
        NodeSize::ExtraSmall => 40_000,
        NodeSize::Small => 120_000,
        NodeSize::Medium => 240_000,
        NodeSize::Large => 480_000,
        NodeSize::ExtraLarge => 960_000,
    }
}

pub const DEFAULT_CURRENCY: &str = "USD";

/// Parses `Small=0.10,Large=0.40` into hourly rates in millionths, by size name. A price of
/// `list` (`Small=list`) is `None`: the size goes back to its 2011 list price.
pub fn parse_rates(text: &str) -> Result<BTreeMap<String, Option<u64>>> {
    let mut rates = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            Error::invalid(format!(
                "rate \"{part}\" is not SIZE=PRICE or SIZE=list (write e.g. Small=0.12,Medium=0.24 with prices per hour)"
            ))
        };
        let (size, price) = part.split_once('=').ok_or_else(bad)?;
        let size = NodeSize::parse(size)?;
        let price = price.trim();
        if price == "list" {
            rates.insert(size.name().to_string(), None);
            continue;
        }
        let price: f64 = price.parse().map_err(|_| bad())?;
        if !(0.0..=1_000_000.0).contains(&price) {
            return Err(bad());
        }
        rates.insert(size.name().to_string(), Some((price * 1e6).round() as u64));
    }
    Ok(rates)
}

pub fn format_money(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1e6)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UsageKind {
    Node,
    Proxies,
}

/// One stretch of paid time: a node from start to removal, or a set's proxies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub id: u64,
    pub template: String,
    pub kind: UsageKind,
    /// The node's name, or `proxies`.
    pub name: String,
    pub size: NodeSize,
    /// Instances billed together (1 for a node, the proxy count for proxies).
    pub count: u32,
    /// Price per instance-hour in millionths of `currency`.
    pub rate_micros: u64,
    pub currency: String,
    pub start: Millis,
    /// `None` while it lasts.
    pub end: Option<Millis>,
}

impl Usage {
    /// Milliseconds of this stretch within `[since, until)`, per instance.
    pub fn millis_within(&self, since: Millis, until: Millis) -> u64 {
        let start = self.start.max(since);
        let end = self.end.unwrap_or(until).min(until);
        end.saturating_sub(start)
    }

    /// Cost within `[since, until)`, in millionths.
    pub fn cost_within(&self, since: Millis, until: Millis) -> u64 {
        let ms = self.millis_within(since, until) as u128 * self.count as u128;
        (ms * self.rate_micros as u128 / 3_600_000) as u64
    }
}

/// Node-hours, proxy-hours and cost of one set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetCost {
    pub template: String,
    pub node_hours: f64,
    pub proxy_hours: f64,
    /// Cost per currency, in currency units.
    pub cost: BTreeMap<String, f64>,
}

/// Sums usage per set over `[since, until)`.
pub fn summarize(usages: &[Usage], since: Millis, until: Millis) -> Vec<SetCost> {
    let mut sets: BTreeMap<&str, (u64, u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for u in usages {
        let entry = sets.entry(u.template.as_str()).or_default();
        let ms = u.millis_within(since, until) * u.count as u64;
        match u.kind {
            UsageKind::Node => entry.0 += ms,
            UsageKind::Proxies => entry.1 += ms,
        }
        *entry.2.entry(u.currency.clone()).or_default() += u.cost_within(since, until);
    }
    sets.into_iter()
        .map(|(template, (node_ms, proxy_ms, cost))| SetCost {
            template: template.to_string(),
            node_hours: node_ms as f64 / 3_600_000.0,
            proxy_hours: proxy_ms as f64 / 3_600_000.0,
            cost: cost.into_iter().map(|(c, m)| (c, m as f64 / 1e6)).collect(),
        })
        .collect()
}

/// What a job had cost by `at`, per currency in millionths: one sample of its running total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCostSample {
    pub job: crate::JobId,
    pub at: Millis,
    pub cost_micros: BTreeMap<String, u64>,
}

/// One line of a cost chart: what was spent from the chart's start to each of its times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    /// The set's template, or the job's id.
    pub key: String,
    pub currency: String,
    /// Currency units, one per time of the chart.
    pub values: Vec<f64>,
}

/// `points` evenly spaced times from `since` to `until`, both included.
pub fn chart_times(since: Millis, until: Millis, points: usize) -> Vec<Millis> {
    let points = points.max(2);
    let span = until.saturating_sub(since);
    (0..points).map(|i| since + span * i as u64 / (points - 1) as u64).collect()
}

/// What each set spent from `times[0]` to each of `times`, per currency.
pub fn set_lines(usages: &[Usage], times: &[Millis]) -> Vec<CostLine> {
    let Some(&since) = times.first() else { return Vec::new() };
    let mut lines: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
    for u in usages {
        let line = lines.entry((&u.template, &u.currency)).or_insert_with(|| vec![0; times.len()]);
        for (value, &t) in line.iter_mut().zip(times) {
            *value += u.cost_within(since, t);
        }
    }
    lines
        .into_iter()
        .map(|((template, currency), values)| CostLine {
            key: template.to_string(),
            currency: currency.to_string(),
            values: values.into_iter().map(|m| m as f64 / 1e6).collect(),
        })
        .collect()
}

/// What each job spent from `times[0]` to each of `times`, per currency, from samples of its
/// running total (ordered by job, then time); jobs that spent nothing in the period are left out.
pub fn job_lines(samples: &[JobCostSample], times: &[Millis]) -> Vec<CostLine> {
    let mut lines = Vec::new();
    for job in samples.chunk_by(|a, b| a.job == b.job) {
        let currencies: std::collections::BTreeSet<&String> = job.iter().flat_map(|s| s.cost_micros.keys()).collect();
        for currency in currencies {
            // The job's running total at each time: samples and times both go forward.
            let mut next = 0;
            let mut total = 0;
            let mut totals = times.iter().map(|&t| {
                while next < job.len() && job[next].at <= t {
                    total = job[next].cost_micros.get(currency).copied().unwrap_or(total);
                    next += 1;
                }
                total
            });
            let base = totals.next().unwrap_or(0);
            let values: Vec<u64> = std::iter::once(0).chain(totals.map(|total| total.saturating_sub(base))).collect();
            if values.iter().any(|&v| v > 0) {
                lines.push(CostLine {
                    key: job[0].job.to_string(),
                    currency: currency.clone(),
                    values: values.into_iter().map(|m| m as f64 / 1e6).collect(),
                });
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(kind: UsageKind, count: u32, start: Millis, end: Option<Millis>) -> Usage {
        Usage {
            id: 1,
            template: "t".into(),
            kind,
            name: "n".into(),
            size: NodeSize::Medium,
            count,
            rate_micros: 240_000,
            currency: "USD".into(),
            start,
            end,
        }
    }

    const HOUR: Millis = 3_600_000;

    #[test]
    fn a_medium_node_for_two_hours_costs_48_cents_and_proxies_count() {
        let sets = summarize(
            &[
                usage(UsageKind::Node, 1, 0, Some(2 * HOUR)),
                Usage { rate_micros: 120_000, ..usage(UsageKind::Proxies, 2, 0, Some(HOUR)) },
            ],
            0,
            10 * HOUR,
        );
        assert_eq!(sets.len(), 1);
        assert_eq!((sets[0].node_hours, sets[0].proxy_hours), (2.0, 2.0));
        assert_eq!(sets[0].cost["USD"], 0.48 + 0.24);
    }

    #[test]
    fn open_usage_runs_to_now_and_since_clips() {
        let u = usage(UsageKind::Node, 1, HOUR, None);
        assert_eq!(u.millis_within(0, 3 * HOUR), 2 * HOUR);
        assert_eq!(u.millis_within(2 * HOUR, 3 * HOUR), HOUR);
        assert_eq!(u.millis_within(5 * HOUR, 4 * HOUR), 0);
    }

    #[test]
    fn rates_parse_and_bad_ones_are_explained() {
        let r = parse_rates("Small=0.10, ExtraLarge=1, Medium=list").unwrap();
        assert_eq!((r["Small"], r["ExtraLarge"], r["Medium"]), (Some(100_000), Some(1_000_000), None));
        assert!(parse_rates("Small:0.1").unwrap_err().message.contains("SIZE=PRICE"));
        assert!(parse_rates("Huge=1").unwrap_err().message.contains("\"Huge\""));
    }

    #[test]
    fn a_chart_adds_up_what_each_set_and_job_spent_since_its_start() {
        let times = chart_times(HOUR, 3 * HOUR, 3);
        assert_eq!(times, [HOUR, 2 * HOUR, 3 * HOUR]);
        let sets = set_lines(&[usage(UsageKind::Node, 1, 0, None)], &times);
        assert_eq!(sets.len(), 1);
        assert_eq!((sets[0].key.as_str(), sets[0].values.clone()), ("t", vec![0.0, 0.24, 0.48]));
        let sample = |job, at, micros| JobCostSample { job, at, cost_micros: [("USD".to_string(), micros)].into() };
        let samples = [sample(7, 0, 100_000), sample(7, 90 * 60_000, 300_000), sample(8, 0, 50_000)];
        let jobs = job_lines(&samples, &times);
        // Job 8 spent all it spent before the chart begins.
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].key.as_str(), jobs[0].values.clone()), ("7", vec![0.0, 0.2, 0.2]));
    }

    #[test]
    fn defaults_are_the_2011_list_prices() {
        let prices: Vec<String> = NodeSize::ALL.iter().map(|s| format_money(default_rate_micros(*s))).collect();
        assert_eq!(prices, ["0.04", "0.12", "0.24", "0.48", "0.96"]);
    }
}
