use super::*;
use serde_json::json;

fn read(v: Value) -> thunderhead_core::Result<SlurmSettings> {
    SlurmSettings::read(v.as_object().unwrap())
}

#[test]
fn settings_become_sbatch_options_and_a_prefix() {
    let s = read(json!({
        "partition": "gpu", "account": "proj-42", "qos": "normal", "time_limit": "4h",
        "sbatch_args": "--mem=4G  --constraint=avx2", "command_prefix": "ssh login.hpc.example.org",
    }))
    .unwrap();
    assert_eq!(s.options, ["--partition=gpu", "--account=proj-42", "--qos=normal", "--mem=4G", "--constraint=avx2"]);
    assert_eq!(s.prefix, ["ssh", "login.hpc.example.org"]);
    assert_eq!((s.time_limit, s.drain_margin), (Duration::from_secs(4 * 3600), Duration::from_secs(300)));
    assert_eq!((s.work_dir.as_str(), s.program.as_deref()), (".thunderhead", None));
}

#[test]
fn bad_settings_name_the_value_the_rule_and_the_fix() {
    for (settings, says) in [
        (json!({"partition": "a b"}), "not a Slurm name"),
        (json!({"account": "x;rm -rf"}), "not a Slurm name"),
        (json!({"time_limit": "30s"}), "a minute"),
        (json!({"time_limit": "10m", "drain_margin": "10m"}), "shorter than time_limit"),
        (json!({"sbatch_args": "--mem=4G oops"}), "not an option"),
        (json!({"sbatch_args": "--job-name=x"}), "sets it for each node"),
        (json!({"sbatch_args": "--array=1-10"}), "sets it for each node"),
        (json!({"work_dir": "../up"}), "without '..'"),
    ] {
        let err = read(settings.clone()).unwrap_err();
        assert!(err.message.contains(says), "{settings}: {err}");
    }
}

#[test]
fn a_pending_job_waits_with_slurm_s_reason_and_an_ended_one_is_gone() {
    let job = |state: &str, reason: &str| QueuedJob {
        job_id: 7,
        name: "SlurmCN-0001".into(),
        job_state: state.into(),
        state_reason: reason.into(),
        comment: String::new(),
    };
    assert_eq!(
        job("PENDING", "Resources").status(),
        ExternalStatus::Waiting("Slurm job 7 is pending: Resources".into())
    );
    assert_eq!(job("RUNNING", "None").status(), ExternalStatus::Running);
    for ended in ["COMPLETED", "CANCELLED", "TIMEOUT", "FAILED", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"] {
        assert_eq!(job(ended, "None").status(), ExternalStatus::Gone, "{ended}");
    }
}

#[test]
fn refusals_that_will_repeat_are_lasting_and_a_busy_controller_is_not() {
    let bad = slurm_failure("sbatch", "sbatch: error: Batch job submission failed: Invalid partition name specified\n");
    assert!(!bad.transient && bad.message.contains("Invalid partition name"), "{bad:?}");
    let busy = slurm_failure("squeue", "squeue: error: Unable to contact slurm controller (connect failure)\n");
    assert!(busy.transient, "{busy:?}");
}

#[test]
fn handles_of_a_newer_build_or_another_provider_are_refused() {
    let handle = SlurmHandle { v: SLURM_HANDLE_VERSION, job: 42, node: "n".into(), dir: ".thunderhead/x/t/n".into() };
    let value = serde_json::to_value(&handle).unwrap();
    assert_eq!(parse(&value).unwrap(), handle);
    let mut newer = value.clone();
    newer["v"] = json!(SLURM_HANDLE_VERSION + 1);
    assert!(parse(&newer).unwrap_err().message.contains("newer than this build reads"));
    assert!(parse(&json!({"pid": 1})).is_err());
}

crate::provider_contract_tests!(deploys, |dir: &std::path::Path| {
    SlurmProvider::new(crate::contract::stand_in(dir), dir)
});
