//! Property tests of every parser of user input in the core: whatever the text, a parser answers
//! with a value or with an error that names the text, and never panics; what it accepts means
//! what it says.

use proptest::prelude::*;
use thunderhead_core::availability::Window;
use thunderhead_core::job::{JobSubmission, Priority, TaskDef};
use thunderhead_core::sweep::{MAX_INDEX, MAX_SWEEP_TASKS, SweepRange, substitute};

/// Text that looks like the input: characters of its alphabet in any order.
fn nearly(alphabet: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(alphabet.chars().collect::<Vec<_>>()), 0..24)
        .prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn a_sweep_range_parses_or_names_the_text(text in prop_oneof![any::<String>(), nearly("0123456789-: x+")]) {
        if let Err(e) = SweepRange::parse(&text) {
            prop_assert!(e.message.contains(&format!("\"{text}\"")), "{}", e.message);
        }
    }

    #[test]
    fn an_accepted_sweep_range_holds_exactly_its_indices(
        start in prop_oneof![0u64..1_000, any::<u64>(), Just(0), Just(u64::MAX)],
        len in prop_oneof![0u64..1_000, any::<u64>(), Just(u64::MAX), Just(MAX_SWEEP_TASKS - 1), Just(MAX_SWEEP_TASKS)],
        step in prop_oneof![0u64..10, any::<u64>(), Just(u64::MAX)],
    ) {
        let end = start.saturating_add(len);
        let text = format!("{start}-{end}:{step}");
        let count = if step == 0 { None } else { Some((end - start) as u128 / step as u128 + 1) };
        match (SweepRange::parse(&text), count) {
            (Ok(r), Some(count)) => {
                prop_assert!(count <= MAX_SWEEP_TASKS as u128 && end <= MAX_INDEX);
                prop_assert_eq!(r.len() as u128, count);
                let last = r.nth(r.len() - 1).unwrap();
                prop_assert!(last <= end && end - last < step);
                prop_assert_eq!(r.nth(r.len()), None);
                for k in [0, r.len() / 2, r.len() - 1] {
                    prop_assert_eq!(r.position(r.nth(k).unwrap()), Some(k));
                }
                prop_assert_eq!(SweepRange::parse(&r.to_string()).unwrap(), r);
            }
            (Err(_), None) => {}
            (Err(e), Some(count)) => prop_assert!(
                count > MAX_SWEEP_TASKS as u128 || end > MAX_INDEX,
                "{} refused: {}", text, e.message
            ),
            (Ok(r), None) => prop_assert!(false, "{} accepted with step 0: {:?}", text, r),
        }
    }

    #[test]
    fn every_run_of_asterisks_becomes_the_padded_index(
        // Runs apart: each follows at least one other character.
        parts in proptest::collection::vec(("[^*]{1,6}", 1usize..6), 0..4),
        tail in "[^*]{0,6}",
        index in any::<u64>(),
    ) {
        let text: String = parts.iter().map(|(s, k)| format!("{s}{}", "*".repeat(*k))).collect::<String>() + &tail;
        let expected: String =
            parts.iter().map(|(s, k)| format!("{s}{index:0k$}")).collect::<String>() + &tail;
        prop_assert_eq!(substitute(&text, index), expected);
    }

    #[test]
    fn text_without_asterisks_is_left_alone(text in "[^*]{0,40}", index in any::<u64>()) {
        prop_assert_eq!(substitute(&text, index), text);
    }

    #[test]
    fn a_window_parses_or_names_the_text(
        text in prop_oneof![any::<String>(), nearly("MonTueWedThuFriSatSunDaily0123456789:-, ")],
    ) {
        if let Err(e) = Window::parse(&text) {
            prop_assert!(e.message.contains(&format!("\"{text}\"")), "{}", e.message);
        }
    }

    #[test]
    fn an_accepted_window_prints_as_it_parses(
        days in proptest::collection::btree_set(0usize..7, 1..8),
        start in 0u16..24 * 60,
        end in 0u16..24 * 60,
    ) {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let list: Vec<&str> = days.iter().map(|d| DAYS[*d]).collect();
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let text = format!("{} {}-{}", list.join(","), hm(start), hm(end));
        match Window::parse(&text) {
            Ok(w) => {
                prop_assert_eq!(w.to_string(), text.clone());
                prop_assert_eq!((w.start, w.end), (start, end));
            }
            Err(e) => prop_assert!(start == end, "{} refused: {}", text, e.message),
        }
    }

    #[test]
    fn a_priority_parses_or_names_the_text(text in prop_oneof![any::<String>(), "[A-Za-z]{0,12}"]) {
        match Priority::parse(&text) {
            Ok(p) => prop_assert!(p.name().eq_ignore_ascii_case(text.trim()), "{} became {}", text, p.name()),
            Err(e) => prop_assert!(e.message.contains(&text), "{}", e.message),
        }
    }

    #[test]
    fn a_job_file_of_any_shape_is_accepted_or_refused_without_a_panic(
        json in "\\{(\"(name|priority|cores_per_task|retries|command|sweep|tasks|inputs|outputs|upload_on|x)\": ?(null|-?[0-9]{1,12}|\"[^\"\\\\]{0,12}\"|\\[(\"[^\"\\\\]{0,8}\",? ?){0,3}\\]|\\[\\{\"name\": ?\"[a-c]\", ?\"command\": ?\\[\"x\"\\](, ?\"depends_on\": ?\\[\"[a-d]\"\\])?\\},? ?\\]),? ?){0,5}\\}",
    ) {
        // Not every generated text is JSON; what is must validate or be refused, never panic.
        if let Ok(submission) = serde_json::from_str::<JobSubmission>(&json) {
            let _ = submission.validate();
        }
    }

    #[test]
    fn a_template_of_any_shape_is_accepted_or_refused_without_a_panic(
        json in "\\{\"name\": ?\"[a-zA-Z0-9_ -]{0,8}\", ?\"provider\": ?\"[a-z]{1,6}\"(, ?\"(description|quota_cores|proxies|series_prefix|deploy_rate|deploy_retries|pause_after_failures|rates|currency|availability|windows|timezone|lead_time|drain_before_end|pin|blob_store|settings)\": ?(null|-?[0-9]{1,11}|\"[^\"\\\\]{0,16}\"|\\[(\"[^\"\\\\]{0,12}\",? ?){0,3}\\]|\\{(\"[a-z_]{1,12}\": ?(\"[^\"\\\\]{0,8}\"|[0-9]{1,6}|true),? ?){0,3}\\})){0,6}\\}",
        now in 0u64..4_000_000_000_000,
    ) {
        // What a template create request may hold: validated or refused, never a panic. (Each
        // provider's settings are fuzzed against its own rules in the providers crate.)
        if let Ok(new) = serde_json::from_str::<thunderhead_core::template::NewTemplate>(&json)
            && let Ok(template) = new.validate(now, &thunderhead_core::provider_rules::TakeAsGiven)
        {
            prop_assert!(!template.name.is_empty());
        }
    }

    #[test]
    fn a_task_set_is_accepted_only_without_cycles_or_unknown_names(
        deps in proptest::collection::vec(proptest::collection::vec(0usize..6, 0..3), 1..6),
    ) {
        let tasks: Vec<TaskDef> = deps
            .iter()
            .enumerate()
            .map(|(i, d)| TaskDef {
                name: format!("t{i}"),
                command: vec!["true".into()],
                depends_on: d.iter().map(|j| format!("t{j}")).collect(),
            })
            .collect();
        let unknown = deps.iter().flatten().any(|j| *j >= deps.len());
        let submission = JobSubmission { tasks: Some(tasks), ..Default::default() };
        match submission.validate() {
            Ok(_) => prop_assert!(!unknown && acyclic(&deps), "accepted: {:?}", deps),
            Err(e) => prop_assert!(unknown || !acyclic(&deps), "refused {:?}: {}", deps, e.message),
        }
    }

    #[test]
    fn staging_specs_are_accepted_or_refused_without_a_panic(
        inputs in proptest::collection::vec(prop_oneof![any::<String>(), "[a-z*/.:]{0,16}"], 0..3),
        outputs in proptest::collection::vec(prop_oneof![any::<String>(), "[a-z*/.:]{0,16}"], 0..3),
        upload_on in prop_oneof![Just(None), "[a-z]{0,8}".prop_map(Some)],
    ) {
        let submission = JobSubmission {
            command: Some(vec!["true".into()]),
            inputs: Some(inputs),
            outputs: Some(outputs),
            upload_on,
            ..Default::default()
        };
        let _ = submission.validate();
    }
}

/// Whether the dependency lists (task i depends on the tasks in `deps[i]`) have no cycle; a
/// dependency on a task that does not exist counts as none.
fn acyclic(deps: &[Vec<usize>]) -> bool {
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8]) -> bool {
        match state[i] {
            1 => return false,
            2 => return true,
            _ => {}
        }
        state[i] = 1;
        let ok = deps[i].iter().filter(|j| **j < deps.len()).all(|j| visit(*j, deps, state));
        state[i] = 2;
        ok
    }
    let mut state = vec![0u8; deps.len()];
    (0..deps.len()).all(|i| visit(i, deps, &mut state))
}
