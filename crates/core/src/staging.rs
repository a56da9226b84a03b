//! Task files staged through blob storage: inputs fetched into a task's working directory
//! before it runs, outputs uploaded after it ends.
//!
//! A *location* is a blob URI (`file:///…`, `az://ACCOUNT/CONTAINER/…`, `s3://BUCKET/…`) or a
//! key in the head node's own store written `thunderhead:KEY`. Every `*` run in a source, a
//! local path or an output prefix is the sweep index, as on the command line.

use crate::sweep::substitute;
use crate::{Error, JobId, Result};
use serde::{Deserialize, Serialize};

pub use crate::access::LOCAL_STORE;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Where the file comes from.
    pub source: String,
    /// Its path in the task's working directory.
    pub local: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Files of the working directory to upload, by their relative path (`*.csv`, `out/**`).
    pub glob: String,
    /// Where they go, their relative paths appended; `None` for the job's area.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UploadOn {
    /// When the task exits with code 0 (the default, as in the batch services of the big clouds).
    #[default]
    Success,
    Failure,
    Always,
}

impl UploadOn {
    pub fn parse(text: &str) -> Result<UploadOn> {
        match text {
            "success" => Ok(UploadOn::Success),
            "failure" => Ok(UploadOn::Failure),
            "always" => Ok(UploadOn::Always),
            _ => Err(Error::invalid(format!(
                "upload condition \"{text}\" is not known (choose success, failure or always)"
            ))),
        }
    }

    pub fn applies(self, exit_code: Option<i32>) -> bool {
        match self {
            UploadOn::Success => exit_code == Some(0),
            UploadOn::Failure => exit_code != Some(0),
            UploadOn::Always => true,
        }
    }
}

/// A job's staging, as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Staging {
    #[serde(default)]
    pub inputs: Vec<Input>,
    #[serde(default)]
    pub outputs: Vec<Output>,
    #[serde(default)]
    pub upload_on: UploadOn,
}

impl Staging {
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty() && self.outputs.is_empty()
    }

    /// The staging of task `index` of job `job`: `*` substituted, default prefixes filled in.
    pub fn for_task(&self, job: JobId, index: u64) -> Staging {
        Staging {
            inputs: self
                .inputs
                .iter()
                .map(|i| Input { source: substitute(&i.source, index), local: substitute(&i.local, index) })
                .collect(),
            outputs: self
                .outputs
                .iter()
                .map(|o| Output {
                    glob: substitute(&o.glob, index),
                    prefix: Some(match &o.prefix {
                        Some(p) => substitute(p, index),
                        None => format!("{LOCAL_STORE}{}/{index}/", crate::access::job_area(job)),
                    }),
                })
                .collect(),
            upload_on: self.upload_on,
        }
    }
}

fn is_location(text: &str) -> bool {
    text.starts_with(LOCAL_STORE) || ["file://", "az://", "s3://"].iter().any(|s| text.starts_with(s))
}

/// Splits `A[:B]` at its last `:` that is not part of a location: not a URI's `scheme://`, not
/// a port number, not the `thunderhead:` prefix.
pub fn split_pair(text: &str) -> (&str, Option<&str>) {
    let valid = |i: usize| {
        let (left, right) = (&text[..i], &text[i + 1..]);
        let port = right.chars().take_while(|c| *c != '/').all(|c| c.is_ascii_digit());
        !right.is_empty() && !right.starts_with("//") && !port && !left.ends_with("thunderhead")
    };
    match text.match_indices(':').map(|(i, _)| i).rfind(|i| valid(*i)) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    }
}

/// A relative path that stays inside the task's working directory.
fn check_relative(what: &str, path: &str, given: &str) -> Result<()> {
    let bad = path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..");
    if bad {
        return Err(Error::invalid(format!(
            "{what} \"{given}\" must be a relative path inside the task's working directory (no leading / and no ..)"
        )));
    }
    Ok(())
}

/// The longest staging entry, in bytes.
pub const MAX_ENTRY_BYTES: usize = 4096;

/// Checks one staging entry's size, characters and `*` runs.
fn check_entry(what: &str, text: &str) -> Result<()> {
    if text.len() > MAX_ENTRY_BYTES {
        return Err(Error::invalid(format!(
            "{what} of {} bytes is longer than the limit of {MAX_ENTRY_BYTES} (shorten the location)",
            text.len()
        )));
    }
    crate::text::check_line(what, text, MAX_ENTRY_BYTES)?;
    let run = crate::sweep::longest_star_run(text);
    if run > crate::sweep::MAX_STAR_RUN {
        return Err(Error::invalid(format!(
            "{what} \"{}\" has a run of {run} '*' characters, more than the limit of {} (a run of k '*' is the \
             index padded to k digits)",
            crate::text::escape(&text.chars().take(60).collect::<String>()),
            crate::sweep::MAX_STAR_RUN
        )));
    }
    Ok(())
}

/// Parses `--input SOURCE[:LOCAL]` once the client has turned local paths into locations.
pub fn parse_input(text: &str) -> Result<Input> {
    check_entry("input", text)?;
    let (source, local) = split_pair(text);
    if !is_location(source) {
        return Err(Error::invalid(format!(
            "input \"{text}\" has no blob location (write SOURCE[:LOCAL_PATH] with SOURCE a blob URI such as s3://bucket/in*.txt, or a local file)"
        )));
    }
    let local = match local {
        Some(l) => l.to_string(),
        None => source.split('?').next().unwrap_or(source).rsplit('/').next().unwrap_or("").to_string(),
    };
    check_relative("input", &local, text)?;
    Ok(Input { source: source.to_string(), local })
}

/// Parses `--output GLOB[:PREFIX]`.
pub fn parse_output(text: &str) -> Result<Output> {
    check_entry("output", text)?;
    let (glob, prefix) = split_pair(text);
    check_relative("output", glob, text)?;
    if let Some(p) = prefix
        && !is_location(p)
    {
        return Err(Error::invalid(format!(
            "output \"{text}\" has a prefix \"{p}\" that is not a blob location (write e.g. s3://bucket/results/* or thunderhead:results/)"
        )));
    }
    Ok(Output { glob: glob.to_string(), prefix: prefix.map(String::from) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_right_colon() {
        assert_eq!(split_pair("s3://b/n*.txt:in.txt"), ("s3://b/n*.txt", Some("in.txt")));
        assert_eq!(
            split_pair("s3://b/k?endpoint=http://127.0.0.1:9000"),
            ("s3://b/k?endpoint=http://127.0.0.1:9000", None)
        );
        assert_eq!(split_pair("s3://b/k?endpoint=http://127.0.0.1:9000:sub/in.txt").1, Some("sub/in.txt"));
        assert_eq!(split_pair("thunderhead:uploads/x"), ("thunderhead:uploads/x", None));
        assert_eq!(split_pair("*.csv:thunderhead:results/"), ("*.csv", Some("thunderhead:results/")));
    }

    #[test]
    fn inputs_default_their_local_name_and_refuse_escapes() {
        assert_eq!(
            parse_input("s3://b/data/n*.txt").unwrap(),
            Input { source: "s3://b/data/n*.txt".into(), local: "n*.txt".into() }
        );
        let err = parse_input("s3://b/x:../up").unwrap_err();
        assert!(err.message.contains("relative path"), "{err}");
        assert!(parse_input("just-a-name").unwrap_err().message.contains("no blob location"));
    }

    #[test]
    fn a_task_gets_its_own_sources_and_the_job_area_by_default() {
        let staging = Staging {
            inputs: vec![parse_input("thunderhead:uploads/t/n*.txt:in.txt").unwrap()],
            outputs: vec![parse_output("out*.csv").unwrap(), parse_output("log:s3://b/logs/***/").unwrap()],
            upload_on: UploadOn::Always,
        };
        let t = staging.for_task(4, 7);
        assert_eq!(t.inputs[0], Input { source: "thunderhead:uploads/t/n7.txt".into(), local: "in.txt".into() });
        assert_eq!(t.outputs[0].prefix.as_deref(), Some("thunderhead:jobs/4/7/"));
        assert_eq!(t.outputs[0].glob, "out7.csv");
        assert_eq!(t.outputs[1].prefix.as_deref(), Some("s3://b/logs/007/"));
        assert!(UploadOn::Failure.applies(Some(2)) && !UploadOn::Success.applies(None));
    }
}
