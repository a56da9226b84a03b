//! `thunderhead task`: the tasks of a job and their output.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::show;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::Value;
use thunderhead_core::view::{JobView, TaskOutput, TaskView};

#[derive(Subcommand)]
pub enum TaskCommand {
    /// List the tasks of a job that have started
    List {
        id: u64,
        /// Only tasks in this state
        #[arg(long)]
        state: Option<String>,
    },
    /// Print a task's standard output (or error)
    Output {
        /// JOB.INDEX, e.g. 3.17
        task: String,
        #[arg(long)]
        stderr: bool,
    },
}

/// The most task rows `task list` prints.
const TASK_LIST_LIMIT: u64 = 100_000;

fn parse_task_id(text: &str) -> Result<(u64, u64)> {
    let parsed = text.split_once('.').and_then(|(j, i)| Some((j.parse().ok()?, i.parse().ok()?)));
    parsed.with_context(|| format!("task \"{text}\" is not a task id (expected JOB.INDEX, e.g. 3.17)"))
}

pub fn run(c: &Client, command: TaskCommand, out: Output) -> Result<i32> {
    match command {
        TaskCommand::List { id, state } => {
            let path = ApiPath::new("jobs")
                .segment(id)
                .segment("tasks")
                .query("limit", TASK_LIST_LIMIT)
                .query_opt("state", state.as_ref());
            let tasks: Vec<TaskView> = c.get(&path)?;
            out.list(&tasks, &["task", "state", "attempt", "node", "exit", "started", "ended"], |t| {
                vec![
                    t.id.clone(),
                    t.state.clone(),
                    t.attempt.to_string(),
                    show::opt(&t.node),
                    show::opt(&t.exit_code),
                    show::time(t.started_at),
                    show::time(t.ended_at),
                ]
            });
            out.people(|| {
                let job: JobView = c.get(&ApiPath::new("jobs").segment(id))?;
                let listed = tasks.len() as u64;
                let whole = state.is_none() && listed < TASK_LIST_LIMIT;
                if whole && job.total_tasks > listed && !tasks.is_empty() {
                    println!("({} of {} tasks have started; the rest are queued)", listed, job.total_tasks);
                }
                Ok(())
            })?;
        }
        TaskCommand::Output { task, stderr } => {
            let (id, index) = parse_task_id(&task)?;
            let answer: Value = c.get(&ApiPath::new("jobs").segment(id).segment("tasks").segment(index))?;
            let output: TaskOutput = serde_json::from_value(answer["output"].clone())?;
            out.one(&answer, |_| print!("{}", if stderr { &output.stderr } else { &output.stdout }));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_parse_and_bad_ones_are_explained() {
        assert_eq!(parse_task_id("3.17").unwrap(), (3, 17));
        let err = parse_task_id("3-17").unwrap_err().to_string();
        assert!(err.contains("\"3-17\"") && err.contains("JOB.INDEX"), "{err}");
    }
}
