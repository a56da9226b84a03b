//! `thunderhead job`: submitting jobs (with their local inputs staged to the head node),
//! following them and fetching their outputs.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::{show, wait};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use thunderhead_core::job::JobSubmission;
use thunderhead_core::view::{JobView, SubmitReply};

#[derive(Subcommand)]
pub enum JobCommand {
    /// Submit a job: -- COMMAND ARGS, or --file job.toml
    Submit(SubmitArgs),
    /// List jobs
    List,
    /// Show a job
    View { id: u64 },
    /// Wait for a job to end; exits 0 only if every task finished with exit code 0
    Wait { id: u64 },
    /// Cancel a job; running tasks are killed
    Cancel { id: u64 },
    /// Run the failed and canceled tasks of a Failed or Canceled job again (finished tasks
    /// stay finished)
    Requeue { id: u64 },
    /// Download every output the job's tasks uploaded to its area, as DIR/INDEX/PATH
    Output {
        id: u64,
        #[arg(long, default_value = ".")]
        to: PathBuf,
    },
}

#[derive(Args)]
pub struct SubmitArgs {
    #[arg(long)]
    name: Option<String>,
    /// Lowest, BelowNormal, Normal, AboveNormal or Highest
    #[arg(long)]
    priority: Option<String>,
    #[arg(long)]
    cores_per_task: Option<u32>,
    /// START-END[:STEP]: run COMMAND once per index, with * replaced by the index
    #[arg(long)]
    sweep: Option<String>,
    /// How often a task is requeued when its node is lost
    #[arg(long)]
    retries: Option<u32>,
    /// A JSON or TOML job file
    #[arg(long)]
    file: Option<PathBuf>,
    /// SOURCE[:LOCAL_PATH]: a blob URI or a local file (uploaded now) fetched into each task's
    /// directory before it runs; `*` is the sweep index (repeat for more)
    #[arg(long = "input")]
    inputs: Vec<String>,
    /// GLOB[:BLOB_PREFIX]: files of each task's directory uploaded after it ends [prefix
    /// default: the job's area, jobs/JOB/INDEX/] (repeat for more)
    #[arg(long = "output")]
    outputs: Vec<String>,
    /// When outputs are uploaded: success, failure or always [default: success]
    #[arg(long)]
    upload_on: Option<String>,
    /// The command to run, after --
    #[arg(last = true)]
    command: Vec<String>,
}

fn read_job_file(path: &Path) -> Result<JobSubmission> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the job file {}", path.display()))?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let parsed = if is_toml {
        toml::from_str::<JobSubmission>(&text).map_err(|e| anyhow::anyhow!("{e}"))
    } else {
        serde_json::from_str::<JobSubmission>(&text).map_err(|e| anyhow::anyhow!("{e}"))
    };
    parsed.with_context(|| {
        format!("the job file {} is not a valid {} job file", path.display(), if is_toml { "TOML" } else { "JSON" })
    })
}

pub fn run(c: &Client, command: JobCommand, out: Output) -> Result<i32> {
    match command {
        JobCommand::Submit(args) => {
            let reply = submit(c, args)?;
            out.one(&reply, |reply| println!("{}", reply.id));
        }
        JobCommand::List => {
            let jobs: Vec<JobView> = c.get(&ApiPath::new("jobs"))?;
            let headers = ["id", "name", "owner", "state", "priority", "tasks", "finished", "failed", "submitted"];
            out.list(&jobs, &headers, |j| {
                vec![
                    j.id.to_string(),
                    j.name.clone(),
                    j.owner.clone(),
                    j.state.clone(),
                    j.priority.clone(),
                    j.total_tasks.to_string(),
                    j.tasks.finished.to_string(),
                    j.tasks.failed.to_string(),
                    show::time(Some(j.submitted_at)),
                ]
            });
        }
        JobCommand::View { id } => {
            let j: JobView = c.get(&ApiPath::new("jobs").segment(id))?;
            out.one(&j, print_job);
        }
        JobCommand::Wait { id } => return wait::wait(c, id, out),
        JobCommand::Output { id, to } => {
            let files: Vec<Value> = c.get_data(&ApiPath::new("jobs").segment(id).segment("outputs"))?;
            for f in &files {
                let (index, path, location) = (
                    f["index"].as_str().unwrap_or("0"),
                    f["path"].as_str().unwrap_or("out"),
                    f["location"].as_str().unwrap_or(""),
                );
                let dest = to.join(index).join(path);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
                }
                c.download(&ApiPath::new("blobs").query("location", location), &dest)?;
            }
            out.one(&files, |files| {
                println!("downloaded {} output file(s) of job {id} into {}", files.len(), to.display());
            });
        }
        JobCommand::Cancel { id } => {
            let j: JobView = c.post(&ApiPath::new("jobs").segment(id).segment("cancel"), &json!({}))?;
            out.one(&j, |j| println!("job {id} canceled ({} task(s) canceled)", j.tasks.canceled));
        }
        JobCommand::Requeue { id } => {
            let j: JobView = c.post(&ApiPath::new("jobs").segment(id).segment("requeue"), &json!({}))?;
            out.one(&j, |j| println!("job {id} requeued ({} task(s) queued again)", j.tasks.queued));
        }
    }
    Ok(0)
}

/// Submits a job from the command line and its job file, staging its local inputs first.
fn submit(c: &Client, args: SubmitArgs) -> Result<SubmitReply> {
    let mut submission = match &args.file {
        Some(path) => {
            if !args.command.is_empty() {
                bail!("give either --file or a command after --, not both");
            }
            read_job_file(path)?
        }
        None => {
            if args.command.is_empty() {
                bail!("no command to run (give it after --, e.g. thunderhead job submit --sweep 1-10 -- echo '*')");
            }
            JobSubmission { command: Some(args.command), ..Default::default() }
        }
    };
    submission.name = args.name.or(submission.name);
    submission.priority = args.priority.or(submission.priority);
    submission.cores_per_task = args.cores_per_task.or(submission.cores_per_task);
    submission.sweep = args.sweep.or(submission.sweep);
    submission.retries = args.retries.or(submission.retries);
    if !args.inputs.is_empty() {
        // Local inputs go to the job's area, so the job's id is reserved first.
        let mut reserved: Option<u64> = None;
        let mut staged = Vec::new();
        for input in &args.inputs {
            staged.push(stage_input(c, input, &mut reserved)?);
        }
        submission.inputs = Some(staged);
        submission.reserved_id = reserved;
    }
    if !args.outputs.is_empty() {
        submission.outputs = Some(args.outputs);
    }
    submission.upload_on = args.upload_on.or(submission.upload_on);
    c.post(&ApiPath::new("jobs"), &submission)
}

/// An `--input`: a blob location is kept; a local file (its name may hold `*` runs, matched
/// against the directory's files) is uploaded now and named by its new location.
fn stage_input(c: &Client, input: &str, reserved: &mut Option<u64>) -> Result<String> {
    let (source, local) = thunderhead_core::staging::split_pair(input);
    let is_location = source.starts_with(thunderhead_core::staging::LOCAL_STORE)
        || ["file://", "az://", "s3://"].iter().any(|s| source.starts_with(s));
    if is_location {
        return Ok(input.to_string());
    }
    let path = Path::new(source);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let pattern = path.file_name().map(|n| n.to_string_lossy().into_owned()).context("the input names no file")?;
    if dir.to_string_lossy().contains('*') {
        bail!("input \"{input}\": only the file name of a local input may hold * (the sweep index)");
    }
    let id = match reserved {
        Some(id) => *id,
        None => {
            let reply: SubmitReply = c.post(&ApiPath::new("jobs").segment("reserve"), &json!({}))?;
            *reserved = Some(reply.id);
            reply.id
        }
    };
    let matches = |name: &str| thunderhead_agent::glob_match(&pattern, name);
    let mut uploaded = 0;
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {} of input {input}", dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && matches(&name) {
            let _: Value =
                c.put_file(&ApiPath::new("jobs").segment(id).segment("inputs").segment(&name), &entry.path())?;
            uploaded += 1;
        }
    }
    if uploaded == 0 {
        bail!("input \"{input}\" matches no file in {} (give an existing file, or a blob URI)", dir.display());
    }
    let location = format!("{}jobs/{id}/inputs/{pattern}", thunderhead_core::staging::LOCAL_STORE);
    Ok(match local {
        Some(l) => format!("{location}:{l}"),
        None => format!("{location}:{pattern}"),
    })
}

fn print_job(j: &JobView) {
    let t = &j.tasks;
    println!("job:       {} ({})", j.id, j.name);
    println!("state:     {}", j.state);
    println!("priority:  {}", j.priority);
    println!(
        "tasks:     {} total: {} queued, {} running, {} finished, {} failed, {} canceled",
        j.total_tasks, t.queued, t.running, t.finished, t.failed, t.canceled
    );
    if let thunderhead_core::view::JobSpecView::Sweep { command, range } = &j.spec {
        println!("sweep:     {range} of: {}", command.join(" "));
    }
    println!("submitted: {}", show::time(Some(j.submitted_at)));
    println!("started:   {}", show::time(j.started_at));
    println!("ended:     {}", show::time(j.ended_at));
}
