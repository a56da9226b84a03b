//! What the cluster spent: node-hours and cost per set and per job, and as chart lines.

use super::jobs::{own_job, visible_jobs};
use super::{Answer, Api, blocking};
use crate::actor::Request;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use thunderhead_core::Error;
use thunderhead_core::access::Caller;
use thunderhead_core::view::{CostReport, JobCost};

#[derive(Deserialize)]
pub(super) struct CostFilter {
    template: Option<String>,
    job: Option<u64>,
    /// Milliseconds since the epoch; default: everything.
    since: Option<u64>,
}

/// Node-hours and cost per set from the usage records, and cost per job from the jobs.
pub(super) async fn cost(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(filter): Query<CostFilter>,
) -> Answer<CostReport> {
    let until = crate::now_millis();
    let since = filter.since.unwrap_or(0);
    if let Some(t) = &filter.template {
        api.handle.ask(|r| Request::ShowTemplate(t.clone(), r)).await?;
    }
    let jobs = match filter.job {
        Some(id) => vec![own_job(&api, &caller, id).await?],
        None => visible_jobs(&api, &caller).await?,
    };
    let store = api.store.clone();
    let usage = blocking(move || store.usage(since)).await??;
    let mut sets = thunderhead_core::cost::summarize(&usage, since, until);
    sets.retain(|s| filter.template.as_deref().is_none_or(|t| t == s.template));
    let jobs: Vec<JobCost> = jobs
        .into_iter()
        .filter(|j| filter.job.is_none_or(|id| id == j.id))
        .filter(|j| j.ended_at.is_none_or(|e| e >= since))
        .map(|j| JobCost { id: j.id, name: j.name, core_hours: j.core_hours, cost: j.cost })
        .collect();
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    let spent: Vec<&BTreeMap<String, f64>> = if filter.job.is_some() {
        jobs.iter().map(|j| &j.cost).collect()
    } else {
        sets.iter().map(|s| &s.cost).collect()
    };
    for cost in spent {
        for (currency, amount) in cost {
            *total.entry(currency.clone()).or_default() += amount;
        }
    }
    let report = CostReport {
        since,
        until,
        sets: if filter.job.is_some() { vec![] } else { sets },
        jobs: if filter.template.is_some() { vec![] } else { jobs },
        total,
    };
    Ok(Json(report))
}

#[derive(Deserialize)]
pub(super) struct SeriesFilter {
    since: Option<u64>,
    until: Option<u64>,
    points: Option<u32>,
}

/// The most points a cost chart may have.
pub(super) const MAX_CHART_POINTS: u32 = 1_000;

/// What each set and each job the caller may see spent over a period, as chart lines: the
/// amount spent from `since` to each of `times`.
pub(super) async fn cost_series(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(filter): Query<SeriesFilter>,
) -> Answer {
    use thunderhead_core::cost;
    let now = crate::now_millis();
    let until = filter.until.unwrap_or(now).min(now);
    let since = filter.since.unwrap_or(until.saturating_sub(24 * 3_600_000));
    if since >= until {
        return Err(Error::invalid(format!(
            "since ({since}) is not before until ({until}): give a period that ends after it begins, in milliseconds since the epoch"
        ))
        .into());
    }
    let points = filter.points.unwrap_or(60);
    if !(2..=MAX_CHART_POINTS).contains(&points) {
        return Err(Error::invalid(format!(
            "points {points} is outside 2..={MAX_CHART_POINTS} (a chart needs 2 to {MAX_CHART_POINTS} points)"
        ))
        .into());
    }
    let jobs: BTreeMap<String, String> =
        visible_jobs(&api, &caller).await?.into_iter().map(|j| (j.id.to_string(), j.name)).collect();
    let store = api.store.clone();
    let times = cost::chart_times(since, until, points as usize);
    // Reading the stretches and samples and adding them up both stay off the async workers.
    let (set_lines, job_lines, times) = blocking(move || {
        let (usage, samples) = (store.usage(since)?, store.job_cost(since, until)?);
        Ok::<_, thunderhead_store::StoreError>((
            cost::set_lines(&usage, &times),
            cost::job_lines(&samples, &times),
            times,
        ))
    })
    .await??;
    let sets: Vec<Value> = set_lines
        .into_iter()
        .map(|l| serde_json::json!({"template": l.key, "currency": l.currency, "values": l.values}))
        .collect();
    let jobs: Vec<Value> = job_lines
        .into_iter()
        .filter_map(|l| {
            let name = jobs.get(&l.key)?;
            let id: u64 = l.key.parse().ok()?;
            Some(serde_json::json!({"id": id, "name": name, "currency": l.currency, "values": l.values}))
        })
        .collect();
    Ok(Json(serde_json::json!({"since": since, "until": until, "times": times, "sets": sets, "jobs": jobs})))
}
