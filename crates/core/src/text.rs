//! Text that comes from users: what a one-line field may hold, and how untrusted text is shown.
//!
//! Names and one-line fields (job names, task names, descriptions) refuse control characters at
//! the API, so a newline or an escape sequence can never forge a log line or repaint an
//! administrator's terminal. Text that may rightly hold them (command lines, task output) or that
//! was stored before the rule is shown through [`escape`].

use crate::{Error, Result};
use std::borrow::Cow;

/// Checks a one-line field: at most `max` characters, none of them a control character.
pub fn check_line(what: &str, text: &str, max: usize) -> Result<()> {
    let count = text.chars().count();
    if count > max {
        return Err(Error::invalid(format!(
            "{what} is {count} characters long, more than the limit of {max} (shorten it)"
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "{what} \"{}\" holds the control character {} (names and one-line fields may not hold newlines, \
             tabs or escape codes; remove it)",
            escape(text),
            escape(&c.to_string())
        )));
    }
    Ok(())
}

/// `text` with every control character written out (`\n`, `\t`, `\u{1b}`), so it prints as one
/// line and cannot move a terminal's cursor or change its colours. Text without any is returned
/// as it is.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the Unicode marks that reorder or hide text (bidirectional overrides).
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A time for messages: `2026-12-08 14:05:00 UTC`.
pub fn utc(at: crate::Millis) -> String {
    let ts = jiff::Timestamp::from_millisecond(at as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `"0a1b…"` → bytes; `None` unless it is hex of whole bytes.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(escape("plain name"), "plain name");
        assert_eq!(escape("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(escape("\u{1b}[31mred\u{7}"), "\\u{1b}[31mred\\u{7}");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        assert!(matches!(escape("ünïcode ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_line_with_a_control_character_is_refused_and_shown_escaped() {
        let e = check_line("job name", "ok\n2026-12-07 INFO forged", 200).unwrap_err();
        assert!(e.message.contains("job name \"ok\\n2026") && e.message.contains("\\n"), "{}", e.message);
        assert!(!e.message.contains('\n'));
        let e = check_line("job name", &"x".repeat(201), 200).unwrap_err();
        assert!(e.message.contains("201") && e.message.contains("200"), "{}", e.message);
        check_line("job name", "a sweep ✓", 200).unwrap();
    }
}
