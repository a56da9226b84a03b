//! A task's phase on the agent, and the one place it moves from phase to phase.
//!
//! A task is *held* from the moment it is given cores until its result is handed to the outbox
//! (or, canceled, it goes without one). Before that it waits in the agent's queue; after, its
//! result waits in the outbox until the head node acknowledges it. While held:
//!
//! ```text
//! phase               event               next phase            the agent then
//! ─────────────────── ─────────────────── ───────────────────── ──────────────────────────────
//! Staging             cancel              StagingCanceled       waits for the fetch
//! Staging             inputs fetched      (not held)            launches it: Running
//! Staging             inputs failed       (not held)            reports it as not run
//! StagingCanceled     cancel              StagingCanceled       waits for the fetch
//! StagingCanceled     inputs fetched/not  (not held)            removes its directory
//! Running             cancel              Canceling             kills its process group
//! Running             process exited      Sweeping (reports)    kills what it left behind
//! Canceling           cancel              Canceling             kills its process group
//! Canceling           process exited      Sweeping (canceled)   kills what it left behind
//! Sweeping            cancel              Sweeping              nothing: it already ended
//! Sweeping (reports)  leftovers gone      (not held)            uploads: Uploading, or reports
//! Sweeping (canceled) leftovers gone      (not held)            releases its directory
//! Uploading           cancel              Uploading             nothing: it already ended
//! Uploading           outputs up/failed   (not held)            reports it
//! ```
//!
//! A task with no inputs is launched at once; one whose inputs could not be fetched, or whose
//! program could not start, is reported as not run. The agent *admits* a task into the map in
//! the phases it enters from outside ([`TaskPhase::Staging`], [`TaskPhase::Running`] once
//! launched, [`TaskPhase::Uploading`] once finished) and moves it with [`crate::held_tasks::HeldTasks::apply`],
//! which goes through [`TaskPhase::on`]. That function decides; it does no I/O and reads no
//! clock: what the agent must do is the [`Action`] it returns. An event the phase does not
//! allow is a [`PhaseError`], and the task stays as it was.

use crate::reaper::Exit;
use crate::task_dir::{OutputFiles, TaskDir};
use crate::task_spec::{Outputs, TaskSpec};
use std::path::PathBuf;
use thunderhead_proto::{TaskRef, TaskResult};

/// The phase of a task the agent holds, with what the agent knows of it in that phase.
/// `O` is what holds the task's output (its open output files; tests use `()`).
#[derive(Debug, PartialEq)]
pub(crate) enum TaskPhase<O = OutputFiles> {
    /// Its inputs are being fetched into `dir`; it starts when they are in.
    Staging { spec: TaskSpec, dir: PathBuf, cores: u32, started_at: u64 },
    /// Canceled while its inputs were being fetched: it goes, without a result, when the fetch
    /// ends.
    StagingCanceled { dir: PathBuf, cores: u32 },
    /// Its process runs; `outputs` may go up when it ends.
    Running { process: Process<O>, outputs: Outputs },
    /// Canceled while running: its process group was killed, and it goes, without a result,
    /// once it has exited and left nothing behind.
    Canceling { process: Process<O> },
    /// Its process exited; what it left behind is being killed before it ends as `ending` says.
    Sweeping { process: Process<O>, ending: Ending },
    /// Its outputs are being uploaded; `result` is reported when they are up (or failed to be).
    Uploading { result: TaskResult },
}

/// A started task's process, and what it holds.
#[derive(Debug, PartialEq)]
pub(crate) struct Process<O = OutputFiles> {
    /// Its leader, which is also its process group.
    pub(crate) pid: i32,
    pub(crate) started_at: u64,
    pub(crate) dir: TaskDir,
    pub(crate) cores: u32,
    /// Its standard output and error.
    pub(crate) output: O,
}

/// How a task whose process exited ends, once what it left behind is gone.
#[derive(Debug, PartialEq)]
pub(crate) enum Ending {
    /// It reports how it exited (`None`: the agent lost track of it), after its outputs, if
    /// any are wanted.
    Reports { exit: Option<Exit>, outputs: Outputs },
    /// It was canceled: it goes without a result.
    Canceled,
}

/// What happened to a task the agent holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PhaseEvent {
    /// The head node canceled it.
    Cancel,
    /// Its inputs were fetched, or why not.
    StagedIn(Result<(), String>),
    /// Its process exited (`None`: the agent lost track of it).
    Exited(Option<Exit>),
    /// The processes it left behind are gone (or could not all be killed).
    Swept,
    /// Its outputs were uploaded (how many), or why not.
    StagedOut(Result<usize, String>),
}

impl PhaseEvent {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            PhaseEvent::Cancel => "cancel",
            PhaseEvent::StagedIn(_) => "inputs fetched",
            PhaseEvent::Exited(_) => "process exited",
            PhaseEvent::Swept => "leftover processes gone",
            PhaseEvent::StagedOut(_) => "outputs uploaded",
        }
    }
}

/// What the agent does after a transition.
#[derive(Debug, PartialEq)]
pub(crate) enum Action<O = OutputFiles> {
    /// Nothing, for now.
    Wait,
    /// Kill the process group `pid`: the task was canceled.
    Kill(i32),
    /// Kill the process group `pid` and every process the task left behind, then tell the task
    /// [`PhaseEvent::Swept`].
    Sweep(i32),
    /// The task's inputs are in `dir`: start it there, and admit it as running. It is no longer
    /// held until then.
    Launch { spec: TaskSpec, dir: PathBuf, cores: u32, started_at: u64 },
    /// The task ended and left nothing behind: make its result from its output, then admit it
    /// as uploading if `outputs` are wanted, or report it. It is no longer held, its cores free.
    Finish { process: Process<O>, exit: Option<Exit>, outputs: Outputs },
    /// The task is no longer held: release its directory and report `result`, if any.
    Release { dir: TaskDir, result: Option<TaskResult> },
    /// The task is no longer held: report `result`.
    Report(TaskResult),
}

/// A transition's outcome: the task's phase, if it is still held, and what the agent does.
#[derive(Debug, PartialEq)]
pub(crate) struct Step<O = OutputFiles> {
    pub(crate) phase: Option<TaskPhase<O>>,
    pub(crate) action: Action<O>,
}

/// An event refused: the phase, unchanged, and why.
#[derive(Debug, PartialEq)]
pub(crate) struct Refused<O = OutputFiles> {
    pub(crate) phase: TaskPhase<O>,
    pub(crate) error: PhaseError,
}

/// Why the agent dropped an event or refused to admit a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PhaseError {
    #[error("task {task} is {phase}: \"{event}\" is not a transition of that phase")]
    Illegal { task: TaskRef, phase: &'static str, event: &'static str },
    #[error("task {task} is not held by this agent: \"{event}\" has nothing to move")]
    NotHeld { task: TaskRef, event: &'static str },
    #[error("task {task} is already held by this agent ({phase}): it is not admitted again")]
    AlreadyHeld { task: TaskRef, phase: &'static str },
    #[error("task {task} cannot be admitted {phase}: only a transition leads there")]
    NotAnEntry { task: TaskRef, phase: &'static str },
}

impl<O> TaskPhase<O> {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            TaskPhase::Staging { .. } => "staging",
            TaskPhase::StagingCanceled { .. } => "canceled while staging",
            TaskPhase::Running { .. } => "running",
            TaskPhase::Canceling { .. } => "canceling",
            TaskPhase::Sweeping { .. } => "sweeping",
            TaskPhase::Uploading { .. } => "uploading",
        }
    }

    /// The cores the task holds in this phase.
    pub(crate) fn cores(&self) -> u32 {
        match self {
            TaskPhase::Staging { cores, .. } | TaskPhase::StagingCanceled { cores, .. } => *cores,
            TaskPhase::Running { process, .. }
            | TaskPhase::Canceling { process }
            | TaskPhase::Sweeping { process, .. } => process.cores,
            TaskPhase::Uploading { .. } => 0,
        }
    }

    /// The task's process group, while its process runs.
    pub(crate) fn running_pid(&self) -> Option<i32> {
        match self {
            TaskPhase::Running { process, .. } | TaskPhase::Canceling { process } => Some(process.pid),
            TaskPhase::Staging { .. }
            | TaskPhase::StagingCanceled { .. }
            | TaskPhase::Sweeping { .. }
            | TaskPhase::Uploading { .. } => None,
        }
    }

    /// Moves task `task` on `event`, at `now` (milliseconds since the epoch). An event this
    /// phase does not allow is refused, and the phase given back unchanged.
    pub(crate) fn on(self, task: TaskRef, event: PhaseEvent, now: u64) -> Result<Step<O>, Box<Refused<O>>> {
        use PhaseEvent as E;
        use TaskPhase as P;
        let held = |phase, action| Ok(Step { phase: Some(phase), action });
        let gone = |action| Ok(Step { phase: None, action });
        match (self, event) {
            // Canceled: a task not yet running goes when its fetch ends; a running one is killed;
            // one that already exited reports as it ends.
            (P::Staging { dir, cores, .. }, E::Cancel) => held(P::StagingCanceled { dir, cores }, Action::Wait),
            (phase @ P::StagingCanceled { .. }, E::Cancel) => held(phase, Action::Wait),
            (P::Running { process, .. }, E::Cancel) | (P::Canceling { process }, E::Cancel) => {
                let pid = process.pid;
                held(P::Canceling { process }, Action::Kill(pid))
            }
            (phase @ (P::Sweeping { .. } | P::Uploading { .. }), E::Cancel) => held(phase, Action::Wait),

            (P::Staging { spec, dir, cores, started_at }, E::StagedIn(Ok(()))) => {
                gone(Action::Launch { spec, dir, cores, started_at })
            }
            (P::Staging { dir, started_at, .. }, E::StagedIn(Err(e))) => gone(Action::Release {
                dir: TaskDir::Own(dir),
                result: Some(not_run(task, started_at, now, "the task did not run".into(), Some(e))),
            }),
            (P::StagingCanceled { dir, .. }, E::StagedIn(_)) => {
                gone(Action::Release { dir: TaskDir::Own(dir), result: None })
            }

            (P::Running { process, outputs }, E::Exited(exit)) => {
                let pid = process.pid;
                held(P::Sweeping { process, ending: Ending::Reports { exit, outputs } }, Action::Sweep(pid))
            }
            (P::Canceling { process }, E::Exited(_)) => {
                let pid = process.pid;
                held(P::Sweeping { process, ending: Ending::Canceled }, Action::Sweep(pid))
            }

            (P::Sweeping { process, ending: Ending::Reports { exit, outputs } }, E::Swept) => {
                gone(Action::Finish { process, exit, outputs })
            }
            (P::Sweeping { process, ending: Ending::Canceled }, E::Swept) => {
                gone(Action::Release { dir: process.dir, result: None })
            }

            (P::Uploading { mut result }, E::StagedOut(outcome)) => {
                if let Err(e) = outcome {
                    result.staging_error = Some(e);
                }
                gone(Action::Report(result))
            }

            (
                phase @ (P::Running { .. } | P::Canceling { .. } | P::Sweeping { .. } | P::Uploading { .. }),
                event @ E::StagedIn(_),
            )
            | (
                phase @ (P::Staging { .. } | P::StagingCanceled { .. } | P::Sweeping { .. } | P::Uploading { .. }),
                event @ E::Exited(_),
            )
            | (
                phase @ (P::Staging { .. }
                | P::StagingCanceled { .. }
                | P::Running { .. }
                | P::Canceling { .. }
                | P::Uploading { .. }),
                event @ E::Swept,
            )
            | (
                phase @ (P::Staging { .. }
                | P::StagingCanceled { .. }
                | P::Running { .. }
                | P::Canceling { .. }
                | P::Sweeping { .. }),
                event @ E::StagedOut(_),
            ) => {
                let error = PhaseError::Illegal { task, phase: phase.name(), event: event.name() };
                Err(Box::new(Refused { phase, error }))
            }
        }
    }
}

/// The result of a task that did not run, or could not start.
pub(crate) fn not_run(
    task: TaskRef,
    started_at: u64,
    now: u64,
    message: String,
    staging_error: Option<String>,
) -> TaskResult {
    TaskResult {
        task,
        exit_code: None,
        message: Some(message),
        started_at,
        ended_at: now,
        stdout: String::new(),
        stderr: String::new(),
        staging_error,
    }
}

/// The result of a task whose process exited as `exit`, with the tails of its output.
pub(crate) fn exited(
    task: TaskRef,
    started_at: u64,
    exit: Option<Exit>,
    (stdout, stderr): (String, String),
    now: u64,
) -> TaskResult {
    let (exit_code, message) = match exit {
        Some(Exit::Code(code)) => (Some(code), None),
        Some(Exit::Signal(signal)) => (None, Some(format!("killed by signal {signal}"))),
        None => (None, Some("the agent lost track of the process".to_string())),
    };
    TaskResult { task, exit_code, message, started_at, ended_at: now, stdout, stderr, staging_error: None }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::task_spec::UploadOn;

    pub(crate) const TASK: TaskRef = TaskRef { job: 7, index: 3, attempt: 1 };
    pub(crate) const NOW: u64 = 5_000;

    pub(crate) type Phase = TaskPhase<()>;

    fn spec() -> TaskSpec {
        TaskSpec {
            task: TASK,
            command: vec!["sim".into()],
            env: vec![],
            cores: 2,
            inputs: vec![("az://c/in".into(), "in".into())],
            outputs: outputs(),
        }
    }

    fn outputs() -> Outputs {
        Outputs { files: vec![("*.out".into(), "az://c/out/".into())], upload_on: UploadOn::Success }
    }

    pub(crate) fn dir() -> PathBuf {
        PathBuf::from("/agent/tasks/7.3.1")
    }

    fn process() -> Process<()> {
        Process { pid: 4242, started_at: 1_000, dir: TaskDir::Own(dir()), cores: 2, output: () }
    }

    fn result() -> TaskResult {
        exited(TASK, 1_000, Some(Exit::Code(0)), ("out".into(), "err".into()), 4_000)
    }

    pub(crate) fn staging() -> Phase {
        TaskPhase::Staging { spec: spec(), dir: dir(), cores: 2, started_at: 1_000 }
    }
    pub(crate) fn staging_canceled() -> Phase {
        TaskPhase::StagingCanceled { dir: dir(), cores: 2 }
    }
    pub(crate) fn running() -> Phase {
        TaskPhase::Running { process: process(), outputs: outputs() }
    }
    pub(crate) fn canceling() -> Phase {
        TaskPhase::Canceling { process: process() }
    }
    pub(crate) fn sweeping(exit: Option<Exit>) -> Phase {
        TaskPhase::Sweeping { process: process(), ending: Ending::Reports { exit, outputs: outputs() } }
    }
    pub(crate) fn sweeping_canceled() -> Phase {
        TaskPhase::Sweeping { process: process(), ending: Ending::Canceled }
    }
    pub(crate) fn uploading() -> Phase {
        TaskPhase::Uploading { result: result() }
    }

    fn every_phase() -> Vec<Phase> {
        vec![
            staging(),
            staging_canceled(),
            running(),
            canceling(),
            sweeping(Some(Exit::Code(0))),
            sweeping_canceled(),
            uploading(),
        ]
    }

    fn every_event() -> Vec<PhaseEvent> {
        vec![
            PhaseEvent::Cancel,
            PhaseEvent::StagedIn(Ok(())),
            PhaseEvent::StagedIn(Err("no such blob".into())),
            PhaseEvent::Exited(Some(Exit::Code(0))),
            PhaseEvent::Exited(None),
            PhaseEvent::Swept,
            PhaseEvent::StagedOut(Ok(1)),
            PhaseEvent::StagedOut(Err("denied".into())),
        ]
    }

    fn step(phase: Phase, event: PhaseEvent) -> Step<()> {
        phase.on(TASK, event, NOW).unwrap_or_else(|refused| panic!("{}", refused.error))
    }

    fn held(phase: Phase, action: Action<()>) -> Step<()> {
        Step { phase: Some(phase), action }
    }

    fn gone(action: Action<()>) -> Step<()> {
        Step { phase: None, action }
    }

    #[test]
    fn a_task_staging_that_is_canceled_waits_for_its_fetch() {
        assert_eq!(step(staging(), PhaseEvent::Cancel), held(staging_canceled(), Action::Wait));
        assert_eq!(step(staging_canceled(), PhaseEvent::Cancel), held(staging_canceled(), Action::Wait));
    }

    #[test]
    fn a_running_task_that_is_canceled_is_killed_each_time() {
        assert_eq!(step(running(), PhaseEvent::Cancel), held(canceling(), Action::Kill(4242)));
        assert_eq!(step(canceling(), PhaseEvent::Cancel), held(canceling(), Action::Kill(4242)));
    }

    #[test]
    fn a_task_that_already_exited_is_not_canceled() {
        for phase in [sweeping(Some(Exit::Code(1))), sweeping_canceled(), uploading()] {
            let name = phase.name();
            let stepped = step(phase, PhaseEvent::Cancel);
            assert_eq!(stepped.action, Action::Wait, "{name}");
            assert_eq!(stepped.phase.as_ref().map(TaskPhase::name), Some(name));
        }
        assert_eq!(step(uploading(), PhaseEvent::Cancel), held(uploading(), Action::Wait));
    }

    #[test]
    fn a_task_whose_inputs_are_in_is_launched_in_its_directory() {
        let launch = Action::Launch { spec: spec(), dir: dir(), cores: 2, started_at: 1_000 };
        assert_eq!(step(staging(), PhaseEvent::StagedIn(Ok(()))), gone(launch));
    }

    #[test]
    fn a_task_whose_inputs_cannot_be_fetched_is_reported_as_not_run() {
        let stepped = step(staging(), PhaseEvent::StagedIn(Err("no such blob".into())));
        let result = TaskResult {
            task: TASK,
            exit_code: None,
            message: Some("the task did not run".into()),
            started_at: 1_000,
            ended_at: NOW,
            stdout: String::new(),
            stderr: String::new(),
            staging_error: Some("no such blob".into()),
        };
        assert_eq!(stepped, gone(Action::Release { dir: TaskDir::Own(dir()), result: Some(result) }));
    }

    #[test]
    fn a_task_canceled_while_staging_goes_without_a_result_when_its_fetch_ends() {
        for outcome in [Ok(()), Err("no such blob".to_string())] {
            let stepped = step(staging_canceled(), PhaseEvent::StagedIn(outcome));
            assert_eq!(stepped, gone(Action::Release { dir: TaskDir::Own(dir()), result: None }));
        }
    }

    #[test]
    fn a_task_that_exits_is_swept_before_it_ends() {
        for exit in [Some(Exit::Code(0)), Some(Exit::Signal(9)), None] {
            assert_eq!(step(running(), PhaseEvent::Exited(exit)), held(sweeping(exit), Action::Sweep(4242)));
        }
        let stepped = step(canceling(), PhaseEvent::Exited(Some(Exit::Signal(9))));
        assert_eq!(stepped, held(sweeping_canceled(), Action::Sweep(4242)));
    }

    #[test]
    fn a_swept_task_finishes_with_how_it_exited() {
        let exit = Some(Exit::Code(3));
        let finish = Action::Finish { process: process(), exit, outputs: outputs() };
        assert_eq!(step(sweeping(exit), PhaseEvent::Swept), gone(finish));
    }

    #[test]
    fn a_swept_canceled_task_releases_its_directory_without_a_result() {
        let release = Action::Release { dir: TaskDir::Own(dir()), result: None };
        assert_eq!(step(sweeping_canceled(), PhaseEvent::Swept), gone(release));
    }

    #[test]
    fn an_uploaded_task_reports_and_a_failed_upload_is_in_its_result() {
        assert_eq!(step(uploading(), PhaseEvent::StagedOut(Ok(2))), gone(Action::Report(result())));
        let failed = TaskResult { staging_error: Some("denied".into()), ..result() };
        assert_eq!(step(uploading(), PhaseEvent::StagedOut(Err("denied".into()))), gone(Action::Report(failed)));
    }

    /// Every `(phase, event)` pair a task may take; all others are refused.
    fn legal(phase: &Phase, event: &PhaseEvent) -> bool {
        use PhaseEvent as E;
        use TaskPhase as P;
        matches!(
            (phase, event),
            (_, E::Cancel)
                | (P::Staging { .. } | P::StagingCanceled { .. }, E::StagedIn(_))
                | (P::Running { .. } | P::Canceling { .. }, E::Exited(_))
                | (P::Sweeping { .. }, E::Swept)
                | (P::Uploading { .. }, E::StagedOut(_))
        )
    }

    #[test]
    fn every_other_event_is_refused_and_the_phase_given_back_unchanged() {
        let mut refused = 0;
        for phase in every_phase() {
            for event in every_event() {
                let name = phase.name();
                if legal(&phase, &event) {
                    assert!(phase_copy(&phase).on(TASK, event.clone(), NOW).is_ok(), "{name} {event:?}");
                    continue;
                }
                let Refused { phase: back, error } = *phase_copy(&phase).on(TASK, event.clone(), NOW).unwrap_err();
                assert_eq!(back, phase);
                assert_eq!(error, PhaseError::Illegal { task: TASK, phase: name, event: event.name() });
                assert!(error.to_string().starts_with("task 7.3#1 is "), "{error}");
                refused += 1;
            }
        }
        // 7 phases × 8 events, less the legal ones: 7 cancels, 2×2 fetches, 2×2 exits, 2
        // sweeps, 2 uploads.
        assert_eq!(refused, 7 * 8 - (7 + 4 + 4 + 2 + 2));
    }

    /// A phase built again from its name (phases hold no `Clone`: files are not cloned).
    fn phase_copy(phase: &Phase) -> Phase {
        match phase {
            TaskPhase::Staging { .. } => staging(),
            TaskPhase::StagingCanceled { .. } => staging_canceled(),
            TaskPhase::Running { .. } => running(),
            TaskPhase::Canceling { .. } => canceling(),
            TaskPhase::Sweeping { ending: Ending::Reports { exit, .. }, .. } => sweeping(*exit),
            TaskPhase::Sweeping { ending: Ending::Canceled, .. } => sweeping_canceled(),
            TaskPhase::Uploading { .. } => uploading(),
        }
    }

    #[test]
    fn results_say_how_a_task_exited() {
        let tails = || ("o".to_string(), "e".to_string());
        let code = exited(TASK, 1, Some(Exit::Code(2)), tails(), 9);
        assert_eq!((code.exit_code, code.message, code.ended_at), (Some(2), None, 9));
        assert_eq!((code.stdout.as_str(), code.stderr.as_str()), ("o", "e"));
        let signal = exited(TASK, 1, Some(Exit::Signal(9)), tails(), 9);
        assert_eq!((signal.exit_code, signal.message.as_deref()), (None, Some("killed by signal 9")));
        let lost = exited(TASK, 1, None, tails(), 9);
        assert_eq!(lost.message.as_deref(), Some("the agent lost track of the process"));
    }
}
