//! Reaps every child of the agent and hands exit statuses to whoever waits for that process,
//! and kills the strays of ended tasks ([`crate::stray`]).
//!
//! The agent is a child subreaper, so orphaned grandchildren of tasks are re-parented to it;
//! one thread reaps them all. Children are reaped only while the reaper's lock is held (the
//! thread waits for an ended child with `WNOWAIT`, then takes the lock and reaps), and a task
//! is spawned and killed only while it is held too. So a process's exit cannot be reaped
//! before its waiter is registered, and a pid read as a child of the agent under the lock
//! stays that process (alive or a zombie) until the lock is released: a kill never reaches a
//! process that took a reaped child's pid.

use crate::stray;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Which children a kill of strays leaves alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spare {
    /// The leaders of running tasks and their process groups: a task ended, others run on.
    RunningTasks,
    /// None: the agent is stopping, and no process of its tasks may outlive it.
    Nothing,
}

#[derive(Default)]
struct State {
    /// The leaders of running tasks, by pid, until they are reaped.
    waiters: HashMap<i32, oneshot::Sender<Exit>>,
    /// How many processes were spawned: the reaper thread, finding no child, waits for this to
    /// change.
    spawned: u64,
    /// The threads that spawned tasks: their children are the tasks (see
    /// [`stray::agent_children`]).
    spawners: HashSet<i32>,
}

#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<(Mutex<State>, Condvar)>,
}

impl Reaper {
    /// Makes this process a child subreaper and starts the reaping thread.
    pub fn start() -> Reaper {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(error = %e, "cannot become a child subreaper; orphaned task processes will not be reaped");
        }
        let reaper = Reaper::default();
        let inner = reaper.inner.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || reap_forever(&inner))
            .expect("spawn the reaper thread");
        reaper
    }

    /// Spawns a process with `spawn` while holding the lock, and returns its pid and a receiver
    /// of its exit.
    pub fn spawn<E>(
        &self,
        spawn: impl FnOnce() -> Result<std::process::Child, E>,
    ) -> Result<(i32, oneshot::Receiver<Exit>), E> {
        let (lock, wake) = &*self.inner;
        let mut state = lock.lock().expect("reaper lock");
        let child = spawn()?;
        let pid = child.id() as i32;
        // The reaper thread reaps it; dropping `Child` does not wait or kill.
        drop(child);
        let (tx, rx) = oneshot::channel();
        state.waiters.insert(pid, tx);
        state.spawned += 1;
        state.spawners.insert(nix::unistd::gettid().as_raw());
        wake.notify_one();
        Ok((pid, rx))
    }

    /// Looks at the agent's children once and kills the strays among them, sparing `spare`.
    fn kill_strays(&self, spare: Spare) -> stray::Round {
        let (lock, _) = &*self.inner;
        let state = lock.lock().expect("reaper lock");
        let leaders: HashSet<i32> = match spare {
            Spare::RunningTasks => state.waiters.keys().copied().collect(),
            Spare::Nothing => HashSet::new(),
        };
        let me = std::process::id() as i32;
        let round = stray::survey(me, &stray::agent_children(&state.spawners, &leaders), &leaders);
        for &pid in &round.strays {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        round
    }

    /// Whether the agent has no strays, after at most two rounds that do not wait; the strays
    /// they find are killed. Usually one round settles it: when no task left anything behind.
    pub fn no_strays(&self, spare: Spare) -> bool {
        let first = self.kill_strays(spare);
        stray::settled(None, &first) || stray::settled(Some(&first), &self.kill_strays(spare))
    }

    /// Kills strays, round after round, until a round is [`stray::settled`] or `limit` has
    /// passed; returns whether none is left. Blocks.
    pub fn end_strays(&self, spare: Spare, limit: Duration) -> bool {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut previous = None;
        loop {
            let round = self.kill_strays(spare);
            if stray::settled(previous.as_ref(), &round) {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            // Give the killed a moment to exit and hand their children over.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
            previous = Some(round);
        }
    }
}

fn reap_forever(inner: &(Mutex<State>, Condvar)) {
    let (lock, wake) = inner;
    loop {
        let spawned = lock.lock().expect("reaper lock").spawned;
        // Wait for a child to end without reaping it: reaping happens under the lock only.
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => {}
            Err(Errno::ECHILD) => {
                // No child at all: wait for a task to be spawned, unless one just was.
                let state = lock.lock().expect("reaper lock");
                if state.spawned == spawned {
                    let _ = wake.wait_timeout(state, Duration::from_millis(500)).expect("reaper lock");
                }
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "waitid failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let mut state = lock.lock().expect("reaper lock");
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, Exit::Signal(signal as i32)),
                Err(Errno::EINTR) => continue,
                // No other child has ended (or none is left).
                Ok(_) | Err(_) => break,
            };
            // Orphans re-parented to the agent are reaped here too, and have no waiter.
            if let Some(tx) = state.waiters.remove(&pid.as_raw()) {
                let _ = tx.send(exit);
            }
        }
    }
}
