//! Availability policies: when a set's nodes are started, brought online, drained and stopped.
//!
//! `manual` leaves it to people. `schedule` follows weekly windows in a time zone, as the 2011
//! Automatic policy did: the set is started `lead_time` before a window (deployment takes time),
//! brought online at its start, drained `drain_before_end` before its end, and stopped at its
//! end. [`phase`] is a pure function of the policy and the time; [`decide`] turns a phase and
//! the nodes' states into node actions.

use crate::node_state::NodeAction;
use crate::node_state::NodeState;
use crate::{Error, Millis, Result};
use serde::{Deserialize, Serialize};

/// One weekly window: on `days` (Monday = 0), from `start` to `end` minutes after local
/// midnight. An `end` at or before `start` runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub days: Vec<u8>,
    pub start: u16,
    pub end: u16,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl Window {
    /// Parses `Mon-Fri 08:00-18:00`, `Sat,Sun 10:00-14:00`, `Daily 22:00-06:00`.
    pub fn parse(text: &str) -> Result<Window> {
        let bad = |rule: &str| {
            Error::invalid(format!(
                "window \"{text}\" {rule} (write DAYS HH:MM-HH:MM, e.g. 'Mon-Fri 08:00-18:00' or 'Sat,Sun 10:00-14:00')"
            ))
        };
        let (days, hours) = text.trim().split_once(' ').ok_or_else(|| bad("has no hours"))?;
        let day = |d: &str| -> Result<u8> {
            DAYS.iter()
                .position(|n| n.eq_ignore_ascii_case(d.trim()))
                .map(|p| p as u8)
                .ok_or_else(|| bad(&format!("has an unknown day \"{d}\"")))
        };
        let mut list = Vec::new();
        if days.eq_ignore_ascii_case("daily") {
            list.extend(0..7);
        } else {
            for part in days.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        let mut d = a;
                        loop {
                            list.push(d);
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => list.push(day(part)?),
                }
            }
        }
        list.sort();
        list.dedup();
        let (from, to) = hours.trim().split_once('-').ok_or_else(|| bad("has no end time"))?;
        let minutes = |t: &str| -> Result<u16> {
            let (h, m) =
                t.trim().split_once(':').ok_or_else(|| bad(&format!("has a time \"{t}\" that is not HH:MM")))?;
            let (h, m): (u16, u16) = match (h.parse(), m.parse()) {
                (Ok(h), Ok(m)) if h <= 24 && m < 60 && (h < 24 || m == 0) => (h, m),
                _ => return Err(bad(&format!("has a time \"{t}\" that is not HH:MM"))),
            };
            Ok(h * 60 + m)
        };
        let (start, end) = (minutes(from)?, minutes(to)?);
        if start == end {
            return Err(bad("starts and ends at the same time"));
        }
        Ok(Window { days: list, start, end })
    }

    /// Whether the local time (`day`, Monday = 0, `minute` of the day) is inside the window.
    pub fn contains(&self, day: u8, minute: u16) -> bool {
        if self.start < self.end {
            self.days.contains(&day) && minute >= self.start && minute < self.end
        } else {
            // Past midnight: the evening of a listed day, or the morning after it.
            (self.days.contains(&day) && minute >= self.start)
                || (self.days.contains(&((day + 6) % 7)) && minute < self.end)
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days: Vec<&str> = self.days.iter().map(|d| DAYS[*d as usize]).collect();
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{} {}-{}", days.join(","), hm(self.start), hm(self.end))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Availability {
    #[default]
    Manual,
    Schedule {
        windows: Vec<Window>,
        timezone: String,
        lead_time: Millis,
        drain_before_end: Millis,
    },
}

/// Where a scheduled set should be now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Outside every window and its lead time: nothing deployed.
    Stopped,
    /// A window starts within the lead time: deploy, do not take work yet.
    Started,
    /// Inside a window: take work.
    Online,
    /// The window ends within the drain time: finish running tasks, start none.
    Draining,
}

/// What a set's policy is doing: the phase it is in, the nodes it moves in this phase (a node a
/// person acts on leaves the set until the next phase), and when it last looked. Kept with the
/// template, so a restarted head node carries on where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    pub phase: Phase,
    pub managed: std::collections::BTreeSet<String>,
    pub seen: Millis,
}

impl Availability {
    /// Checks the time zone, so a bad one is refused when the template is saved.
    pub fn check(&self) -> Result<()> {
        if let Availability::Schedule { windows, timezone, .. } = self {
            if windows.is_empty() {
                return Err(Error::invalid(
                    "a schedule needs at least one window (give --window 'Mon-Fri 08:00-18:00')",
                ));
            }
            jiff::tz::TimeZone::get(timezone).map_err(|_| {
                Error::invalid(format!(
                    "time zone \"{timezone}\" is not known (give an IANA name such as Europe/Prague, America/New_York or UTC)"
                ))
            })?;
        }
        Ok(())
    }
}

const MINUTE: Millis = 60_000;

/// The local weekday (Monday = 0) and minute of the day at `at` in `tz`.
fn local(at: Millis, tz: &jiff::tz::TimeZone) -> (u8, u16) {
    let ts = jiff::Timestamp::from_millisecond(at as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let z = ts.to_zoned(tz.clone());
    (z.weekday().to_monday_zero_offset() as u8, z.hour() as u16 * 60 + z.minute() as u16)
}

/// The phase a set with this policy should be in at `now`; `None` for a manual policy.
pub fn phase(policy: &Availability, now: Millis) -> Option<Phase> {
    let Availability::Schedule { windows, timezone, lead_time, drain_before_end } = policy else {
        return None;
    };
    let tz = jiff::tz::TimeZone::get(timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let inside = |t: Millis| {
        let (day, minute) = local(t, &tz);
        windows.iter().any(|w| w.contains(day, minute))
    };
    // Look ahead minute by minute, so a short window or a gap between windows is not missed.
    let ahead = |span: Millis, want_inside: bool| {
        let steps = span.div_ceil(MINUTE);
        (1..=steps).any(|k| inside(now + (k * MINUTE).min(span)) == want_inside)
    };
    Some(if inside(now) {
        if *drain_before_end > 0 && ahead(*drain_before_end, false) { Phase::Draining } else { Phase::Online }
    } else if *lead_time > 0 && ahead(*lead_time, true) {
        Phase::Started
    } else {
        Phase::Stopped
    })
}

/// What to do to each node of a set to bring it to `phase`. Nodes already on their way (or
/// failed, which needs a person) are left alone.
pub fn decide<'a>(phase: Phase, nodes: impl Iterator<Item = (&'a str, &'a NodeState)>) -> Vec<(String, NodeAction)> {
    let mut actions = Vec::new();
    for (name, state) in nodes {
        let action = match (phase, state) {
            (
                Phase::Stopped,
                NodeState::Provisioning { .. }
                | NodeState::Offline { .. }
                | NodeState::Online { .. }
                | NodeState::Draining { .. },
            ) => Some(NodeAction::Stop),
            (Phase::Started | Phase::Online, NodeState::NotDeployed) => Some(NodeAction::Start),
            (Phase::Online, NodeState::Offline { .. }) => Some(NodeAction::Online),
            (Phase::Draining, NodeState::Online { .. }) => Some(NodeAction::Offline),
            _ => None,
        };
        if let Some(a) = action {
            actions.push((name.to_string(), a));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;
    const HOUR: Millis = 60 * MIN;

    /// Milliseconds of a UTC time given as `2026-11-23T08:00:00Z`.
    fn at(text: &str) -> Millis {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis
    }

    fn schedule(windows: &[&str], tz: &str, lead: Millis, drain: Millis) -> Availability {
        Availability::Schedule {
            windows: windows.iter().map(|w| Window::parse(w).unwrap()).collect(),
            timezone: tz.into(),
            lead_time: lead,
            drain_before_end: drain,
        }
    }

    #[test]
    fn windows_parse_and_print() {
        assert_eq!(
            Window::parse("Mon-Fri 08:00-18:00").unwrap(),
            Window { days: vec![0, 1, 2, 3, 4], start: 480, end: 1080 }
        );
        assert_eq!(Window::parse("Sat,Sun 10:00-14:30").unwrap().to_string(), "Sat,Sun 10:00-14:30");
        assert_eq!(Window::parse("Fri-Mon 22:00-06:00").unwrap().days, vec![0, 4, 5, 6]);
        assert_eq!(Window::parse("daily 00:00-24:00").unwrap().days.len(), 7);
        for bad in ["Mon", "Funday 08:00-09:00", "Mon 8-9", "Mon 25:00-26:00", "Mon 08:00-08:00"] {
            let err = Window::parse(bad).unwrap_err();
            assert!(err.message.contains(&format!("\"{bad}\"")) && err.message.contains("Mon-Fri"), "{err}");
        }
    }

    #[test]
    fn a_working_week_in_prague_starts_early_drains_and_stops() {
        // Prague is UTC+1 in November: 08:00 local is 07:00 UTC.
        let p = schedule(&["Mon-Fri 08:00-18:00"], "Europe/Prague", 10 * MIN, 15 * MIN);
        let monday = at("2026-11-23T00:00:00Z");
        assert_eq!(phase(&p, monday + 6 * HOUR + 49 * MIN), Some(Phase::Stopped));
        assert_eq!(phase(&p, monday + 6 * HOUR + 51 * MIN), Some(Phase::Started));
        assert_eq!(phase(&p, monday + 7 * HOUR), Some(Phase::Online));
        assert_eq!(phase(&p, monday + 16 * HOUR + 44 * MIN), Some(Phase::Online));
        assert_eq!(phase(&p, monday + 16 * HOUR + 46 * MIN), Some(Phase::Draining));
        assert_eq!(phase(&p, monday + 17 * HOUR), Some(Phase::Stopped));
        assert_eq!(phase(&Availability::Manual, monday), None);
    }

    #[test]
    fn the_week_boundary_is_crossed_by_an_overnight_window_and_weekends_stay_off() {
        let p = schedule(&["Sun 22:00-02:00"], "UTC", 30 * MIN, 0);
        let sunday = at("2026-11-29T00:00:00Z");
        assert_eq!(phase(&p, sunday + 21 * HOUR + 45 * MIN), Some(Phase::Started));
        assert_eq!(phase(&p, sunday + 23 * HOUR), Some(Phase::Online));
        assert_eq!(phase(&p, sunday + 25 * HOUR), Some(Phase::Online), "Monday 01:00 is still Sunday's window");
        assert_eq!(phase(&p, sunday + 26 * HOUR), Some(Phase::Stopped));
        let weekdays = schedule(&["Mon-Fri 08:00-18:00"], "UTC", 0, 0);
        assert_eq!(phase(&weekdays, at("2026-11-28T12:00:00Z")), Some(Phase::Stopped), "Saturday noon");
    }

    #[test]
    fn a_window_shorter_than_the_lead_time_is_started_for_and_not_stopped_in_between() {
        let p = schedule(&["Mon 08:00-08:30"], "UTC", HOUR, 0);
        let monday = at("2026-11-23T00:00:00Z");
        for minutes in [7 * 60, 7 * 60 + 31, 7 * 60 + 59] {
            assert_eq!(phase(&p, monday + minutes * MIN), Some(Phase::Started), "at {minutes} min");
        }
        assert_eq!(phase(&p, monday + 8 * HOUR + 10 * MIN), Some(Phase::Online));
        assert_eq!(phase(&p, monday + 8 * HOUR + 31 * MIN), Some(Phase::Stopped));
    }

    #[test]
    fn a_short_gap_between_windows_drains_before_it() {
        let p = schedule(&["Mon 08:00-09:00", "Mon 09:10-10:00"], "UTC", 0, 15 * MIN);
        let monday = at("2026-11-23T00:00:00Z");
        assert_eq!(phase(&p, monday + 8 * HOUR + 50 * MIN), Some(Phase::Draining));
        assert_eq!(phase(&p, monday + 9 * HOUR + 20 * MIN), Some(Phase::Online));
    }

    #[test]
    fn windows_follow_local_time_across_daylight_saving_changes() {
        let p = schedule(&["Daily 08:00-09:00"], "Europe/Prague", 0, 0);
        // Before the spring change 08:00 in Prague is 07:00 UTC; after it, 06:00 UTC.
        assert_eq!(phase(&p, at("2026-03-28T07:30:00Z")), Some(Phase::Online));
        assert_eq!(phase(&p, at("2026-03-30T06:30:00Z")), Some(Phase::Online));
        assert_eq!(phase(&p, at("2026-03-30T07:30:00Z")), Some(Phase::Stopped));
        // And back in autumn.
        assert_eq!(phase(&p, at("2026-10-26T07:30:00Z")), Some(Phase::Online));
    }

    #[test]
    fn decisions_move_each_node_one_step_toward_the_phase() {
        let states = [
            ("a", NodeState::NotDeployed),
            ("b", NodeState::Offline { since: 0 }),
            ("c", NodeState::Online { since: 0 }),
            ("d", NodeState::Unknown { since: 0, cause: "x".into() }),
        ];
        let run = |p| decide(p, states.iter().map(|(n, s)| (*n, s)));
        assert_eq!(run(Phase::Online), vec![("a".to_string(), NodeAction::Start), ("b".into(), NodeAction::Online)]);
        assert_eq!(run(Phase::Started), vec![("a".to_string(), NodeAction::Start)]);
        assert_eq!(run(Phase::Draining), vec![("c".to_string(), NodeAction::Offline)]);
        assert_eq!(run(Phase::Stopped), vec![("b".to_string(), NodeAction::Stop), ("c".into(), NodeAction::Stop)]);
    }

    #[test]
    fn a_bad_time_zone_is_refused_with_examples() {
        let err = schedule(&["Mon 08:00-09:00"], "Mars/Olympus", 0, 0).check().unwrap_err();
        assert!(err.message.contains("\"Mars/Olympus\"") && err.message.contains("Europe/Prague"), "{err}");
    }
}
