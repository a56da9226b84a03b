//! `job wait` and `node start --wait`: a progress bar on a terminal, plain progress lines
//! otherwise.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use anyhow::Result;
use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use thunderhead_core::view::{JobView, NodeView};

fn is_terminal_state(state: &str) -> bool {
    matches!(state, "Finished" | "Failed" | "Canceled")
}

fn summary(j: &JobView) -> String {
    let t = &j.tasks;
    format!(
        "job {}: {}/{} finished, {} failed, {} running, {} queued",
        j.id, t.finished, j.total_tasks, t.failed, t.running, t.queued
    )
}

/// Waits for job `id` to end, showing progress. Exit code 0 only if it finished.
pub fn wait(c: &Client, id: u64, out: Output) -> Result<i32> {
    let job = wait_quietly(c, id, out.for_people())?;
    out.one(&job, |job| println!("{} -> {}", summary(job), job.state));
    Ok(if job.state == "Finished" { 0 } else { 1 })
}

/// How long `job wait` keeps trying to reach a head node that does not answer (a restart).
const UNREACHABLE_FOR: Duration = Duration::from_secs(120);

/// Reads the job, riding out a head node that is restarting.
fn poll(c: &Client, id: u64) -> Result<JobView> {
    let start = Instant::now();
    loop {
        match c.get(&ApiPath::new("jobs").segment(id)) {
            Ok(job) => return Ok(job),
            Err(e) if e.to_string().contains("cannot reach the head node") && start.elapsed() < UNREACHABLE_FOR => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls the job until it ends; draws progress on stderr when `progress` is set.
pub fn wait_quietly(c: &Client, id: u64, progress: bool) -> Result<JobView> {
    let terminal = progress && std::io::stderr().is_terminal();
    let mut job: JobView = c.get(&ApiPath::new("jobs").segment(id))?;
    let bar = terminal.then(|| {
        let bar = ProgressBar::new(job.total_tasks);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} job {prefix} [{bar:40}] {pos}/{len} done, {msg} ({elapsed}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(id.to_string());
        bar
    });
    let mut last_line = Instant::now() - Duration::from_secs(10);
    let mut last_done = u64::MAX;
    loop {
        let t = &job.tasks;
        let done = t.finished + t.failed + t.canceled;
        if let Some(bar) = &bar {
            bar.set_position(done);
            bar.set_message(format!("{} failed, {} running", t.failed, t.running));
        } else if progress && (done != last_done && last_line.elapsed() >= Duration::from_secs(2)) {
            eprintln!("{}", summary(&job));
            last_line = Instant::now();
            last_done = done;
        }
        if is_terminal_state(&job.state) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        job = poll(c, id)?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(job)
}

/// Polls the nodes `fetch` lists until `done` holds for all of them. With `progress`, it draws a
/// bar of how many do on a terminal and prints a line each time the count changes otherwise;
/// without (`--json`), standard output stays for the answer alone. A node that fails (`Unknown`)
/// ends the wait with its cause.
pub fn await_nodes(
    fetch: impl Fn() -> Result<Vec<NodeView>>,
    what: &str,
    timeout: Duration,
    progress: bool,
    done: impl Fn(&NodeView) -> bool,
) -> Result<Vec<NodeView>> {
    let start = Instant::now();
    let mut list = fetch()?;
    let bar = (progress && std::io::stdout().is_terminal()).then(|| {
        let bar = ProgressBar::new(list.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("    [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    });
    let mut last = usize::MAX;
    loop {
        let ready = list.iter().filter(|n| done(n)).count();
        if let Some(bar) = &bar {
            bar.set_position(ready as u64);
        } else if progress && ready != last {
            println!("    {ready}/{} {what}", list.len());
            last = ready;
        }
        if let Some(failed) = list.iter().find(|n| n.state == "Unknown") {
            bail!("node {} failed: {}", failed.name, failed.cause.clone().unwrap_or_default());
        }
        if ready == list.len() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(list);
        }
        if start.elapsed() > timeout {
            bail!("nodes were not {what} after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
        list = fetch()?;
    }
}
