//! The tasks the agent holds, each in its [`TaskPhase`], in one map keyed by task, and the cores
//! they hold between them. Tasks enter the map by [`HeldTasks::admit`] and move only by
//! [`HeldTasks::apply`], which goes through [`TaskPhase::on`].

use crate::task_dir::OutputFiles;
use crate::task_phase::{Action, PhaseError, PhaseEvent, Step, TaskPhase};
use std::collections::HashMap;
use thunderhead_proto::TaskRef;

/// The tasks the agent holds, each in its phase, and the cores they hold between them.
pub(crate) struct HeldTasks<O = OutputFiles> {
    phases: HashMap<TaskRef, TaskPhase<O>>,
    /// The sum of the cores of `phases`.
    cores: u32,
}

impl<O> Default for HeldTasks<O> {
    fn default() -> Self {
        HeldTasks { phases: HashMap::new(), cores: 0 }
    }
}

impl<O> HeldTasks<O> {
    /// Holds `task` in `phase`, one a task enters from outside the machine: staging (given
    /// cores, its inputs to fetch), running (launched) or uploading (finished).
    pub(crate) fn admit(&mut self, task: TaskRef, phase: TaskPhase<O>) -> Result<(), PhaseError> {
        if let Some(held) = self.phases.get(&task) {
            return Err(PhaseError::AlreadyHeld { task, phase: held.name() });
        }
        match phase {
            TaskPhase::Staging { .. } | TaskPhase::Running { .. } | TaskPhase::Uploading { .. } => {}
            TaskPhase::StagingCanceled { .. } | TaskPhase::Canceling { .. } | TaskPhase::Sweeping { .. } => {
                return Err(PhaseError::NotAnEntry { task, phase: phase.name() });
            }
        }
        self.cores += phase.cores();
        self.phases.insert(task, phase);
        Ok(())
    }

    /// Moves `task` on `event` (see [`TaskPhase::on`]); an event its phase does not allow, or
    /// one for a task not held, changes nothing.
    pub(crate) fn apply(&mut self, task: TaskRef, event: PhaseEvent, now: u64) -> Result<Action<O>, PhaseError> {
        let Some(phase) = self.phases.remove(&task) else {
            return Err(PhaseError::NotHeld { task, event: event.name() });
        };
        self.cores -= phase.cores();
        let (phase, outcome) = match phase.on(task, event, now) {
            Ok(Step { phase, action }) => (phase, Ok(action)),
            Err(refused) => (Some(refused.phase), Err(refused.error)),
        };
        if let Some(phase) = phase {
            self.cores += phase.cores();
            self.phases.insert(task, phase);
        }
        outcome
    }

    /// Whether `task` is running (neither being canceled by the agent nor past its run).
    pub(crate) fn is_running(&self, task: TaskRef) -> bool {
        matches!(self.phases.get(&task), Some(TaskPhase::Running { .. }))
    }

    pub(crate) fn holds(&self, task: TaskRef) -> bool {
        self.phases.contains_key(&task)
    }

    /// Every task held.
    pub(crate) fn tasks(&self) -> impl Iterator<Item = TaskRef> + '_ {
        self.phases.keys().copied()
    }

    /// The cores held by all tasks.
    pub(crate) fn cores(&self) -> u32 {
        self.cores
    }

    /// The process groups of the tasks whose process runs.
    pub(crate) fn running_pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.phases.values().filter_map(TaskPhase::running_pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_dir::TaskDir;
    use crate::task_phase::tests::*;

    #[test]
    fn the_map_counts_the_cores_its_tasks_hold() {
        let mut tasks = HeldTasks::<()>::default();
        tasks.admit(TASK, staging()).unwrap();
        assert_eq!(tasks.cores(), 2);
        assert_eq!(tasks.running_pids().count(), 0);
        // Canceled while staging: still holds its cores until the fetch ends.
        assert_eq!(tasks.apply(TASK, PhaseEvent::Cancel, NOW), Ok(Action::Wait));
        assert_eq!(tasks.cores(), 2);
        let released = tasks.apply(TASK, PhaseEvent::StagedIn(Ok(())), NOW).unwrap();
        assert_eq!(released, Action::Release { dir: TaskDir::Own(dir()), result: None });
        assert!(!tasks.holds(TASK));
        assert_eq!(tasks.cores(), 0);

        tasks.admit(TASK, running()).unwrap();
        assert_eq!((tasks.cores(), tasks.running_pids().collect::<Vec<_>>()), (2, vec![4242]));
        assert_eq!(tasks.apply(TASK, PhaseEvent::Exited(None), NOW), Ok(Action::Sweep(4242)));
        assert_eq!((tasks.cores(), tasks.running_pids().count()), (2, 0));
        assert!(matches!(tasks.apply(TASK, PhaseEvent::Swept, NOW), Ok(Action::Finish { .. })));
        assert_eq!(tasks.cores(), 0);

        // Uploading holds no cores: the next task may use them while outputs go up.
        tasks.admit(TASK, uploading()).unwrap();
        assert_eq!((tasks.cores(), tasks.tasks().collect::<Vec<_>>()), (0, vec![TASK]));
    }

    #[test]
    fn the_map_refuses_an_illegal_event_and_keeps_the_task_as_it_was() {
        let mut tasks = HeldTasks::<()>::default();
        tasks.admit(TASK, running()).unwrap();
        let error = tasks.apply(TASK, PhaseEvent::StagedOut(Ok(1)), NOW).unwrap_err();
        assert_eq!(error, PhaseError::Illegal { task: TASK, phase: "running", event: "outputs uploaded" });
        assert_eq!((tasks.cores(), tasks.running_pids().collect::<Vec<_>>()), (2, vec![4242]));
    }

    #[test]
    fn the_map_refuses_events_for_tasks_it_does_not_hold() {
        let mut tasks = HeldTasks::<()>::default();
        let error = tasks.apply(TASK, PhaseEvent::Swept, NOW).unwrap_err();
        assert_eq!(error, PhaseError::NotHeld { task: TASK, event: "leftover processes gone" });
    }

    #[test]
    fn the_map_admits_a_task_once_and_only_into_an_entry_phase() {
        let mut tasks = HeldTasks::<()>::default();
        for phase in [staging_canceled(), canceling(), sweeping(None), sweeping_canceled()] {
            let name = phase.name();
            assert_eq!(tasks.admit(TASK, phase), Err(PhaseError::NotAnEntry { task: TASK, phase: name }));
        }
        assert_eq!(tasks.cores(), 0);
        tasks.admit(TASK, staging()).unwrap();
        assert_eq!(tasks.admit(TASK, running()), Err(PhaseError::AlreadyHeld { task: TASK, phase: "staging" }));
        assert_eq!(tasks.cores(), 2);
    }
}
