//! Parametric sweeps: the index range and the `*` substitution.
//!
//! A sweep `START-END[:STEP]` yields `START, START+STEP, …` up to and including `END`. Every run
//! of `k` asterisks in a command argument is replaced by the index padded with zeros to `k`
//! digits (`*` → `7`, `***` → `007`), as in HPC Pack.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The most indices one sweep may hold. HPC Pack allows 1,000,000; indices that have not started
/// cost nothing here, so we allow ten times that.
pub const MAX_SWEEP_TASKS: u64 = 10_000_000;

/// The largest index a sweep may reach: the store keeps indices as signed 64-bit integers.
pub const MAX_INDEX: u64 = i64::MAX as u64;

/// The longest run of `*` an argument may hold: the largest index has 19 digits, so a longer run
/// would pad with nothing but zeros.
pub const MAX_STAR_RUN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRange {
    pub start: u64,
    pub end: u64,
    pub step: u64,
}

impl SweepRange {
    /// Parses `START-END[:STEP]`, e.g. `1-200`, `0-99:3`.
    pub fn parse(text: &str) -> Result<SweepRange> {
        let bad = |rule: &str| {
            Error::invalid(format!(
                "sweep \"{text}\" {rule} (expected START-END[:STEP] with whole numbers, e.g. 1-200 or 0-100:5)"
            ))
        };
        let (range, step) = match text.split_once(':') {
            Some((range, step)) => (range, Some(step)),
            None => (text, None),
        };
        let (start, end) = range.split_once('-').ok_or_else(|| bad("has no END"))?;
        let number = |s: &str, what: &str| -> Result<u64> {
            s.trim().parse::<u64>().map_err(|_| bad(&format!("has a {what} that is not a whole number ≥ 0")))
        };
        let start = number(start, "START")?;
        let end = number(end, "END")?;
        if end > MAX_INDEX {
            return Err(bad(&format!("has an END above the largest index, {MAX_INDEX}")));
        }
        let step = match step {
            Some(s) => number(s, "STEP")?,
            None => 1,
        };
        if step == 0 {
            return Err(bad("has STEP 0, which never advances"));
        }
        if end < start {
            return Err(bad("ends before it starts"));
        }
        // Counted wide: 0-18446744073709551615 has one index more than a u64 holds.
        let indices = ((end - start) / step) as u128 + 1;
        if indices > MAX_SWEEP_TASKS as u128 {
            return Err(bad(&format!("has {indices} indices, more than the limit of {MAX_SWEEP_TASKS}")));
        }
        Ok(SweepRange { start, end, step })
    }

    /// Number of indices in the range.
    pub fn len(&self) -> u64 {
        (self.end - self.start) / self.step + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `n`-th index (0-based), if the range has one.
    pub fn nth(&self, n: u64) -> Option<u64> {
        (n < self.len()).then(|| self.start + n * self.step)
    }

    /// Position of `index` in the range, if it belongs to it.
    pub fn position(&self, index: u64) -> Option<u64> {
        if index < self.start || index > self.end || !(index - self.start).is_multiple_of(self.step) {
            return None;
        }
        Some((index - self.start) / self.step)
    }
}

impl std::fmt::Display for SweepRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.step == 1 {
            write!(f, "{}-{}", self.start, self.end)
        } else {
            write!(f, "{}-{}:{}", self.start, self.end, self.step)
        }
    }
}

/// The longest run of `*` in `text`.
pub fn longest_star_run(text: &str) -> usize {
    text.split(|c| c != '*').map(str::len).max().unwrap_or(0)
}

/// Checks that every argument of a sweep's command can take an index: no run of `*` longer than
/// [`MAX_STAR_RUN`].
pub fn check_pattern(args: &[String]) -> Result<()> {
    for (n, arg) in args.iter().enumerate() {
        let run = longest_star_run(arg);
        if run > MAX_STAR_RUN {
            return Err(Error::invalid(format!(
                "argument {} of the command has a run of {run} '*' characters, more than the limit of \
                 {MAX_STAR_RUN} (a run of k '*' is the index padded to k digits; use at most {MAX_STAR_RUN})",
                n + 1
            )));
        }
    }
    Ok(())
}

/// Replaces every run of asterisks in `text` by `index`, zero-padded to the run's length. Runs
/// of any length are padded (validation keeps them to [`MAX_STAR_RUN`]); nothing here panics.
pub fn substitute(text: &str, index: u64) -> String {
    if !text.contains('*') {
        return text.to_string();
    }
    let digits = index.to_string();
    let mut out = String::with_capacity(text.len() + 8);
    let mut run = 0usize;
    let flush = |out: &mut String, run: usize| {
        for _ in digits.len()..run {
            out.push('0');
        }
        out.push_str(&digits);
    };
    for c in text.chars() {
        if c == '*' {
            run += 1;
            continue;
        }
        if run > 0 {
            flush(&mut out, run);
            run = 0;
        }
        out.push(c);
    }
    if run > 0 {
        flush(&mut out, run);
    }
    out
}

/// Substitutes `index` into every argument of a command line.
pub fn substitute_all(args: &[String], index: u64) -> Vec<String> {
    args.iter().map(|a| substitute(a, index)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_stepped_ranges() {
        assert_eq!(SweepRange::parse("1-200").unwrap(), SweepRange { start: 1, end: 200, step: 1 });
        let r = SweepRange::parse("0-10:3").unwrap();
        assert_eq!((r.len(), r.nth(0), r.nth(3), r.nth(4)), (4, Some(0), Some(9), None));
        assert_eq!(SweepRange::parse("5-5").unwrap().len(), 1);
        assert_eq!(SweepRange::parse("1-1000000").unwrap().len(), 1_000_000);
    }

    #[test]
    fn bad_ranges_name_the_value_and_the_rule() {
        for (text, rule) in [
            ("10-1", "ends before it starts"),
            ("1-10:0", "STEP 0"),
            ("abc", "no END"),
            ("1-x", "END"),
            ("-1-5", "START"),
            ("0-99999999999", "limit"),
        ] {
            let err = SweepRange::parse(text).unwrap_err();
            assert!(err.message.contains(&format!("\"{text}\"")), "{err}");
            assert!(err.message.contains(rule), "{text}: {err}");
            assert!(err.message.contains("START-END[:STEP]"), "{err}");
        }
    }

    #[test]
    fn position_inverts_nth() {
        let r = SweepRange::parse("3-30:3").unwrap();
        for n in 0..r.len() {
            assert_eq!(r.position(r.nth(n).unwrap()), Some(n));
        }
        assert_eq!(r.position(4), None);
        assert_eq!(r.position(33), None);
        assert_eq!(r.position(0), None);
    }

    #[test]
    fn asterisks_are_replaced_and_padded_by_run_length() {
        assert_eq!(substitute("in*.txt", 7), "in7.txt");
        assert_eq!(substitute("in***.txt", 7), "in007.txt");
        assert_eq!(substitute("**", 1234), "1234");
        assert_eq!(substitute("*-*", 5), "5-5");
        assert_eq!(substitute("no stars", 5), "no stars");
        assert_eq!(substitute("a*b**c***", 9), "a9b09c009");
        assert_eq!(substitute_all(&["echo".into(), "n=*".into()], 42), vec!["echo".to_string(), "n=42".to_string()]);
    }

    #[test]
    fn a_run_of_many_asterisks_pads_without_panicking() {
        // format! widths above u16::MAX panic; a run that long once stopped the head node.
        let stars = "*".repeat(70_000);
        let out = substitute(&stars, 7);
        assert_eq!(out.len(), 70_000);
        assert!(out.ends_with("07") && out.starts_with("000"));
        let err = check_pattern(&["echo".into(), stars]).unwrap_err();
        assert!(err.message.contains("argument 2") && err.message.contains("70000") && err.message.contains("20"));
        assert!(check_pattern(&["x".repeat(5), "*".repeat(MAX_STAR_RUN)]).is_ok());
    }

    #[test]
    fn indices_beyond_the_store_are_refused_with_the_limit() {
        let err = SweepRange::parse("9223372036854775800-18446744073709551615").unwrap_err();
        assert!(err.message.contains("9223372036854775807"), "{err}");
        assert_eq!(SweepRange::parse("9223372036854775800-9223372036854775807").unwrap().len(), 8);
    }
}
