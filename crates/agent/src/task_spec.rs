//! A task as the agent keeps it once assigned: the wire's [`Assignment`] read once, at the
//! boundary, into types ([`UploadOn`] rather than a string). The protocol is unchanged: the
//! head node still sends `upload_on` as text.

use thunderhead_proto::{Assignment, TaskRef};

/// When a task's outputs are uploaded: the wire's `upload_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadOn {
    /// When it exits with code 0 (the default).
    Success,
    /// When it does not exit with code 0 (a signal, or no exit the agent saw, included).
    Failure,
    Always,
}

impl UploadOn {
    /// Reads the wire's `upload_on`: `success` (or nothing, the default), `failure` or `always`.
    pub(crate) fn parse(wire: &str) -> Result<UploadOn, String> {
        match wire {
            "" | "success" => Ok(UploadOn::Success),
            "failure" => Ok(UploadOn::Failure),
            "always" => Ok(UploadOn::Always),
            other => Err(format!(
                "upload_on \"{other}\" is not one of success, failure or always (the head node may be newer than this agent: upgrade the agent)"
            )),
        }
    }

    /// Whether outputs go up after the task ended with `exit_code` (`None`: killed by a signal,
    /// or the agent lost track of it).
    pub(crate) fn wants(self, exit_code: Option<i32>) -> bool {
        match self {
            UploadOn::Success => exit_code == Some(0),
            UploadOn::Failure => exit_code != Some(0),
            UploadOn::Always => true,
        }
    }
}

/// What a task uploads when it ends, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outputs {
    /// `(glob, prefix)`: matching files go to `PREFIX+PATH`.
    pub(crate) files: Vec<(String, String)>,
    pub(crate) upload_on: UploadOn,
}

impl Outputs {
    /// Whether anything goes up after the task ended with `exit_code`.
    pub(crate) fn wanted(&self, exit_code: Option<i32>) -> bool {
        !self.files.is_empty() && self.upload_on.wants(exit_code)
    }
}

/// An assigned task: what to run, on how many cores, with which files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskSpec {
    pub(crate) task: TaskRef,
    /// Program and arguments, never empty.
    pub(crate) command: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cores: u32,
    /// `(source, local path)`: fetched before the task starts.
    pub(crate) inputs: Vec<(String, String)>,
    pub(crate) outputs: Outputs,
}

impl TaskSpec {
    /// Reads an assignment from the head node, or says why it cannot run.
    pub(crate) fn from_wire(a: Assignment) -> Result<TaskSpec, String> {
        if a.command.is_empty() {
            return Err("the assignment has no command to run".to_string());
        }
        let upload_on = UploadOn::parse(&a.upload_on)?;
        Ok(TaskSpec {
            task: a.task,
            command: a.command,
            env: a.env,
            cores: a.cores,
            inputs: a.inputs,
            outputs: Outputs { files: a.outputs, upload_on },
        })
    }

    /// The program, as the head node named it.
    pub(crate) fn program(&self) -> &str {
        &self.command[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(upload_on: &str) -> Assignment {
        Assignment {
            task: TaskRef { job: 4, index: 2, attempt: 1 },
            command: vec!["true".into(), "-x".into()],
            env: vec![("A".into(), "1".into())],
            cores: 3,
            inputs: vec![("s3://b/in".into(), "in".into())],
            outputs: vec![("*.out".into(), "s3://b/out/".into())],
            upload_on: upload_on.into(),
        }
    }

    #[test]
    fn upload_on_reads_the_three_wire_words_and_nothing_as_success() {
        assert_eq!(UploadOn::parse("success"), Ok(UploadOn::Success));
        assert_eq!(UploadOn::parse(""), Ok(UploadOn::Success));
        assert_eq!(UploadOn::parse("failure"), Ok(UploadOn::Failure));
        assert_eq!(UploadOn::parse("always"), Ok(UploadOn::Always));
    }

    #[test]
    fn an_unknown_upload_on_is_an_error_naming_the_value_and_the_choices() {
        let e = UploadOn::parse("sometimes").unwrap_err();
        assert!(e.contains("\"sometimes\"") && e.contains("success, failure or always"), "{e}");
        assert!(UploadOn::parse("Success").is_err());
    }

    #[test]
    fn upload_on_decides_by_exit_code() {
        for (upload_on, ok, failed, killed) in [
            (UploadOn::Success, true, false, false),
            (UploadOn::Failure, false, true, true),
            (UploadOn::Always, true, true, true),
        ] {
            assert_eq!(upload_on.wants(Some(0)), ok, "{upload_on:?}");
            assert_eq!(upload_on.wants(Some(3)), failed, "{upload_on:?}");
            assert_eq!(upload_on.wants(None), killed, "{upload_on:?}");
        }
    }

    #[test]
    fn no_output_files_means_nothing_goes_up() {
        let outputs = Outputs { files: vec![], upload_on: UploadOn::Always };
        assert!(!outputs.wanted(Some(0)));
    }

    #[test]
    fn an_assignment_becomes_a_spec_with_its_fields() {
        let spec = TaskSpec::from_wire(assignment("failure")).unwrap();
        assert_eq!(spec.task, TaskRef { job: 4, index: 2, attempt: 1 });
        assert_eq!(spec.program(), "true");
        assert_eq!(spec.command, ["true", "-x"]);
        assert_eq!(spec.cores, 3);
        assert_eq!(spec.inputs, [("s3://b/in".to_string(), "in".to_string())]);
        assert_eq!(spec.outputs.upload_on, UploadOn::Failure);
        assert_eq!(spec.outputs.files, [("*.out".to_string(), "s3://b/out/".to_string())]);
    }

    #[test]
    fn an_assignment_without_a_command_or_with_an_unknown_upload_on_is_refused() {
        let mut empty = assignment("success");
        empty.command.clear();
        assert!(TaskSpec::from_wire(empty).unwrap_err().contains("no command"));
        assert!(TaskSpec::from_wire(assignment("never")).unwrap_err().contains("\"never\""));
    }
}
