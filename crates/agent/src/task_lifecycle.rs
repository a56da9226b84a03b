//! What the agent does for its tasks: it starts queued tasks as cores free up, fetches their
//! inputs, launches their processes, kills what they leave behind, uploads their outputs and
//! reports their results. Which of these comes next is decided by the task's phase
//! ([`crate::task_phase`]); this is where the decisions meet files, processes and the network.

use crate::event_loop::{Agent, Event};
use crate::now_millis;
use crate::reaper::{Exit, Spare};
use crate::task_dir::{OutputFiles, Staged, TaskDir, fresh_dir, output_file, reused_output_file};
use crate::task_phase::{self, Action, PhaseEvent, Process, TaskPhase, not_run};
use crate::task_spec::{Outputs, TaskSpec};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;
use thunderhead_proto::TaskRef;

/// How long the agent keeps killing what an ended task left behind before it gives up (a
/// process stuck in the kernel, on a dead file server say, ends only when its call returns).
const STRAYS_END_WITHIN: Duration = Duration::from_secs(10);

impl Agent {
    /// The cores no task holds.
    fn free_cores(&self) -> u32 {
        self.config.cores.saturating_sub(self.tasks.cores())
    }

    /// Starts queued tasks, in order, while they fit in the free cores.
    pub(crate) fn start_queued(&mut self) {
        while let Some(next) = self.queue.front() {
            // A task larger than the node runs alone rather than never.
            let fits = next.cores <= self.free_cores()
                || (self.tasks.running_pids().next().is_none() && next.cores > self.config.cores);
            if !fits {
                break;
            }
            let spec = self.queue.pop_front().expect("front exists");
            self.start(spec);
        }
    }

    /// Gives a task its cores and a directory; it is launched at once, or once its inputs are in.
    fn start(&mut self, spec: TaskSpec) {
        if self.tasks.holds(spec.task) {
            tracing::warn!(task = %spec.task, "dropped an assignment of a task this agent already holds");
            return;
        }
        let started_at = now_millis();
        let cores = spec.cores.min(self.free_cores());
        let tasks_dir = self.task_root.join("tasks");
        if spec.inputs.is_empty() && spec.outputs.files.is_empty() {
            let slot = self.slots.take(&tasks_dir);
            self.launch(spec, TaskDir::Slot(slot), Staged::No, cores, started_at);
            return;
        }
        let TaskRef { job, index, attempt } = spec.task;
        let dir = tasks_dir.join(format!("{job}.{index}.{attempt}"));
        if spec.inputs.is_empty() {
            self.launch(spec, TaskDir::Own(dir), Staged::No, cores, started_at);
            return;
        }
        // Inputs first, off the event loop; the task starts when they are in.
        let (base, inputs, events, task) = (self.head.clone(), spec.inputs.clone(), self.events.clone(), spec.task);
        let fetch_dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = fresh_dir(&fetch_dir)
                .map_err(|e| format!("cannot create {}: {e}", fetch_dir.display()))
                .and_then(|()| crate::staging::fetch_inputs(&base, &fetch_dir, &inputs));
            let _ = events.send(Event::StagedIn { task, outcome });
        });
        self.admit(task, TaskPhase::Staging { spec, dir, cores, started_at });
    }

    /// Starts a task's process in `dir`; it is held as running until it exits.
    fn launch(&mut self, spec: TaskSpec, dir: TaskDir, staged: Staged, cores: u32, started_at: u64) {
        let path = dir.path();
        // Tasks of the agent's own user reuse a slot as it is (they could reach it anyway), which
        // costs a fraction of making it anew; another user's tasks get a directory made afresh.
        let reuse = self.task_user.is_none() && matches!(dir, TaskDir::Slot(_));
        let made = match staged {
            Staged::Yes => Ok(()),
            Staged::No if reuse => std::fs::create_dir_all(path),
            Staged::No => fresh_dir(path),
        };
        let spawned = made.and_then(|()| {
            let open = if reuse { reused_output_file } else { output_file };
            let (stdout, stderr) = (open(path, "stdout")?, open(path, "stderr")?);
            let output = OutputFiles { stdout: stdout.try_clone()?, stderr: stderr.try_clone()? };
            // The directory is the task user's from here on; what the agent put in it stays
            // the agent's.
            if let Some(user) = &self.task_user {
                user.give(path)?;
            }
            let packages = crate::install::package_root(&self.task_root);
            let env = crate::task_env::task_env(&spec.env, &packages, path, |name| self.passed_on.get(name).cloned());
            let program = crate::task_env::find_program(spec.program(), &env, path);
            let mut command = std::process::Command::new(program);
            command
                .arg0(spec.program())
                .args(&spec.command[1..])
                .env_clear()
                .envs(env)
                .current_dir(path)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .process_group(0);
            if let Some(user) = &self.task_user {
                // Started by root, the process also loses root's supplementary groups.
                command.uid(user.uid).gid(user.gid);
            }
            self.reaper.spawn(|| command.spawn()).map(|(pid, exited)| (pid, exited, output))
        });
        match spawned {
            Ok((pid, exited, output)) => {
                let task = spec.task;
                let process = Process { pid, started_at, dir, cores, output };
                self.admit(task, TaskPhase::Running { process, outputs: spec.outputs });
                let events = self.events.clone();
                tokio::spawn(async move {
                    let exit = exited.await.ok();
                    let _ = events.send(Event::Exited { task, exit });
                });
            }
            Err(e) => {
                self.release(dir);
                let message = format!("cannot start \"{}\": {e}", spec.program());
                self.ended.push(not_run(spec.task, started_at, now_millis(), message, None));
            }
        }
    }

    /// Moves a held task on `event` and does what its new phase asks; an event its phase does
    /// not allow is logged and dropped.
    pub(crate) fn step(&mut self, task: TaskRef, event: PhaseEvent) {
        match self.tasks.apply(task, event, now_millis()) {
            Ok(action) => self.act(task, action),
            Err(e) => tracing::warn!(error = %e, "dropped an event the task's phase does not allow"),
        }
    }

    fn act(&mut self, task: TaskRef, action: Action) {
        match action {
            Action::Wait => {}
            Action::Kill(pid) => {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Action::Sweep(pid) => self.sweep(task, pid),
            Action::Launch { spec, dir, cores, started_at } => {
                self.launch(spec, TaskDir::Own(dir), Staged::Yes, cores, started_at)
            }
            Action::Finish { process, exit, outputs } => self.finish(task, process, exit, outputs),
            Action::Release { dir, result } => {
                self.release(dir);
                self.ended.extend(result);
            }
            Action::Report(result) => self.ended.push(result),
        }
    }

    /// Holds a task in a phase it enters from outside; one already held is not held twice.
    fn admit(&mut self, task: TaskRef, phase: TaskPhase) {
        if let Err(e) = self.tasks.admit(task, phase) {
            tracing::warn!(error = %e, "dropped a task the agent cannot hold");
        }
    }

    /// A task's process exited: whatever it left running ends with it, its process group and
    /// processes that left the group (see [`crate::stray`]). Its result waits until they are
    /// gone, so none can touch its outputs while they go up, or the next task in its slot.
    fn sweep(&mut self, task: TaskRef, pid: i32) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        if self.reaper.no_strays(Spare::RunningTasks) {
            self.step(task, PhaseEvent::Swept);
            return;
        }
        let (reaper, events) = (self.reaper.clone(), self.events.clone());
        tokio::task::spawn_blocking(move || {
            if !reaper.end_strays(Spare::RunningTasks, STRAYS_END_WITHIN) {
                tracing::warn!(%task, "processes the task left behind have not ended after a kill");
            }
            let _ = events.send(Event::Swept(task));
        });
    }

    /// A task ended and left no process behind (its cores are free): its result goes, after
    /// its outputs if they are wanted.
    fn finish(&mut self, task: TaskRef, process: Process, exit: Option<Exit>, outputs: Outputs) {
        let result = task_phase::exited(task, process.started_at, exit, process.output.tails(), now_millis());
        if !outputs.wanted(result.exit_code) {
            self.ended.push(result);
            self.release(process.dir);
            return;
        }
        // The directory is the agent's again while its outputs go up: the next task to run as
        // the task user (on the cores this one frees) cannot change them.
        if let Some(user) = &self.task_user
            && let Err(e) = user.take_back(process.dir.path())
        {
            tracing::warn!(%task, error = %e, "cannot take a task's directory back before uploading its outputs");
        }
        // Outputs go up off the event loop; the result follows them.
        let dir = process.dir.path().to_path_buf();
        self.admit(task, TaskPhase::Uploading { result });
        let (base, events) = (self.head.clone(), self.events.clone());
        tokio::task::spawn_blocking(move || {
            let outcome = crate::staging::upload_outputs(&base, &dir, &outputs.files);
            let _ = std::fs::remove_dir_all(&dir);
            let _ = events.send(Event::StagedOut { task, outcome });
        });
    }

    /// A task is done with its directory (see [`crate::task_dir::Slots::release`]).
    fn release(&mut self, dir: TaskDir) {
        let reused = self.task_user.is_none();
        self.slots.release(dir, reused);
    }

    /// Kills every process of every task, those that left their task's process group too.
    pub(crate) fn kill_all(&mut self) {
        for pid in self.tasks.running_pids() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if !self.reaper.end_strays(Spare::Nothing, STRAYS_END_WITHIN) {
            tracing::warn!("processes of tasks have not ended after a kill");
        }
    }
}
