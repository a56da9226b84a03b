//! Reaps every child of the agent and hands exit statuses to whoever waits for that process.
//!
//! The agent is a child subreaper, so orphaned grandchildren of tasks are re-parented to it;
//! one thread calls `waitpid(-1)` for all of them. A process is spawned while the reaper's lock
//! is held, so its exit cannot be reaped before its waiter is registered.

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

#[derive(Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<Exit>>,
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
        wake.notify_one();
        Ok((pid, rx))
    }
}

fn reap_forever(inner: &(Mutex<State>, Condvar)) {
    let (lock, wake) = inner;
    loop {
        {
            let mut state = lock.lock().expect("reaper lock");
            while state.waiters.is_empty() {
                // Orphans re-parented to us are reaped here too, a little later.
                let (s, _) = wake.wait_timeout(state, std::time::Duration::from_millis(500)).expect("reaper lock");
                state = s;
                if state.waiters.is_empty() {
                    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
                        waitpid(Pid::from_raw(-1), Some(nix::sys::wait::WaitPidFlag::WNOHANG))
                    {}
                }
            }
        }
        let (pid, exit) = match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, Exit::Signal(signal as i32)),
            Ok(_) => continue,
            Err(Errno::ECHILD) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "waitpid failed");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        let mut state = lock.lock().expect("reaper lock");
        if let Some(tx) = state.waiters.remove(&pid.as_raw()) {
            let _ = tx.send(exit);
        }
    }
}
