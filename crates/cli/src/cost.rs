//! `thunderhead cost`: node-hours and what they cost, per set, per job and in total.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::show;
use anyhow::{Result, bail};
use clap::Args;
use thunderhead_core::view::CostReport;

#[derive(Args)]
pub struct CostArgs {
    /// Only this template's set
    #[arg(long)]
    template: Option<String>,
    /// Only this job
    #[arg(long)]
    job: Option<u64>,
    /// From this time on: RFC 3339 (2026-11-01T00:00:00Z, 2026-11-01) or a span back from now (24h, 7days)
    #[arg(long)]
    since: Option<String>,
}

/// Reads `--since`: an RFC 3339 time or date, or a span back from now.
fn parse_since(text: &str) -> Result<u64> {
    let now = std::time::SystemTime::now();
    let at = if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        t
    } else if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{text} 00:00:00")) {
        t
    } else if let Ok(span) = humantime::parse_duration(text) {
        now.checked_sub(span).unwrap_or(std::time::UNIX_EPOCH)
    } else {
        bail!("--since \"{text}\" is neither a time nor a span (write e.g. 2026-11-01, 2026-11-01T08:00:00Z or 24h)")
    };
    Ok(at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

fn money(cost: &std::collections::BTreeMap<String, f64>) -> String {
    if cost.is_empty() {
        return "0.00".into();
    }
    cost.iter().map(|(c, v)| format!("{v:.2} {c}")).collect::<Vec<_>>().join(", ")
}

pub fn run(c: &Client, args: CostArgs, out: Output) -> Result<i32> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let path =
        ApiPath::new("cost").query_opt("template", args.template).query_opt("job", args.job).query_opt("since", since);
    let report: CostReport = c.get(&path)?;
    out.one(&report, print_report);
    Ok(0)
}

fn print_report(report: &CostReport) {
    println!("from {} to {}", show::time(Some(report.since)), show::time(Some(report.until)));
    if !report.sets.is_empty() {
        show::table(
            &["set", "node-hours", "proxy-hours", "cost"],
            report
                .sets
                .iter()
                .map(|s| {
                    vec![
                        s.template.clone(),
                        format!("{:.2}", s.node_hours),
                        format!("{:.2}", s.proxy_hours),
                        money(&s.cost),
                    ]
                })
                .collect(),
        );
    }
    if !report.jobs.is_empty() {
        show::table(
            &["job", "name", "core-hours", "cost"],
            report
                .jobs
                .iter()
                .map(|j| vec![j.id.to_string(), j.name.clone(), format!("{:.3}", j.core_hours), money(&j.cost)])
                .collect(),
        );
    }
    println!("total: {}", money(&report.total));
}
